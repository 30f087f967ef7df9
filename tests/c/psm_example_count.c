/* cfg_psm_memops(3), third example, as written: how many instances of the mountd category still run. */
#include <cfg.h>
#include <stdio.h>

static void print_error(cfg_status_t retval)
{
	printf("error: framework %d, subsystem errno %u\n", CFG_STATUS_FRAME(retval), CFG_STATUS_SUBSYS(retval));
}

int main(void)
{
struct psm_memrsp_s *memrsp, *msp, *msp_e;
cfg_status_t retval;
const char *catnam = "mountd";
int runcount = 0;
retval = cfg_psm_memget(_PSM_MYNODE, catnam,
_PSM_ALLPID, &memrsp);
if (retval != CFG_SUCCESS) {
print_error(retval);
} else { msp = memrsp; msp_e =
memrsp + msp->mrs_listcnt; while (msp <
msp_e) { if ((msp->mrs_flags &
PSM_FL_EXIT) == 0) runcount++;
msp++; } cfg_psm_memfree(memrsp);
printf("running %d instance(s) of %s\n",
runcount, catnam);
}
	return 0;
}
