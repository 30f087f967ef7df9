/*
 * corosync's SAM rules as a C program sees them, each scenario one rule of corosync's lib/sam.c. The same
 * binary runs against vigil's libsam.so.4 (LD_LIBRARY_PATH) and, where no daemon is needed, against
 * Debian's own libsam.so.4, and the daemon's tests compare what both return.
 * Each call appends "<instance> <what> <value>" to the file argv[1]; instance 0 is before sam_register.
 *
 *   sam_compat OUT args               argument checks: order, codes, a negative interval, any warn signal
 *   sam_compat OUT cmap_no_daemon     CMAP flag without a daemon: sam_register fails, not sam_initialize
 *   sam_compat OUT quorum_no_daemon   QUORUM flag without a daemon: sam_initialize fails
 *   sam_compat OUT exit_kill          QUIT: the instance ignores the warning and is killed; exit status 0
 *   sam_compat OUT exit_abort         QUIT: the instance aborts; exit status 0
 *   sam_compat OUT exit_code          QUIT: the started instance exits 5; exit status 5
 *   sam_compat OUT store_after_warn   a sam_data_store from the warn signal's handler does not save it
 *   sam_compat OUT late_hc            a heartbeat after the warning does not save the instance either
 *   sam_compat OUT stop_start         stopped: no deadline; after stop and start the warning still holds
 *   sam_compat OUT warned_stop_exit   warned, stopped, then an exit: an orderly end, no restart
 *   sam_compat OUT mark_failed        RESTART|CMAP: sam_mark_failed ends everything; exit status 0
 *   sam_compat OUT quorum0            interval 0 and QUORUM: after the warning, SIGKILL at the next
 *                                     quorum event that finds no quorum, not after a time
 */
#include <corosync/sam.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *out_path;
static unsigned int instance;
static volatile sig_atomic_t warnings;

static void line(const char *what, long value)
{
	FILE *f = fopen(out_path, "a");
	if (f == NULL)
		abort();
	fprintf(f, "%u %s %ld\n", instance, what, value);
	fclose(f);
}

static void count_warning(int sig)
{
	(void)sig;
	warnings++;
}

/* corosync's own test program does this: store in the warn signal's handler (test/testsam.c, test6). */
static void count_and_store(int sig)
{
	int n;

	(void)sig;
	n = ++warnings;
	sam_data_store(&n, sizeof(n));
}

