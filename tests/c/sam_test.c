/*
 * A C program of corosync's SAM API, run against vigil's libsam.so.4 (and vigild) by the daemon's tests.
 * Each call appends "<instance> <what> <cs_error_t>" to the file argv[1], so the test reads exactly what
 * every call returned; instance 0 is before sam_register.
 *
 *   sam_test OUT api       every function in every state, with its error codes
 *   sam_test OUT restart   RESTART: instances 1..3 store data and abort; 4 reads it and ends in order;
 *                          each notes its open descriptors and its supervisor's threads
 *   sam_test OUT warn      a missed heartbeat: the warn signal (caught) comes one interval before SIGKILL
 *   sam_test OUT callback  event-driven checking: a callback that fails after three answers
 *   sam_test OUT failed    RESTART|CMAP: sam_mark_failed ends everything with state "failed"
 *   sam_test OUT quorum    QUORUM_RESTART|CMAP: sam_start returns once the node is quorate
 */
#include <corosync/sam.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *out_path;
static unsigned int instance;
static volatile sig_atomic_t caught;
static int callback_left = 3;

static void line(const char *what, long value)
{
	FILE *f = fopen(out_path, "a");
	if (f == NULL)
		abort();
	fprintf(f, "%u %s %ld\n", instance, what, value);
	fclose(f);
}

static void on_signal(int sig)
{
	caught = sig;
}

static int callback(void)
{
	if (callback_left == 0)
		return 1;
	callback_left--;
	return 0;
}

static int healthy(void)
{
	return 0;
}

static void api(void)
{
	size_t size = 0;
	char buf[16];
	char small[2];

	line("start", sam_start());
	line("stop", sam_stop());
	line("hc_send", sam_hc_send());
	line("finalize", sam_finalize());
	line("register", sam_register(NULL));
	line("mark_failed", sam_mark_failed());
	line("warn_signal_set", sam_warn_signal_set(SIGTERM));
	line("data_getsize", sam_data_getsize(&size));
	line("data_getsize_null", sam_data_getsize(NULL));
	line("data_restore", sam_data_restore(buf, sizeof(buf)));
	line("data_restore_null", sam_data_restore(NULL, 4));
	line("data_store", sam_data_store("x", 1));
	line("hc_callback_register", sam_hc_callback_register(healthy));
	line("initialize_bad_policy", sam_initialize(100, 0));
	line("initialize_quorum_only", sam_initialize(100, SAM_RECOVERY_POLICY_QUORUM));
	line("initialize", sam_initialize(60000, SAM_RECOVERY_POLICY_RESTART));
	line("initialize_again", sam_initialize(100, SAM_RECOVERY_POLICY_RESTART));
	line("start", sam_start());
	line("hc_send", sam_hc_send());
	line("hc_callback_register", sam_hc_callback_register(healthy));
	line("mark_failed", sam_mark_failed());
	line("warn_signal_set", sam_warn_signal_set(SIGUSR1));
	line("data_store", sam_data_store("pre", 4));
	line("data_getsize", sam_data_getsize(&size));
	line("size", (long)size);
	line("register", sam_register(&instance));
	/* Instance 1 from here. */
	line("register_again", sam_register(NULL));
	line("hc_send", sam_hc_send());
	line("stop", sam_stop());
	line("mark_failed", sam_mark_failed()); /* no CMAP flag */
	line("data_restore_small", sam_data_restore(small, sizeof(small)));
	memset(buf, 0, sizeof(buf));
	line("data_restore", sam_data_restore(buf, sizeof(buf)));
	line("data_is_pre", strcmp(buf, "pre") == 0);
	line("hc_callback_register_null_first", sam_hc_callback_register(NULL));
	line("start", sam_start());
	line("start_again", sam_start());
	line("hc_callback_register_started", sam_hc_callback_register(healthy));
	line("hc_send", sam_hc_send());
	line("stop", sam_stop());
	line("data_store_null", sam_data_store(NULL, 0));
	line("data_getsize", sam_data_getsize(&size));
	line("size", (long)size);
	line("finalize", sam_finalize());
	line("finalize_again", sam_finalize());
	line("start", sam_start());
	line("hc_send", sam_hc_send());
	line("data_getsize", sam_data_getsize(&size));
	line("warn_signal_set", sam_warn_signal_set(SIGTERM));
	exit(0);
}

