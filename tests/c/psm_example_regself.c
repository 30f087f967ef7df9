/* cfg_psm_memops(3), first example, as written: the process registers itself in the mountd category. */
#include <cfg.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
_PSM_REGSELF(_PSM_CAT_MOUNTD);
	printf("registered %d\n", (int)getpid());
	fflush(stdout);
	pause();
	return 0;
}
