/*
 * corosync's own work, for vigil-bench's corosync metric: one program, built once against Debian's
 * headers (/usr/include/corosync) and run against corosync (Debian's libcmap.so.4 and libsam.so.4) and
 * against vigild (vigil's libraries through LD_LIBRARY_PATH), with the same arguments.
 *
 *   corosync_bench OUT cmap N KEYS FLOOD ROUND
 *   corosync_bench OUT sam N BEATS RESTARTS
 *
 * Every time is taken here, with clock_gettime(CLOCK_MONOTONIC). OUT gets one line per sample,
 * "<kind> <ns>", and "<kind>_total <ns>" for a whole batch ("<kind>_count <n>" for a count).
 *
 * cmap: set (N cmap_set_uint32 of one key), get (N cmap_get_uint32 of it), create (KEYS sets of distinct
 * new keys), iter (one cmap_iter over those KEYS keys), connect (N/10 cmap_initialize + cmap_finalize),
 * track (closed loop: a set on one handle until the callback runs in a thread blocked in cmap_dispatch on
 * another, N times), flood (FLOOD sets of new tracked keys as fast as they are answered; the callbacks
 * counted until none comes for a second). ROUND makes this run's keys new ones.
 *
 * sam: one instance registers, starts health checking and calls sam_hc_send BEATS times (hc), then
 * sam_data_store of 32 bytes N times (store); then RESTARTS times an instance stamps the time and aborts,
 * and the next one stamps the time sam_register returns in it (restart: the difference). The last
 * instance exits 0, and so does its supervisor.
 */
#include <corosync/cmap.h>
#include <corosync/sam.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void check(const char *what, cs_error_t err)
{
	if (err != CS_OK) {
		fprintf(stderr, "corosync_bench: %s: cs_error_t %d\n", what, (int)err);
		exit(1);
	}
}

static FILE *out;

