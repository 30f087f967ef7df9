/*
 * vigil's rgm/libdsdev.h: the process monitor part of Solaris Cluster's data service development
 * library (DSDL), served by vigild. Link with -ldsdev (libdsdev.so.1).
 *
 * A data service method calls scds_initialize() with its own arguments (-R resource -T type -G group),
 * then starts, signals, stops and queries its programs under vigil's process monitor. Each program is
 * a vigil tag named
 *
 *     <resource group>,<resource>,<instance>.svc     SCDS_PMF_TYPE_SVC   (the data service)
 *     <resource group>,<resource>,<instance>.mon     SCDS_PMF_TYPE_MON   (its fault monitor)
 *     <resource group>,<resource>,<instance>.other   SCDS_PMF_TYPE_OTHER
 *
 * so `vigil status`, `vigil list` and `pmfadm -l` show the programs under those names.
 *
 * There is no resource group manager: only the functions below exist, and the resource's properties
 * are whatever the method's arguments say (-r Retry_count=N and -r Retry_interval=SECONDS set the
 * restart budget of the programs a handle starts; without them, a program that exits is not restarted,
 * as with `pmfadm -c` and no -n).
 */
#ifndef VIGIL_RGM_LIBDSDEV_H
#define VIGIL_RGM_LIBDSDEV_H

#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (scha_calls(3HA)). 0 is success; libdsdev returns the ones marked *. */
typedef enum scha_err {
	SCHA_ERR_NOERR = 0,     /* * the function succeeded */
	SCHA_ERR_NOMEM = 1,     /*   not enough memory */
	SCHA_ERR_HANDLE = 2,    /* * not a handle from scds_initialize(), or closed */
	SCHA_ERR_INVAL = 3,     /* * an invalid argument: NULL, a missing -R/-T/-G, a bad type,
	                         *   instance, level, timeout, environment string or command */
	SCHA_ERR_TAG = 4,       /*   invalid API tag */
	SCHA_ERR_RECONF = 5,    /*   the cluster is reconfiguring */
	SCHA_ERR_ACCESS = 6,    /* * permission denied: the program belongs to another user */
	SCHA_ERR_SEQID = 7,     /*   the object changed since it was opened */
	SCHA_ERR_DEPEND = 8,    /*   object dependency problem */
	SCHA_ERR_STATE = 9,     /* * the program is not in a state for this: not started, no
	                         *   process left to signal, or being stopped */
	SCHA_ERR_METHOD = 10,   /*   invalid method */
	SCHA_ERR_NODE = 11,     /*   invalid node */
	SCHA_ERR_RG = 12,       /*   invalid resource group */
	SCHA_ERR_RT = 13,       /*   invalid resource type */
	SCHA_ERR_RSRC = 14,     /*   invalid resource */
	SCHA_ERR_PROP = 15,     /*   invalid property */
	SCHA_ERR_CHECKS = 16,   /*   sanity checks failed */
	SCHA_ERR_RSTATUS = 17,  /*   bad resource status */
	SCHA_ERR_INTERNAL = 18, /* * the program runs already (scds_pmf_start), vigild cannot be
	                         *   reached, or vigild failed */
	SCHA_ERR_TIMEOUT = 20   /* * processes outlived the timeout */
} scha_err_t;

/* What scds_initialize() returns: opaque. */
typedef void *scds_handle_t;

/* The kind of program, part of its tag's name. */
typedef enum scds_pmf_type {
	SCDS_PMF_TYPE_SVC = 0,  /* the data service application */
	SCDS_PMF_TYPE_MON = 1,  /* its fault monitor */
	SCDS_PMF_TYPE_OTHER = 2 /* anything else */
} scds_pmf_type_t;

/* What scds_pmf_get_status() finds. */
typedef enum scds_pmf_status {
	SCDS_PMF_MONITORED = 0,    /* the tag exists and vigil watches it (pmfadm -q) */
	SCDS_PMF_NOT_MONITORED = 1 /* no such tag, or it is stopped, failed or being stopped */
} scds_pmf_status_t;

/* The instance of a resource that has only one. */
#define SCDS_PMF_SINGLE_INSTANCE 0

