/*
 * The scenarios of corosync's SAM test program (test/testsam.c in corosync's repository, tests 1 to 9),
 * written anew for vigil: a program written for corosync's libsam expects exactly these outcomes. Each
 * test runs in its own process, which becomes a SAM supervisor; its exit status (WEXITSTATUS, as corosync's
 * program reads it) says passed (0), skipped (1) or failed (more). Results go to stderr as "testN passed",
 * then "All tests passed (K skipped)".
 *
 * Differences from the original program, none of which changes what libsam must do: intervals and sleeps
 * are shorter where the outcome does not depend on them (longer for the callback test, whose 100 ms a loaded
 * machine can miss); the quorum test drives vigil's quorum through
 * quorum.expected_votes (corosync's drives its testquorum provider through quorum.quorate); a few extra
 * checks where corosync's library behaves so too (the comments say which).
 */
#include <corosync/cmap.h>
#include <corosync/corotypes.h>
#include <corosync/sam.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PASS 0
#define SKIP 1
#define FAIL 2

static volatile sig_atomic_t warned;
static int callback_calls;
static volatile sig_atomic_t usr1_count;

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static int fail(const char *test, const char *what, int err)
{
	fprintf(stderr, "%s: %s (error %d)\n", test, what, err);
	return FAIL;
}

#define CHECK(call, want, what)                                                   \
	do {                                                                      \
		cs_error_t e_ = (call);                                           \
		if (e_ != (want))                                                 \
			return fail(__func__, what, e_);                          \
	} while (0)

/* RESTART: two instances time out (the second after a stop, a pause and a start), the third checks that
 * nothing works twice or after finalize. */
static int test1(void)
{
	unsigned int id;
	int i;

	CHECK(sam_initialize(1000, SAM_RECOVERY_POLICY_RESTART), CS_OK, "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id == 1 || id == 2) {
		CHECK(sam_start(), CS_OK, "start");
		for (i = 0; i < 4; i++) {
			sleep_ms(400);
			CHECK(sam_hc_send(), CS_OK, "hc_send");
		}
		if (id == 2) {
			CHECK(sam_stop(), CS_OK, "stop");
			/* Stopped: longer than the interval, and nothing happens. */
			sleep_ms(2500);
			CHECK(sam_start(), CS_OK, "start again");
		}
		sleep_ms(6000);
		return fail(__func__, "not killed after a missed heartbeat", 0);
	}
	if (id == 3) {
		if (sam_initialize(1000, SAM_RECOVERY_POLICY_RESTART) == CS_OK)
			return fail(__func__, "initialize twice", 0);
		CHECK(sam_start(), CS_OK, "start");
		CHECK(sam_stop(), CS_OK, "stop");
		CHECK(sam_finalize(), CS_OK, "finalize");
		if (sam_finalize() == CS_OK)
			return fail(__func__, "finalize twice", 0);
		if (sam_initialize(2, SAM_RECOVERY_POLICY_RESTART) == CS_OK || sam_start() == CS_OK ||
		    sam_stop() == CS_OK || sam_register(NULL) == CS_OK || sam_hc_send() == CS_OK ||
		    sam_hc_callback_register(NULL) == CS_OK)
			return fail(__func__, "a call worked after finalize", 0);
		return PASS;
	}
	return fail(__func__, "unexpected instance", (int)id);
}

static void on_term(int sig)
{
	(void)sig;
	warned = 1;
}

