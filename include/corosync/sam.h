/*
 * vigil's sam.h: corosync's service availability manager API (corosync 3.x ABI), served by vigil's
 * libsam.so.4. See docs/sam.md for the semantics.
 */
#ifndef COROSYNC_SAM_H_DEFINED
#define COROSYNC_SAM_H_DEFINED

#include <stddef.h>
#include <corosync/corotypes.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
	SAM_RECOVERY_POLICY_QUIT = 1,
	SAM_RECOVERY_POLICY_RESTART = 2,
	SAM_RECOVERY_POLICY_QUORUM = 0x08,
	SAM_RECOVERY_POLICY_QUORUM_QUIT = SAM_RECOVERY_POLICY_QUORUM | SAM_RECOVERY_POLICY_QUIT,
	SAM_RECOVERY_POLICY_QUORUM_RESTART = SAM_RECOVERY_POLICY_QUORUM | SAM_RECOVERY_POLICY_RESTART,
	SAM_RECOVERY_POLICY_CMAP = 0x10,
	SAM_RECOVERY_POLICY_CONFDB = 0x10,
} sam_recovery_policy_t;

/* Event-driven checking: 0 means healthy. */
typedef int (*sam_hc_callback_t)(void);

cs_error_t sam_initialize(int time_interval, sam_recovery_policy_t recovery_policy);
cs_error_t sam_finalize(void);
cs_error_t sam_start(void);
cs_error_t sam_stop(void);
cs_error_t sam_warn_signal_set(int warn_signal);
cs_error_t sam_register(unsigned int *instance_id);
cs_error_t sam_hc_send(void);
cs_error_t sam_hc_callback_register(sam_hc_callback_t cb);
cs_error_t sam_data_getsize(size_t *size);
cs_error_t sam_data_restore(void *data, size_t size);
cs_error_t sam_data_store(const void *data, size_t size);
cs_error_t sam_mark_failed(void);

#ifdef __cplusplus
}
#endif

#endif /* COROSYNC_SAM_H_DEFINED */
