/* libcorosync_common's three functions over every value worth asking: run once against Debian's library
   and once against vigil's, the outputs must be the same. */
#include <corosync/corotypes.h>
#include <stdio.h>

int main(void)
{
	for (int i = -1; i <= 101; i++)
		printf("%d [%s]\n", i, cs_strerror((cs_error_t)i));
	for (int e = -1; e <= 140; e++)
		printf("errno %d: qb %d hdb %d\n", e, qb_to_cs_error(-e), hdb_error_to_cs(-e));
	return 0;
}