/* QUIT: the warn signal is caught, SIGKILL follows; the supervisor exits with WEXITSTATUS, 0. */
static int test2(void)
{
	unsigned int id;

	CHECK(sam_initialize(1000, SAM_RECOVERY_POLICY_QUIT), CS_OK, "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id != 1)
		return fail(__func__, "a second instance under QUIT", (int)id);
	signal(SIGTERM, on_term);
	CHECK(sam_start(), CS_OK, "start");
	sleep_ms(500);
	CHECK(sam_hc_send(), CS_OK, "hc_send");
	while (!warned)
		sleep_ms(50);
	sleep_ms(6000);
	return fail(__func__, "not killed after the warning", 0);
}

/* No time limit, RESTART: a hundred instances that crash at once are each replaced. */
static int test3(void)
{
	unsigned int id;
	struct rlimit no_core = { 0, 0 };

	setrlimit(RLIMIT_CORE, &no_core);
	CHECK(sam_initialize(0, SAM_RECOVERY_POLICY_RESTART), CS_OK, "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id < 100) {
		CHECK(sam_start(), CS_OK, "start");
		kill(getpid(), SIGSEGV);
		return fail(__func__, "survived SIGSEGV", 0);
	}
	return PASS;
}

static void fill(char *buf, size_t n, int delta)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = (char)((int)i + delta);
}

/* sam_data_store, sam_data_getsize and sam_data_restore, before and after register and across restarts. */
static int test4(void)
{
	unsigned int id;
	size_t size;
	char data[128], back[128];

	CHECK(sam_data_getsize(&size), CS_ERR_BAD_HANDLE, "getsize before initialize");
	CHECK(sam_data_getsize(NULL), CS_ERR_INVALID_PARAM, "getsize NULL");
	CHECK(sam_data_store(NULL, 0), CS_ERR_BAD_HANDLE, "store before initialize");
	CHECK(sam_data_restore(back, sizeof(back)), CS_ERR_BAD_HANDLE, "restore before initialize");
	CHECK(sam_initialize(0, SAM_RECOVERY_POLICY_RESTART), CS_OK, "initialize");
	CHECK(sam_data_getsize(&size), CS_OK, "getsize");
	if (size != 0)
		return fail(__func__, "size not 0", (int)size);
	CHECK(sam_data_restore(NULL, sizeof(back)), CS_ERR_INVALID_PARAM, "restore NULL");
	fill(data, sizeof(data), 5);
	CHECK(sam_data_store(data, sizeof(data)), CS_OK, "store");
	CHECK(sam_data_getsize(&size), CS_OK, "getsize");
	if (size != sizeof(data))
		return fail(__func__, "size not 128", (int)size);
	CHECK(sam_data_restore(back, sizeof(back) - 1), CS_ERR_INVALID_PARAM, "restore too small");
	CHECK(sam_data_restore(back, sizeof(back)), CS_OK, "restore");
	if (memcmp(data, back, sizeof(data)) != 0)
		return fail(__func__, "restored data differ", 0);
	CHECK(sam_data_store(NULL, 1), CS_OK, "store NULL");
	CHECK(sam_data_getsize(&size), CS_OK, "getsize");
	if (size != 0)
		return fail(__func__, "size not 0 after store NULL", (int)size);
	CHECK(sam_data_store(data, sizeof(data)), CS_OK, "store");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id == 1) {
		CHECK(sam_start(), CS_OK, "start");
		CHECK(sam_data_getsize(&size), CS_OK, "getsize");
		if (size != sizeof(data))
			return fail(__func__, "instance 1: size not 128", (int)size);
		memset(back, 0, sizeof(back));
		CHECK(sam_data_restore(back, sizeof(back)), CS_OK, "restore");
		if (memcmp(data, back, sizeof(data)) != 0)
			return fail(__func__, "instance 1: restored data differ", 0);
		fill(data, sizeof(data), -5);
		CHECK(sam_data_store(data, sizeof(data) - 7), CS_OK, "store");
		exit(1);
	}
	if (id == 2) {
		CHECK(sam_start(), CS_OK, "start");
		CHECK(sam_data_getsize(&size), CS_OK, "getsize");
		if (size != sizeof(data) - 7)
			return fail(__func__, "instance 2: size not 121", (int)size);
		memset(back, 0, sizeof(back));
		CHECK(sam_data_restore(back, sizeof(back)), CS_OK, "restore");
		fill(data, sizeof(data), -5);
		if (memcmp(data, back, sizeof(data) - 7) != 0)
			return fail(__func__, "instance 2: restored data differ", 0);
		CHECK(sam_data_store(NULL, 0), CS_OK, "store NULL");
		exit(1);
	}
	CHECK(sam_data_getsize(&size), CS_OK, "getsize");
	if (size != 0)
		return fail(__func__, "instance 3: size not 0", (int)size);
	return PASS;
}

