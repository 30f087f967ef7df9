/* cfg_psm_memops(3), second example, as written: a proxy registers process 123 into the abcd category
   on the remote host zeus. print_error is the program's own. */
#include <cfg.h>
#include <stdio.h>

static void print_error(cfg_status_t retval)
{
	printf("error: framework %d, subsystem errno %u\n", CFG_STATUS_FRAME(retval), CFG_STATUS_SUBSYS(retval));
}

int main(void)
{
cfg_status_t retval;
if ((retval = cfg_psm_memadd("zeus", "abcd",
123)) != CFG_SUCCESS) print_error(retval);
	else
		printf("registered\n");
	return 0;
}