/* The descriptors this process has open. */
static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own */
}

/* The number of threads of the supervisor (Threads: in /proc/PPID/status); 0 if unknown. */
static long supervisor_threads(void)
{
	char path[64], row[256];
	long n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)getppid());
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(row, sizeof(row), f) != NULL)
		if (strncmp(row, "Threads:", 8) == 0)
			n = atol(row + 8);
	fclose(f);
	return n;
}

static void restart(void)
{
	char buf[32] = "";
	char gen[32];
	size_t size = 0;

	line("initialize", sam_initialize(5000, SAM_RECOVERY_POLICY_RESTART));
	line("register", sam_register(&instance));
	line("fds", open_fds());
	line("supervisor_threads", supervisor_threads());
	line("data_getsize", sam_data_getsize(&size));
	line("size", (long)size);
	if (size > 0) {
		line("data_restore", sam_data_restore(buf, sizeof(buf)));
		line("data_gen", atoi(buf + 4));
	}
	if (instance <= 3) {
		line("start", sam_start());
		snprintf(gen, sizeof(gen), "gen-%u", instance);
		line("data_store", sam_data_store(gen, strlen(gen) + 1));
		abort();
	}
	line("finalize", sam_finalize());
	exit(7);
}

static void warn(void)
{
	line("initialize", sam_initialize(1000, SAM_RECOVERY_POLICY_RESTART));
	line("register", sam_register(&instance));
	if (instance == 1) {
		signal(SIGTERM, on_signal);
		line("start", sam_start());
		for (;;) {
			if (caught) {
				line("caught", caught);
				caught = 0;
			}
			usleep(5000);
		}
	}
	exit(0);
}

static void run_callback(void)
{
	line("initialize", sam_initialize(300, SAM_RECOVERY_POLICY_RESTART));
	line("register", sam_register(&instance));
	if (instance == 1) {
		line("hc_callback_register", sam_hc_callback_register(callback));
		line("start", sam_start());
		for (;;)
			pause();
	}
	exit(0);
}

static void failed(void)
{
	line("initialize", sam_initialize(60000, SAM_RECOVERY_POLICY_RESTART | SAM_RECOVERY_POLICY_CMAP));
	line("register", sam_register(&instance));
	line("start", sam_start());
	line("hc_send", sam_hc_send());
	line("mark_failed", sam_mark_failed());
	for (;;)
		pause();
}

static void quorum(void)
{
	int i;

	line("initialize", sam_initialize(1000, SAM_RECOVERY_POLICY_QUORUM_RESTART | SAM_RECOVERY_POLICY_CMAP));
	line("register", sam_register(&instance));
	line("start", sam_start());
	for (i = 0; i < 5; i++) {
		line("hc_send", sam_hc_send());
		usleep(20000);
	}
	line("stop", sam_stop());
	line("finalize", sam_finalize());
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: sam_test OUT api|restart|warn|callback|failed|quorum\n");
		return 2;
	}
	out_path = argv[1];
	if (strcmp(argv[2], "api") == 0)
		api();
	else if (strcmp(argv[2], "restart") == 0)
		restart();
	else if (strcmp(argv[2], "warn") == 0)
		warn();
	else if (strcmp(argv[2], "callback") == 0)
		run_callback();
	else if (strcmp(argv[2], "failed") == 0)
		failed();
	else if (strcmp(argv[2], "quorum") == 0)
		quorum();
	return 2;
}
