/*
 * cfg_psm_memops(3)'s examples as the page writes them, compiled as C and as C++ (cfg.h has C++ guards,
 * so a C++ program must build from the same text), and vigil's cfg_psm_memstate_set. Prints one line per
 * step on stdout.
 */
#include <cfg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef __cplusplus
/* The page's first example: at file scope. */
_PSM_REGSELF(_PSM_CAT_MOUNTD);
#endif

static void print_error(cfg_status_t retval)
{
	printf("error: framework %d, subsystem errno %u\n", CFG_STATUS_FRAME(retval), CFG_STATUS_SUBSYS(retval));
}

int main(void)
{
#ifndef __cplusplus
	_PSM_REGSELF(_PSM_CAT_MOUNTD);
#endif
	/* The page's third example, word for word but for the declarations C++ wants first. */
	struct psm_memrsp_s *memrsp, *msp, *msp_e;
	cfg_status_t retval;
	const char *catnam = "mountd";
	int runcount = 0;
	retval = cfg_psm_memget(_PSM_MYNODE, catnam, _PSM_ALLPID, &memrsp);
	if (retval != CFG_SUCCESS) {
		print_error(retval);
	} else {
		msp = memrsp;
		msp_e = memrsp + msp->mrs_listcnt;
		while (msp < msp_e) {
			if ((msp->mrs_flags & PSM_FL_EXIT) == 0)
				runcount++;
			msp++;
		}
		cfg_psm_memfree(memrsp);
		printf("running %d instance(s) of %s\n", runcount, catnam);
	}
	/* "a user-modifiable state string": vigil's call sets it, memget shows it. */
	retval = cfg_psm_memstate_set(_PSM_MYNODE, catnam, getpid(), "warming up");
	printf("memstate_set %d\n", retval);
	retval = cfg_psm_memstate_set(_PSM_MYNODE, catnam, getpid(), NULL);
	printf("memstate_set_null %u\n", CFG_STATUS_SUBSYS(retval));
	retval = cfg_psm_memget(_PSM_MYNODE, catnam, getpid(), &memrsp);
	if (retval != CFG_SUCCESS) {
		print_error(retval);
		return 1;
	}
	printf("state %s\n", memrsp->mrs_state);
	cfg_psm_memfree(&memrsp);
	printf("freed %d\n", memrsp == NULL);
	psm_catrsp_t *catrsp;
	retval = cfg_psm_catget(_PSM_MYNODE, catnam, &catrsp);
	printf("catget %d\n", retval);
	if (retval == CFG_SUCCESS)
		cfg_psm_catfree(catrsp);
	return 0;
}