/* Healthy ten times, each time storing its count; the eleventh answer fails. */
static int test5_callback(void)
{
	callback_calls++;
	if (sam_data_store(&callback_calls, sizeof(callback_calls)) != CS_OK)
		return 1;
	return callback_calls > 10;
}

/* Event-driven checking: the instance is killed once its callback fails, not before. */
static int test5(void)
{
	unsigned int id;
	int calls = 0;

	/* corosync's test uses 100 ms, which a loaded machine can miss before the callback ever runs. */
	CHECK(sam_initialize(400, SAM_RECOVERY_POLICY_RESTART), CS_OK, "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id == 1) {
		CHECK(sam_hc_callback_register(test5_callback), CS_OK, "hc_callback_register");
		CHECK(sam_start(), CS_OK, "start");
		sleep_ms(12000);
		return fail(__func__, "not killed after the callback failed", 0);
	}
	if (id == 2) {
		CHECK(sam_data_restore(&calls, sizeof(calls)), CS_OK, "restore");
		if (calls != 11)
			return fail(__func__, "killed after this many callback calls, not 11", calls);
		return PASS;
	}
	return fail(__func__, "unexpected instance", (int)id);
}

/* The warn signal's handler stores how many warnings arrived (corosync's test does so). */
static void on_usr1(int sig)
{
	int n;

	(void)sig;
	n = ++usr1_count;
	sam_data_store(&n, sizeof(n));
}

/* sam_warn_signal_set: SIGUSR1 arrives (once: the data stored in its handler does not buy a second
 * one), then SIGKILL as the warn signal is no warning at all. */
static int test6(void)
{
	unsigned int id;
	int seen = 0;

	CHECK(sam_initialize(1000, SAM_RECOVERY_POLICY_RESTART), CS_OK, "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id == 1 || id == 2) {
		if (id == 2) {
			CHECK(sam_data_restore(&seen, sizeof(seen)), CS_OK, "restore");
			if (seen != 1)
				return fail(__func__, "instance 1 did not get exactly one SIGUSR1", seen);
		}
		CHECK(sam_warn_signal_set(id == 1 ? SIGUSR1 : SIGKILL), CS_OK, "warn_signal_set");
		signal(SIGUSR1, on_usr1);
		CHECK(sam_start(), CS_OK, "start");
		sleep_ms(500);
		CHECK(sam_hc_send(), CS_OK, "hc_send");
		while (!usr1_count)
			sleep_ms(50);
		sleep_ms(6000);
		return fail(__func__, "not killed", (int)id);
	}
	if (id == 3) {
		CHECK(sam_data_restore(&seen, sizeof(seen)), CS_OK, "restore");
		if (seen != 1)
			return fail(__func__, "instance 2 got SIGUSR1", seen);
		return PASS;
	}
	return fail(__func__, "unexpected instance", (int)id);
}

static void *leave_later(void *unused)
{
	(void)unused;
	sleep_ms(3000);
	/* An instance that ends while sam_start waits for quorum is a failure: corosync's supervisor
	 * (sam_parent_handler) has taken the start by then, so a RESTART policy restarts. A code other than 0
	 * makes an orderly end visible as a failed test. */
	exit(FAIL);
}

