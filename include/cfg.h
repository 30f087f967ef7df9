/*
 * vigil's cfg.h: the process set manager's part of Tru64 UNIX's configuration management library
 * (libcfg), served by vigild: cfg_psm_memops(3) and cfg_psm_catops(3). Link with -lcfg.
 */
#ifndef _CFG_H_
#define _CFG_H_

#include <errno.h>
#include <sys/types.h>
#include <psm.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Return values are 32-bit quantities: a 16-bit framework status (low half) and a 16-bit subsystem
 * status (high half), which is an errno value. CFG_SUCCESS is success of both. A subsystem error is
 * CFG_STATUS_MAKE(errno, CFG_FRAME_SUCCESS): the request reached the process set manager, which refused
 * it with ESRCH, EALREADY, EAGAIN, ENOENT, ENOMEM, ENOSPC, ENOTSUP (or EINVAL, EEXIST as noted).
 *
 *	cfg_status_t st = cfg_psm_memadd(_PSM_MYNODE, "mountd", pid);
 *	if (st != CFG_SUCCESS && CFG_IS_SUBSYS_ERROR(st) && CFG_STATUS_SUBSYS(st) == EALREADY) ...
 */
typedef int cfg_status_t;

#define CFG_FRAME_SUCCESS 0   /* framework succeeded */
#define CFG_FRAME_EPRIVS 4    /* insufficient privileges */
#define CFG_FRAME_EMEM 5      /* can't allocate sufficient memory */
#define CFG_FRAME_ECONNECT 6  /* can't connect to the daemon (vigild) */
#define CFG_FRAME_ESUBSYS 8   /* subsystem failure (vigild failed internally, or spoke nonsense) */

#define CFG_STATUS_MAKE(s_stat, f_stat) ((int)(((unsigned int)(s_stat) << 16) | (unsigned int)(f_stat)))
#define CFG_STATUS_FRAME(stat) ((stat) & 0x0000ffff)
#define CFG_STATUS_SUBSYS(stat) (((unsigned int)(stat)) >> 16)

#define CFG_SUCCESS CFG_STATUS_MAKE(0, CFG_FRAME_SUCCESS)

/* True for a subsystem error (the framework succeeded, the PSM refused); CFG_STATUS_SUBSYS gives errno. */
#define CFG_IS_SUBSYS_ERROR(stat) ((stat) != CFG_SUCCESS && CFG_STATUS_FRAME(stat) == CFG_FRAME_SUCCESS)

/* Members (cfg_psm_memops(3)). On success *memrsp is an array of mrs_listcnt records (at least one: a
   generic query that matches nothing answers one record of zeros); on error it is NULL. */
cfg_status_t cfg_psm_memadd(const char *node, const char *catnam, pid_t pid);
cfg_status_t cfg_psm_memrem(const char *node, const char *catnam, pid_t pid);
cfg_status_t cfg_psm_memget(const char *node, const char *catnam, pid_t pid, psm_memrsp_t **memrsp);
/* Frees an array from cfg_psm_memget and sets *memrsp to NULL. The array itself may be passed too (as
   the page's example does): the library knows the arrays it handed out. */
void cfg_psm_memfree(psm_memrsp_t **memrsp);
#ifndef __cplusplus
#define cfg_psm_memfree(p) cfg_psm_memfree(_Generic((p), psm_memrsp_t *: (psm_memrsp_t **)(void *)(p), default: (p)))
#endif

/* Categories (cfg_psm_catops(3)). Removing a category is not supported (ENOTSUP), as psm.h says. */
cfg_status_t cfg_psm_catadd(const char *node, const char *catnam);
cfg_status_t cfg_psm_catrem(const char *node, const char *catnam);
cfg_status_t cfg_psm_catget(const char *node, const char *catnam, psm_catrsp_t **catrsp);
void cfg_psm_catfree(psm_catrsp_t **catrsp);
#ifndef __cplusplus
#define cfg_psm_catfree(p) cfg_psm_catfree(_Generic((p), psm_catrsp_t *: (psm_catrsp_t **)(void *)(p), default: (p)))
#endif

/* The category name of a _PSM_CAT_* index (NULL when out of range). */
const char *cfg_psm_catname(int idx);
/* Registers the calling process in the category of a _PSM_CAT_* index (its argv is saved now). */
cfg_status_t cfg_psm_regself(int idx);

/* vigil's, not Tru64's: sets the state string of member pid (mrs_state, "a user-modifiable state
   string"; at most PSM_STATELEN - 1 bytes unless vigild's psm_state_max says otherwise: ENOSPC past it)
   in category catnam (NULL: whichever it is in), on node (as for memadd). The caller must own the
   member, as for memrem. */
cfg_status_t cfg_psm_memstate_set(const char *node, const char *catnam, pid_t pid, const char *state);

#ifdef __cplusplus
}

/* C++ has no _Generic: overloads take the array itself, as the page's example passes it. */
inline void cfg_psm_memfree(psm_memrsp_t *memrsp)
{
	cfg_psm_memfree((psm_memrsp_t **)(void *)memrsp);
}
inline void cfg_psm_catfree(psm_catrsp_t *catrsp)
{
	cfg_psm_catfree((psm_catrsp_t **)(void *)catrsp);
}
#endif

#define _PSM_CAT2(a, b) a##b
#define _PSM_CAT(a, b) _PSM_CAT2(a, b)

/*
 * Self-registration, written as the page writes it:
 *
 *	_PSM_REGSELF(_PSM_CAT_MOUNTD);
 *
 * In C++ it is a declaration, at file scope (the process registers before main) or in a function (it
 * registers when control first reaches it: in the child after a daemonizing fork, before the process
 * rewrites its argv). In C it is a statement, inside a function: C has no declaration that runs code
 * both at file scope and in a function, and the statement form is the one the page's caveats need.
 */
#ifdef __cplusplus
#define _PSM_REGSELF(idx) \
	static const int _PSM_CAT(_psm_regself_, __LINE__) __attribute__((unused)) = cfg_psm_regself(idx)
#else
#define _PSM_REGSELF(idx) ((void)cfg_psm_regself(idx))
#endif

#endif /* _CFG_H_ */
