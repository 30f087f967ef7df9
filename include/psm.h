/*
 * vigil's psm.h: the Process Set Manager's records and constants (Tru64 UNIX psm.h(4),
 * cfg_psm_memops(3), cfg_psm_catops(3)), served by vigild. Included by <cfg.h>.
 *
 * Processes are organised in categories; each registered process (a member, by pid, even one vigil did
 * not start) keeps its termination status, a state string and its saved argv after it exits, until it is
 * removed or a new instance of the same program registers in its category. A process is in one category
 * at most.
 */
#ifndef _PSM_H_
#define _PSM_H_

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PSM_MEMLEN 32   /* mrs_name: "<nodeid>-<pid>", NUL-terminated */
#define PSM_STATELEN 32 /* mrs_state: NUL-terminated ("running", "exited", or what was set) */
#define PSM_ARGVLEN 256 /* mrs_argv: the arguments, each NUL-terminated, one after the other */
#define PSM_CATLEN 64   /* crs_name: a category name, NUL-terminated */

/* mrs_flags */
#define PSM_FL_EXIT 0x1     /* the process has exited: mrs_exitcode holds its wait(2) status */
#define PSM_FL_ARGTRUNC 0x2 /* mrs_argv was truncated */

/* mrs_exitcode of an exited process whose status nobody could learn: no wait(2) macro accepts it
   (WIFEXITED, WIFSIGNALED, WIFSTOPPED and WIFCONTINUED are all false). Never reported as 0. */
#define PSM_EXIT_UNKNOWN 0xffffffffU

/* Nodes: this host; every node (a query succeeds when any node answers); or a host name, or a
   comma-separated list of host names. Other nodes need vigil's cluster mode (ENOTSUP without it). */
#define _PSM_MYNODE ((const char *)0)
#define _PSM_ALLNODE "*"

/* Every process (cfg_psm_memget), every category (memget, memrem, catget). */
#define _PSM_ALLPID ((pid_t)-1)
#define _PSM_ALLCAT ((const char *)0)

typedef struct psm_memrsp_s {
	unsigned int mrs_listidx;     /* member number in list (from 1) */
	unsigned int mrs_listcnt;     /* total members in list */
	unsigned int mrs_total;       /* total matching members */
	unsigned int mrs_pid;         /* process id */
	unsigned int mrs_exitcode;    /* exit status code (wait(2) encoding) */
	unsigned int mrs_flags;       /* process flags (PSM_FL_*) */
	char mrs_name[PSM_MEMLEN];    /* unique name of member */
	char mrs_state[PSM_STATELEN]; /* state ("running", etc.) */
	char mrs_argv[PSM_ARGVLEN];   /* saved argv */
} psm_memrsp_t;

typedef struct psm_catrsp_s {
	unsigned int crs_listidx;  /* category number in list (from 1) */
	unsigned int crs_listcnt;  /* total categories in list */
	unsigned int crs_total;    /* total matching categories */
	unsigned int crs_members;  /* members registered in it */
	unsigned int crs_running;  /* of which still running */
	char crs_name[PSM_CATLEN]; /* category name */
} psm_catrsp_t;

/* Categories of common daemons, for _PSM_REGSELF() (see <cfg.h>); cfg_psm_catname() gives the name. */
enum {
	_PSM_CAT_MOUNTD = 0,
	_PSM_CAT_NFSD,
	_PSM_CAT_PORTMAP,
	_PSM_CAT_INETD,
	_PSM_CAT_SYSLOGD,
	_PSM_CAT_CRON,
	_PSM_CAT_SSHD,
	_PSM_CAT_NAMED,
	_PSM_CAT_SENDMAIL,
	_PSM_CAT_LPD,
	_PSM_CAT_NTPD,
	_PSM_CAT_HTTPD,
	_PSM_CAT_COUNT
};

#ifdef __cplusplus
}
#endif

#endif /* _PSM_H_ */