/* QUORUM: sam_start waits while the node is not quorate; losing quorum while started recovers. */
static int test7(void)
{
	cmap_handle_t cmap;
	unsigned int id;
	pthread_t t;

	if (cmap_initialize(&cmap) != CS_OK) {
		fprintf(stderr, "test7: no cmap, skipped\n");
		return SKIP;
	}
	CHECK(cmap_set_uint32(cmap, "quorum.expected_votes", 2), CS_OK, "not quorate");
	CHECK(sam_initialize(1000, SAM_RECOVERY_POLICY_QUORUM_RESTART), CS_OK, "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id == 1) {
		pthread_create(&t, NULL, leave_later, NULL);
		sam_start();
		return fail(__func__, "sam_start returned without quorum", 0);
	}
	if (id == 2) {
		CHECK(cmap_set_uint32(cmap, "quorum.expected_votes", 1), CS_OK, "quorate");
		CHECK(sam_start(), CS_OK, "start");
		CHECK(cmap_set_uint32(cmap, "quorum.expected_votes", 2), CS_OK, "not quorate");
		sleep_ms(6000);
		return fail(__func__, "not killed after quorum was lost", 0);
	}
	if (id == 3) {
		/* A handle of its own: instance 2 may have been killed between its last request and the
		 * reading of the reply, which then waits unread on the handle this instance inherited. */
		CHECK(cmap_initialize(&cmap), CS_OK, "cmap_initialize");
		CHECK(cmap_set_uint32(cmap, "quorum.expected_votes", 1), CS_OK, "quorate");
		return PASS;
	}
	return fail(__func__, "unexpected instance", (int)id);
}

static int key_is(cmap_handle_t cmap, pid_t pid, const char *key, const char *want)
{
	char name[CMAP_KEYNAME_MAXLEN];
	char *value = NULL;
	int same;

	snprintf(name, sizeof(name), "resources.process.%d.%s", (int)pid, key);
	if (cmap_get_string(cmap, name, &value) != CS_OK)
		return 0;
	same = strcmp(value, want) == 0;
	if (!same)
		fprintf(stderr, "%s is %s, not %s\n", name, value, want);
	free(value);
	return same;
}

static int last_updated(cmap_handle_t cmap, pid_t pid, uint64_t *t)
{
	char name[CMAP_KEYNAME_MAXLEN];

	snprintf(name, sizeof(name), "resources.process.%d.last_updated", (int)pid);
	return cmap_get_uint64(cmap, name, t) == CS_OK;
}

#define KEY(pid, key, want)                                                        \
	do {                                                                       \
		if (!key_is(cmap, pid, key, want))                                  \
			return fail(__func__, key " is not " want, 0);              \
	} while (0)

/* CMAP with QUIT, in three runs: an orderly cycle (the keys go), one that times out (state "failed"),
 * and the check of that state. */