static int healthy(void)
{
	return 0;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* Waits for the first warning, then reports it. */
static void wait_warned(void)
{
	while (warnings == 0)
		pause();
	line("warned", warnings);
}

/* Waits to be killed; a second warning ends the instance itself, so the test sees it at once. */
static void wait_killed(void)
{
	for (;;) {
		if (warnings >= 2) {
			line("warned_again", warnings);
			exit(3);
		}
		pause();
	}
}

static void args(void)
{
	/* lib/sam.c, sam_initialize: the state first, then the policy; the interval is not checked. */
	line("initialize_bad_policy", sam_initialize(100, 77));
	line("initialize_negative", sam_initialize(-5, SAM_RECOVERY_POLICY_QUIT));
	line("initialize_again_bad_policy", sam_initialize(100, 77));
	line("initialize_again", sam_initialize(100, SAM_RECOVERY_POLICY_QUIT));
	/* lib/sam.c, sam_warn_signal_set: any int is stored. */
	line("warn_signal_set_0", sam_warn_signal_set(0));
	line("warn_signal_set_-1", sam_warn_signal_set(-1));
	line("warn_signal_set_1000", sam_warn_signal_set(1000));
	line("warn_signal_set_65", sam_warn_signal_set(65));
	line("warn_signal_set_term", sam_warn_signal_set(SIGTERM));
	line("register", sam_register(&instance));
	/* lib/sam.c, sam_hc_callback_register: only an interval of 0 is refused. */
	line("hc_callback_register", sam_hc_callback_register(healthy));
	/* Through the supervisor (sam_parent_warn_signal_set): accepted there too. */
	line("warn_signal_set_1000", sam_warn_signal_set(1000));
	line("start", sam_start());
	line("hc_send", sam_hc_send());
	line("stop", sam_stop());
	line("finalize", sam_finalize());
	exit(0);
}

static void cmap_no_daemon(void)
{
	/* lib/sam.c: sam_initialize does not touch cmap; sam_register's sam_cmap_register does. */
	line("initialize", sam_initialize(100, SAM_RECOVERY_POLICY_QUIT | SAM_RECOVERY_POLICY_CMAP));
	line("register", sam_register(&instance));
	exit(0);
}

static void quorum_no_daemon(void)
{
	/* lib/sam.c, sam_initialize: quorum_initialize is called at once. */
	line("initialize", sam_initialize(100, SAM_RECOVERY_POLICY_QUIT | SAM_RECOVERY_POLICY_QUORUM));
	exit(0);
}

static void exit_kill(void)
{
	line("initialize", sam_initialize(500, SAM_RECOVERY_POLICY_QUIT));
	line("register", sam_register(&instance));
	signal(SIGTERM, SIG_IGN);
	line("start", sam_start());
	for (;;)
		pause();
}

static void exit_abort(void)
{
	line("initialize", sam_initialize(60000, SAM_RECOVERY_POLICY_QUIT));
	line("register", sam_register(&instance));
	line("start", sam_start());
	abort();
}

static void exit_code(void)
{
	line("initialize", sam_initialize(60000, SAM_RECOVERY_POLICY_QUIT));
	line("register", sam_register(&instance));
	line("start", sam_start());
	exit(5);
}

static void report_stored(void)
{
	int n = 0;
	size_t size = 0;

	sam_data_getsize(&size);
	if (size == sizeof(n))
		sam_data_restore(&n, sizeof(n));
	line("stored_warnings", n);
	exit(0);
}

static void store_after_warn(void)
{
	line("initialize", sam_initialize(500, SAM_RECOVERY_POLICY_RESTART));
	line("register", sam_register(&instance));
	if (instance > 1)
		report_stored();
	line("warn_signal_set", sam_warn_signal_set(SIGUSR1));
	signal(SIGUSR1, count_and_store);
	line("start", sam_start());
	line("hc_send", sam_hc_send());
	wait_killed();
}

static void late_hc(void)
{
	/* The interval leaves the heartbeat after the warning time to come before the kill on a loaded
	 * machine (it is sent as soon as the warning is noted). */
	line("initialize", sam_initialize(1500, SAM_RECOVERY_POLICY_RESTART));
	line("register", sam_register(&instance));
	if (instance > 1)
		exit(0);
	signal(SIGTERM, count_warning);
	line("start", sam_start());
	wait_warned();
	line("hc_send", sam_hc_send());
	wait_killed();
}

static void stop_start(void)
{
	line("initialize", sam_initialize(1000, SAM_RECOVERY_POLICY_RESTART));
	line("register", sam_register(&instance));
	if (instance > 1)
		exit(0);
	signal(SIGTERM, count_warning);
	line("start", sam_start());
	wait_warned();
	line("hc_send", sam_hc_send());
	line("stop", sam_stop());
	sleep_ms(2500);
	line("survived_stopped", warnings);
	line("start", sam_start());
	wait_killed();
}

static void warned_stop_exit(void)
{
	line("initialize", sam_initialize(1000, SAM_RECOVERY_POLICY_RESTART));
	line("register", sam_register(&instance));
	if (instance > 1)
		exit(0);
	signal(SIGTERM, count_warning);
	line("start", sam_start());
	wait_warned();
	line("stop", sam_stop());
	exit(3);
}

static void mark_failed(void)
{
	line("initialize", sam_initialize(60000, SAM_RECOVERY_POLICY_RESTART | SAM_RECOVERY_POLICY_CMAP));
	line("register", sam_register(&instance));
	signal(SIGTERM, count_warning);
	line("start", sam_start());
	line("mark_failed", sam_mark_failed());
	wait_killed();
}

static void quorum0(void)
{
	line("initialize", sam_initialize(0, SAM_RECOVERY_POLICY_QUORUM_RESTART));
	line("register", sam_register(&instance));
	if (instance > 1)
		exit(0);
	signal(SIGTERM, count_warning);
	line("start", sam_start());
	wait_warned();
	sleep_ms(2500);
	line("survived", warnings);
	wait_killed();
}

static const struct {
	const char *name;
	void (*run)(void);
} scenarios[] = {
	{ "args", args },
	{ "cmap_no_daemon", cmap_no_daemon },
	{ "quorum_no_daemon", quorum_no_daemon },
	{ "exit_kill", exit_kill },
	{ "exit_abort", exit_abort },
	{ "exit_code", exit_code },
	{ "store_after_warn", store_after_warn },
	{ "late_hc", late_hc },
	{ "stop_start", stop_start },
	{ "warned_stop_exit", warned_stop_exit },
	{ "mark_failed", mark_failed },
	{ "quorum0", quorum0 },
};

int main(int argc, char **argv)
{
	size_t i;

	if (argc != 3) {
		fprintf(stderr, "usage: sam_compat OUT SCENARIO\n");
		return 2;
	}
	out_path = argv[1];
	for (i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		if (strcmp(argv[2], scenarios[i].name) == 0) {
			scenarios[i].run();
			return 0;
		}
	}
	fprintf(stderr, "unknown scenario %s\n", argv[2]);
	return 2;
}
