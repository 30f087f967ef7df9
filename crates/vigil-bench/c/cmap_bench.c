/*
 * CMAP from C through libcmap.so.4, for vigil-bench's cmap metric: the same work as its Rust rows.
 *
 *   cmap_bench OUT N
 *
 * set: N cmap_set_uint32 of the keys bench.c.k<i>, one at a time; get: N cmap_get_uint32 of the same keys;
 * track: a second handle tracks the prefix bench.c.t. and a thread dispatches it (CS_DISPATCH_BLOCKING);
 * a sample is from just before the writer's cmap_set_uint32 of bench.c.t.k to the callback running.
 * OUT gets one line per sample, "<kind> <ns>", and "<kind>_total <ns>" for the whole batch.
 */
#include <corosync/cmap.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void check(const char *what, cs_error_t err)
{
	if (err != CS_OK) {
		fprintf(stderr, "cmap_bench: %s: cs_error_t %d\n", what, (int)err);
		exit(1);
	}
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
	pthread_cond_signal(&cond);
	pthread_mutex_unlock(&lock);
}

static void *dispatcher(void *arg)
{
	cmap_handle_t tracker = *(cmap_handle_t *)arg;

	/* Ends with CS_ERR_BAD_HANDLE when the main thread finalizes the handle. */
	cmap_dispatch(tracker, CS_DISPATCH_BLOCKING);
	return NULL;
}

int main(int argc, char **argv)
{
	cmap_handle_t writer, tracker;
	cmap_track_handle_t track;
	pthread_t thread;
	char key[64];
	uint32_t v;
	uint64_t start, t;
	long i, n;
	FILE *out;

	if (argc != 3)
		return 2;
	out = fopen(argv[1], "w");
	n = atol(argv[2]);
	if (out == NULL || n <= 0)
		return 2;
	check("initialize", cmap_initialize(&writer));

	start = now_ns();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "bench.c.k%ld", i);
		t = now_ns();
		check("set", cmap_set_uint32(writer, key, (uint32_t)i));
		fprintf(out, "set %llu\n", (unsigned long long)(now_ns() - t));
	}
	fprintf(out, "set_total %llu\n", (unsigned long long)(now_ns() - start));

	start = now_ns();
	for (i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "bench.c.k%ld", i);
		t = now_ns();
		check("get", cmap_get_uint32(writer, key, &v));
		fprintf(out, "get %llu\n", (unsigned long long)(now_ns() - t));
	}
	fprintf(out, "get_total %llu\n", (unsigned long long)(now_ns() - start));

	check("initialize tracker", cmap_initialize(&tracker));
	check("track_add", cmap_track_add(tracker, "bench.c.t.", CMAP_TRACK_ADD | CMAP_TRACK_MODIFY | CMAP_TRACK_PREFIX,
					  notify, NULL, &track));
	pthread_create(&thread, NULL, dispatcher, &tracker);
	start = now_ns();
	for (i = 0; i < n; i++) {
		t = now_ns();
		check("set tracked", cmap_set_uint32(writer, "bench.c.t.k", (uint32_t)i));
		pthread_mutex_lock(&lock);
		while (received <= i)
			pthread_cond_wait(&cond, &lock);
		fprintf(out, "track %llu\n", (unsigned long long)(received_at - t));
		pthread_mutex_unlock(&lock);
	}
	fprintf(out, "track_total %llu\n", (unsigned long long)(now_ns() - start));
	check("finalize tracker", cmap_finalize(tracker));
	pthread_join(thread, NULL);
	check("finalize", cmap_finalize(writer));
	fclose(out);
	return 0;
}