static int test8(pid_t pid, int run)
{
	cmap_handle_t cmap;
	unsigned int id;
	uint64_t t1, t2;
	long ms;
	char name[CMAP_KEYNAME_MAXLEN];
	char *value = NULL;

	if (cmap_initialize(&cmap) != CS_OK) {
		fprintf(stderr, "test8: no cmap, skipped\n");
		return SKIP;
	}
	if (run == 3) {
		KEY(pid, "state", "failed");
		return PASS;
	}
	snprintf(name, sizeof(name), "resources.process.%d.state", (int)pid);
	if (cmap_get_string(cmap, name, &value) == CS_OK) {
		free(value);
		return fail(__func__, "keys exist before register", 0);
	}
	CHECK(sam_initialize(2000, SAM_RECOVERY_POLICY_QUIT | SAM_RECOVERY_POLICY_CMAP), CS_OK, "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	KEY(pid, "recovery", "quit");
	KEY(pid, "state", "stopped");
	CHECK(sam_start(), CS_OK, "start");
	KEY(pid, "state", "running");
	CHECK(sam_stop(), CS_OK, "stop");
	KEY(pid, "state", "stopped");
	sleep_ms(3000);
	KEY(pid, "state", "stopped");
	CHECK(sam_start(), CS_OK, "start");
	KEY(pid, "state", "running");
	if (run == 2) {
		sleep_ms(8000);
		return fail(__func__, "not killed", 0);
	}
	CHECK(sam_hc_send(), CS_OK, "hc_send");
	if (!last_updated(cmap, pid, &t1))
		return fail(__func__, "no last_updated", 0);
	sleep_ms(1000);
	CHECK(sam_hc_send(), CS_OK, "hc_send");
	sleep_ms(1000);
	if (!last_updated(cmap, pid, &t2))
		return fail(__func__, "no last_updated", 0);
	ms = (long)((t2 - t1) / CS_TIME_NS_IN_MSEC);
	if (ms < 500 || ms > 2000)
		return fail(__func__, "last_updated moved by this many ms", (int)ms);
	CHECK(sam_stop(), CS_OK, "stop");
	KEY(pid, "state", "stopped");
	return PASS;
}

/* CMAP with RESTART: two instances time out, the third marks itself failed; the state is then
 * "failed" and, as corosync never rewrites it, the recovery key still "restart". */
static int test9(pid_t pid, int run)
{
	cmap_handle_t cmap;
	unsigned int id;

	if (cmap_initialize(&cmap) != CS_OK) {
		fprintf(stderr, "test9: no cmap, skipped\n");
		return SKIP;
	}
	if (run == 2) {
		KEY(pid, "state", "failed");
		KEY(pid, "recovery", "restart");
		return PASS;
	}
	CHECK(sam_initialize(1000, SAM_RECOVERY_POLICY_RESTART | SAM_RECOVERY_POLICY_CMAP), CS_OK,
	      "initialize");
	CHECK(sam_register(&id), CS_OK, "register");
	if (id < 3) {
		KEY(pid, "recovery", "restart");
		KEY(pid, "state", "stopped");
		CHECK(sam_start(), CS_OK, "start");
		KEY(pid, "state", "running");
		sleep_ms(8000);
		return fail(__func__, "not killed", (int)id);
	}
	if (id == 3) {
		CHECK(sam_mark_failed(), CS_OK, "mark_failed");
		sleep_ms(8000);
		return fail(__func__, "not killed after mark_failed", 0);
	}
	return fail(__func__, "unexpected instance", (int)id);
}

/* Runs one test in a child process; its WEXITSTATUS, and its pid in *pid. */
static int in_child(int (*test)(pid_t, int), pid_t arg, int run, pid_t *pid)
{
	int status;
	int code;
	pid_t p = fork();

	if (p < 0) {
		perror("fork");
		exit(FAIL);
	}
	if (p == 0) {
		code = test(arg ? arg : getpid(), run);
		sam_finalize();
		exit(code);
	}
	waitpid(p, &status, 0);
	if (pid)
		*pid = p;
	return WEXITSTATUS(status);
}

static int (*plain_test)(void);

static int plain(pid_t unused, int run)
{
	(void)unused;
	(void)run;
	return plain_test();
}

static int skipped;
static int all_passed = 1;

static void verdict(int n, int code)
{
	fprintf(stderr, "test%d %s\n", n, code == PASS ? "passed" : code == SKIP ? "skipped" : "failed");
	if (code == SKIP)
		skipped++;
	else if (code != PASS)
		all_passed = 0;
}

int main(void)
{
	int (*plain_tests[])(void) = { test1, test2, test3, test4, test5, test6, test7 };
	int code;
	int n;
	pid_t pid, old;

	setvbuf(stderr, NULL, _IONBF, 0);
	for (n = 0; n < 7; n++) {
		plain_test = plain_tests[n];
		verdict(n + 1, in_child(plain, 0, 0, NULL));
	}

	code = in_child(test8, 0, 1, &pid);
	if (code == PASS) {
		code = in_child(test8, 0, 2, &pid);
		old = pid;
		if (code == PASS)
			code = in_child(test8, old, 3, NULL);
	}
	verdict(8, code);

	code = in_child(test9, 0, 1, &pid);
	old = pid;
	if (code == PASS)
		code = in_child(test9, old, 2, NULL);
	verdict(9, code);

	if (all_passed)
		fprintf(stderr, "All tests passed (%d skipped)\n", skipped);
	return all_passed ? 0 : 1;
}