/*
 * Reads -R resource, -T type and -G group from argv (each as "-R name" or "-Rname"; other arguments
 * are ignored, and the values of -r -x -g -Z skipped) and connects to vigild ($VIGIL_SOCKET, or the
 * default socket). SCHA_ERR_INVAL if one of the three is missing or empty, or handle or argv is NULL;
 * SCHA_ERR_INTERNAL if vigild cannot be reached. Names that cannot form a tag are refused by the
 * first scds_pmf_start() (SCHA_ERR_INVAL).
 */
scha_err_t scds_initialize(scds_handle_t *handle, int argc, char *argv[]);

/* Closes the connection, forgets the handle and sets *handle to NULL. */
void scds_close(scds_handle_t *handle);

/*
 * Runs command under vigil's process monitor, as `pmfadm -c TAG` would: the command line is split
 * into words as sh(1) splits them (blanks, '...', "...", backslash) and nothing more, so the first
 * word is the program, at level 0, its children at level 1 and so on; run "/bin/sh -c '...'" for
 * pipes and redirections. child_monitor_level is pmfadm's -C: the deepest level watched, -1 for all.
 * As with `pmfadm -c`, the program runs in the caller's current directory with the caller's PATH and
 * nothing else of its environment. A program that runs already is SCHA_ERR_INTERNAL, and a syslog(3)
 * message at LOG_ERR says so; a stopped or failed one of the same tag is replaced.
 *
 * vigild adds to the program's environment, each only where it is not set already:
 *   PATH            /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin (when the caller has none)
 *   HOME, USER, LOGNAME   the calling user's, from the password database
 *   VIGIL_TAG       the program's tag, "<group>,<resource>,<instance>.svc|.mon|.other"
 *   VIGIL_INSTANCE  instance
 *   NOTIFY_SOCKET   vigild's sd_notify(3) socket: a program may report READY=1 or WATCHDOG=1 there
 * None of them is Solaris's; a program written for Solaris ignores them.
 */
scha_err_t scds_pmf_start(scds_handle_t handle, scds_pmf_type_t program_type, int instance,
                          const char *command, int child_monitor_level);

/* As scds_pmf_start(), with env ("NAME=value" strings, NULL-terminated, as for execve(2)) as the
 * program's environment instead of the caller's PATH; vigild adds the variables above that env lacks. */
scha_err_t scds_pmf_start_env(scds_handle_t handle, scds_pmf_type_t program_type, int instance,
                              const char *command, int child_monitor_level, char **env);

/*
 * Stops the program (pmfadm -s): monitoring ends, signal goes to every process, SIGKILL after 80% of
 * timeout seconds; SCHA_ERR_TIMEOUT if processes are left after that. A program that does not run is
 * SCHA_ERR_NOERR at once. The tag stays, stopped, for `vigil status`.
 */
scha_err_t scds_pmf_stop(scds_handle_t handle, scds_pmf_type_t program_type, int instance, int signal,
                         time_t timeout);

/*
 * Sends signal to every process of the program (pmfadm -k); monitoring goes on. Then waits up to
 * timeout seconds for those processes to exit (0: no wait, -1: no limit): SCHA_ERR_TIMEOUT if they
 * do not. SCHA_ERR_STATE if the program has no process.
 */
scha_err_t scds_pmf_signal(scds_handle_t handle, scds_pmf_type_t program_type, int instance, int signal,
                           time_t timeout);

/* Sets *pmf_status to SCDS_PMF_MONITORED or SCDS_PMF_NOT_MONITORED. */
scha_err_t scds_pmf_get_status(scds_handle_t handle, scds_pmf_type_t program_type, int instance,
                               scds_pmf_status_t *pmf_status);

/*
 * Restarts the fault monitor (the SCDS_PMF_TYPE_MON program of instance): SIGKILL to its processes,
 * then its command again, not counted against its restart budget. SCHA_ERR_STATE if it was never
 * started.
 */
scha_err_t scds_pmf_restart_fm(scds_handle_t handle, int instance);

#ifdef __cplusplus
}
#endif

#endif /* VIGIL_RGM_LIBDSDEV_H */
