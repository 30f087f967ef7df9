/*
 * libdsdev from C, driven by vigild's tests (crates/vigild/tests/daemon/c_dsdev.rs).
 *
 *     dsdev_test METHOD-ARGS... -- OP ARGS... [OP ARGS...]...
 *
 * scds_initialize() gets argv[0] and the method arguments (e.g. -R rs -T type -G group); then each OP
 * runs and prints "OP CODE" (status: "status CODE STATUS"), one line each, and scds_close() ends it.
 * Without a handle (initialize failed), only "initialize CODE" is printed. TYPE is svc, mon, other or
 * a number (an invalid one).
 *
 *     start TYPE INSTANCE LEVEL COMMAND
 *     start_env TYPE INSTANCE LEVEL COMMAND N VAR...   (N "NAME=value" strings)
 *     start_null TYPE INSTANCE                          (a NULL command)
 *     stop TYPE INSTANCE SIGNAL TIMEOUT
 *     signal TYPE INSTANCE SIGNAL TIMEOUT
 *     status TYPE INSTANCE
 *     status_null TYPE INSTANCE                         (a NULL pmf_status)
 *     restart_fm INSTANCE
 *     handles                                           (every call with bad handles, NULL pointers)
 */
#include <rgm/libdsdev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static scds_pmf_type_t type_of(const char *s)
{
	if (strcmp(s, "svc") == 0)
		return SCDS_PMF_TYPE_SVC;
	if (strcmp(s, "mon") == 0)
		return SCDS_PMF_TYPE_MON;
	if (strcmp(s, "other") == 0)
		return SCDS_PMF_TYPE_OTHER;
	return (scds_pmf_type_t)atoi(s);
}

static void say(const char *op, scha_err_t e)
{
	printf("%s %d\n", op, (int)e);
	fflush(stdout);
}

/* Every function with a handle that was never given out, a closed one, and NULL pointers. */
static void handles(scds_handle_t good, int argc, char **argv)
{
	scds_handle_t bogus = (scds_handle_t)&argc;
	scds_handle_t closed = NULL;
	scds_pmf_status_t st;
	char *env[] = { "A=b", NULL };

	say("bogus_start", scds_pmf_start(bogus, SCDS_PMF_TYPE_SVC, 0, "/bin/true", 0));
	say("bogus_start_env", scds_pmf_start_env(bogus, SCDS_PMF_TYPE_SVC, 0, "/bin/true", 0, env));
	say("bogus_stop", scds_pmf_stop(bogus, SCDS_PMF_TYPE_SVC, 0, SIGTERM, 1));
	say("bogus_signal", scds_pmf_signal(bogus, SCDS_PMF_TYPE_SVC, 0, SIGTERM, 0));
	say("bogus_status", scds_pmf_get_status(bogus, SCDS_PMF_TYPE_SVC, 0, &st));
	say("bogus_restart_fm", scds_pmf_restart_fm(bogus, 0));
	say("null_start", scds_pmf_start(NULL, SCDS_PMF_TYPE_SVC, 0, "/bin/true", 0));
	say("null_status", scds_pmf_get_status(NULL, SCDS_PMF_TYPE_SVC, 0, &st));

	say("initialize_second", scds_initialize(&closed, argc, argv));
	say("second_status", scds_pmf_get_status(closed, SCDS_PMF_TYPE_SVC, 0, &st));
	scds_handle_t copy = closed;
	scds_close(&closed);
	say("closed_is_null", closed == NULL ? SCHA_ERR_NOERR : SCHA_ERR_INTERNAL);
	say("closed_status", scds_pmf_get_status(copy, SCDS_PMF_TYPE_SVC, 0, &st));
	say("closed_restart_fm", scds_pmf_restart_fm(copy, 0));
	scds_close(&copy);  /* a closed handle: nothing happens */
	scds_close(NULL);
	say("first_still_good", scds_pmf_get_status(good, SCDS_PMF_TYPE_SVC, 0, &st));

	say("initialize_null_handle", scds_initialize(NULL, argc, argv));
	say("initialize_null_argv", scds_initialize(&closed, 3, NULL));
	say("initialize_negative_argc", scds_initialize(&closed, -1, argv));
	say("initialize_failed_is_null", closed == NULL ? SCHA_ERR_NOERR : SCHA_ERR_INTERNAL);
}

int main(int argc, char **argv)
{
	int n = 1;
	while (n < argc && strcmp(argv[n], "--") != 0)
		n++;
	char **ops = argv + n + (n < argc);
	int nops = argc - n - (n < argc);
	/* scds_initialize sees argv[0] and the method arguments, NULL-terminated like main's argv. */
	char **margv = calloc((size_t)n + 1, sizeof(char *));
	memcpy(margv, argv, (size_t)n * sizeof(char *));

	scds_handle_t h = NULL;
	scha_err_t e = scds_initialize(&h, n, margv);
	say("initialize", e);
	if (e != SCHA_ERR_NOERR)
		return 0;

	for (int i = 0; i < nops;) {
		const char *op = ops[i];
		char **a = ops + i + 1;
		if (strcmp(op, "start") == 0) {
			say(op, scds_pmf_start(h, type_of(a[0]), atoi(a[1]), a[3], atoi(a[2])));
			i += 5;
		} else if (strcmp(op, "start_env") == 0) {
			int nenv = atoi(a[4]);
			char **env = calloc((size_t)nenv + 1, sizeof(char *));
			memcpy(env, a + 5, (size_t)nenv * sizeof(char *));
			say(op, scds_pmf_start_env(h, type_of(a[0]), atoi(a[1]), a[3], atoi(a[2]), env));
			free(env);
			i += 6 + nenv;
		} else if (strcmp(op, "start_null") == 0) {
			say(op, scds_pmf_start(h, type_of(a[0]), atoi(a[1]), NULL, 0));
			i += 3;
		} else if (strcmp(op, "stop") == 0) {
			say(op, scds_pmf_stop(h, type_of(a[0]), atoi(a[1]), atoi(a[2]), (time_t)atol(a[3])));
			i += 5;
		} else if (strcmp(op, "signal") == 0) {
			say(op, scds_pmf_signal(h, type_of(a[0]), atoi(a[1]), atoi(a[2]), (time_t)atol(a[3])));
			i += 5;
		} else if (strcmp(op, "status") == 0) {
			scds_pmf_status_t st = (scds_pmf_status_t)-1;
			e = scds_pmf_get_status(h, type_of(a[0]), atoi(a[1]), &st);
			printf("status %d %s\n", (int)e,
			       st == SCDS_PMF_MONITORED	    ? "monitored" :
			       st == SCDS_PMF_NOT_MONITORED ? "not_monitored" :
							      "unset");
			fflush(stdout);
			i += 3;
		} else if (strcmp(op, "status_null") == 0) {
			say(op, scds_pmf_get_status(h, type_of(a[0]), atoi(a[1]), NULL));
			i += 3;
		} else if (strcmp(op, "restart_fm") == 0) {
			say(op, scds_pmf_restart_fm(h, atoi(a[0])));
			i += 2;
		} else if (strcmp(op, "handles") == 0) {
			handles(h, n, margv);
			i += 1;
		} else {
			fprintf(stderr, "dsdev_test: unknown op %s\n", op);
			return 2;
		}
	}
	scds_close(&h);
	free(margv);
	return h == NULL ? 0 : 3;
}