static void sample(const char *kind, uint64_t ns)
{
	fprintf(out, "%s %" PRIu64 "\n", kind, ns);
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static long received;
static uint64_t received_at;

static void notify(cmap_handle_t handle, cmap_track_handle_t track, int32_t event, const char *key,
		   struct cmap_notify_value new_value, struct cmap_notify_value old_value, void *user_data)
{
	uint64_t t = now_ns();

	(void)handle, (void)track, (void)event, (void)key, (void)new_value, (void)old_value, (void)user_data;
	pthread_mutex_lock(&lock);
	received++;
	received_at = t;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
}

static void *dispatcher(void *arg)
{
	cmap_handle_t tracker = *(cmap_handle_t *)arg;

	/* Ends with an error when the main thread finalizes the handle. */
	cmap_dispatch(tracker, CS_DISPATCH_BLOCKING);
	return NULL;
}

/* Waits until `want` notifications arrived, or none for a second; how many arrived. */
static long wait_received(long want)
{
	long got;

	pthread_mutex_lock(&lock);
	while (received < want) {
		long before = received;
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		pthread_cond_timedwait(&cond, &lock, &until);
		if (received == before)
			break;
	}
	got = received;
	pthread_mutex_unlock(&lock);
	return got;
}

static int run_cmap(long n, long keys, long flood, long round)
{
	cmap_handle_t writer, tracker, h;
	cmap_track_handle_t track;
	cmap_iter_handle_t iter;
	pthread_t thread;
	char key[CMAP_KEYNAME_MAXLEN + 1], prefix[64];
	size_t len;
	cmap_value_types_t type;
	uint32_t v;
	uint64_t start, t, first;
	long i, got, base;
	/* A connection costs corosync milliseconds: a tenth as many. */
	long connects = n / 10 > 0 ? n / 10 : 1;

	check("initialize", cmap_initialize(&writer));
	snprintf(prefix, sizeof(prefix), "bench.r%ld.", round);

	snprintf(key, sizeof(key), "%sone", prefix);
	start = now_ns();
	for (i = 0; i < n; i++) {
		t = now_ns();
		check("set", cmap_set_uint32(writer, key, (uint32_t)i));
		sample("set", now_ns() - t);
	}
	sample("set_total", now_ns() - start);

	start = now_ns();
	for (i = 0; i < n; i++) {
		t = now_ns();
		check("get", cmap_get_uint32(writer, key, &v));
		sample("get", now_ns() - t);
	}
	sample("get_total", now_ns() - start);

	start = now_ns();
	for (i = 0; i < keys; i++) {
		snprintf(key, sizeof(key), "%sc.k%ld", prefix, i);
		check("set new", cmap_set_uint32(writer, key, (uint32_t)i));
	}
	sample("create_total", now_ns() - start);

	snprintf(key, sizeof(key), "%sc.", prefix);
	start = now_ns();
	check("iter_init", cmap_iter_init(writer, key, &iter));
	got = 0;
	while (cmap_iter_next(writer, iter, key, &len, &type) == CS_OK)
		got++;
	check("iter_finalize", cmap_iter_finalize(writer, iter));
	sample("iter_total", now_ns() - start);
	fprintf(out, "iter_count %ld\n", got);

	start = now_ns();
	for (i = 0; i < connects; i++) {
		t = now_ns();
		check("connect", cmap_initialize(&h));
		check("disconnect", cmap_finalize(h));
		sample("connect", now_ns() - t);
	}
	sample("connect_total", now_ns() - start);

	snprintf(key, sizeof(key), "%st.", prefix);
	check("initialize tracker", cmap_initialize(&tracker));
	check("track_add", cmap_track_add(tracker, key, CMAP_TRACK_ADD | CMAP_TRACK_MODIFY | CMAP_TRACK_PREFIX,
					  notify, NULL, &track));
	pthread_create(&thread, NULL, dispatcher, &tracker);
	snprintf(key, sizeof(key), "%st.k", prefix);
	start = now_ns();
	for (i = 0; i < n; i++) {
		t = now_ns();
		check("set tracked", cmap_set_uint32(writer, key, (uint32_t)i));
		pthread_mutex_lock(&lock);
		while (received <= i)
			pthread_cond_wait(&cond, &lock);
		sample("track", received_at - t);
		pthread_mutex_unlock(&lock);
	}
	sample("track_total", now_ns() - start);

	base = n;
	first = now_ns();
	for (i = 0; i < flood; i++) {
		snprintf(key, sizeof(key), "%st.f%ld", prefix, i);
		check("set flood", cmap_set_uint32(writer, key, (uint32_t)i));
	}
	sample("flood_sets_total", now_ns() - first);
	got = wait_received(base + flood) - base;
	pthread_mutex_lock(&lock);
	t = received_at;
	pthread_mutex_unlock(&lock);
	sample("flood_total", t - first);
	fprintf(out, "flood_count %ld\n", got);
	fprintf(out, "flood_lost %ld\n", flood - got);

	/* Not the tracker: corosync's cmap_finalize does not wake a thread blocked in its cmap_dispatch,
	 * so the process exits with the dispatcher blocked, and the exit closes that connection. */
	check("finalize", cmap_finalize(writer));
	return 0;
}

static int run_sam(const char *path, long n, long beats, long restarts)
{
	char data[32];
	unsigned int id;
	uint64_t start, t;
	long i;

	check("sam_initialize", sam_initialize(60000, SAM_RECOVERY_POLICY_RESTART));
	check("sam_register", sam_register(&id));
	t = now_ns();
	/* A new instance: append to what the previous one wrote. */
	out = fopen(path, "a");
	if (out == NULL)
		return 2;
	if (id > 1)
		sample("returned", t);
	if (id == 1) {
		check("sam_start", sam_start());
		start = now_ns();
		for (i = 0; i < beats; i++)
			check("sam_hc_send", sam_hc_send());
		sample("hc_total", now_ns() - start);
		memset(data, 'v', sizeof(data));
		start = now_ns();
		for (i = 0; i < n; i++) {
			data[0] = (char)i;
			t = now_ns();
			check("sam_data_store", sam_data_store(data, sizeof(data)));
			sample("store", now_ns() - t);
		}
		sample("store_total", now_ns() - start);
		check("sam_stop", sam_stop());
	}
	if ((long)id > restarts) {
		check("sam_finalize", sam_finalize());
		fclose(out);
		exit(0);
	}
	check("sam_start", sam_start());
	t = now_ns();
	sample("aborted", t);
	fflush(out);
	abort();
}

int main(int argc, char **argv)
{
	/* abort() is the point of the SAM rows; a core file of each would only time the disk. */
	struct rlimit no_core = { 0, 0 };

	setrlimit(RLIMIT_CORE, &no_core);
	if (argc == 7 && strcmp(argv[2], "cmap") == 0) {
		out = fopen(argv[1], "w");
		if (out == NULL)
			return 2;
		run_cmap(atol(argv[3]), atol(argv[4]), atol(argv[5]), atol(argv[6]));
		fclose(out);
		return 0;
	}
	if (argc == 6 && strcmp(argv[2], "sam") == 0)
		return run_sam(argv[1], atol(argv[3]), atol(argv[4]), atol(argv[5]));
	fprintf(stderr, "usage: corosync_bench OUT cmap N KEYS FLOOD ROUND | OUT sam N BEATS RESTARTS\n");
	return 2;
}
