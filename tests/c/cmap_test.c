/*
 * A C program of corosync's CMAP API, run against vigil's libcmap.so.4 (and vigild) by the daemon's tests.
 * Each call appends "<what> <cs_error_t>" (or "<what> <value>") to the file argv[1], so the test reads
 * exactly what every call returned.
 *
 *   cmap_test OUT api        every function, its error paths, the stats map, iteration, tracking
 *   cmap_test OUT fd         the fd of cmap_fd_get polls readable whenever dispatch has something
 *   cmap_test OUT threads    a dispatch blocked in one thread, sets and a finalize from another
 *   cmap_test OUT nodaemon   cmap_initialize with vigild unreachable
 */
#include <corosync/cmap.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *out_path;
static FILE *out;

static void line(const char *what, long value)
{
	fprintf(out, "%s %ld\n", what, value);
	fflush(out);
}

static void text(const char *what, const char *value)
{
	fprintf(out, "%s %s\n", what, value);
	fflush(out);
}

static void value_text(char *buf, size_t size, struct cmap_notify_value v)
{
	if (v.data == NULL) {
		snprintf(buf, size, "-");
		return;
	}
	switch (v.type) {
	case CMAP_VALUETYPE_UINT32:
		snprintf(buf, size, "u32:%" PRIu32, *(const uint32_t *)v.data);
		break;
	case CMAP_VALUETYPE_INT8:
		snprintf(buf, size, "i8:%d", *(const int8_t *)v.data);
		break;
	case CMAP_VALUETYPE_STRING:
		snprintf(buf, size, "str:%s", (const char *)v.data);
		break;
	default:
		snprintf(buf, size, "type%d", (int)v.type);
	}
}

static cmap_track_handle_t expected_track;
static int notified;
static cmap_handle_t finalize_in_callback;

static void notify(cmap_handle_t handle, cmap_track_handle_t track, int32_t event, const char *key,
		   struct cmap_notify_value new_value, struct cmap_notify_value old_value, void *user_data)
{
	char n[64], o[64];

	(void)handle;
	value_text(n, sizeof(n), new_value);
	value_text(o, sizeof(o), old_value);
	fprintf(out, "notify %s %d %s new=%s/%zu old=%s/%zu own_track=%d\n", (const char *)user_data, event, key, n,
		new_value.len, o, old_value.len, track == expected_track || expected_track == 0);
	fflush(out);
	__atomic_add_fetch(&notified, 1, __ATOMIC_SEQ_CST);
	if (finalize_in_callback != 0) {
		line("finalize_in_callback", cmap_finalize(finalize_in_callback));
		finalize_in_callback = 0;
	}
}

static void errors(void)
{
	cmap_handle_t bad = 12345;
	cmap_iter_handle_t iter;
	cmap_track_handle_t track;
	const void *ctx;
	char key[CMAP_KEYNAME_MAXLEN + 1];
	int fd;
	uint8_t u8;
	char *str;

	line("finalize_bad", cmap_finalize(bad));
	line("fd_get_bad", cmap_fd_get(bad, &fd));
	line("dispatch_bad", cmap_dispatch(bad, CS_DISPATCH_ALL));
	line("context_get_bad", cmap_context_get(bad, &ctx));
	line("context_set_bad", cmap_context_set(bad, NULL));
	line("set_bad", cmap_set_uint8(bad, "a.b.c", 1));
	line("get_bad", cmap_get(bad, "a.b.c", NULL, NULL, NULL));
	line("get_uint8_bad", cmap_get_uint8(bad, "a.b.c", &u8));
	line("get_string_bad", cmap_get_string(bad, "a.b.c", &str));
	line("delete_bad", cmap_delete(bad, "a.b.c"));
	line("inc_bad", cmap_inc(bad, "a.b.c"));
	line("dec_bad", cmap_dec(bad, "a.b.c"));
	line("iter_init_bad", cmap_iter_init(bad, "a.", &iter));
	line("iter_next_bad", cmap_iter_next(bad, 1, key, NULL, NULL));
	line("iter_finalize_bad", cmap_iter_finalize(bad, 1));
	line("track_add_bad", cmap_track_add(bad, "a.b.c", CMAP_TRACK_ADD, notify, NULL, &track));
	line("track_delete_bad", cmap_track_delete(bad, 1));
	/* NULL pointers corosync's library checks first, before the handle. */
	line("set_null_key", cmap_set(bad, NULL, "x", 1, CMAP_VALUETYPE_STRING));
	line("set_null_value", cmap_set(bad, "a.b.c", NULL, 1, CMAP_VALUETYPE_STRING));
	line("set_string_null", cmap_set_string(bad, "a.b.c", NULL));
	line("get_null_key", cmap_get(bad, NULL, NULL, NULL, NULL));
	line("delete_null", cmap_delete(bad, NULL));
	line("inc_null", cmap_inc(bad, NULL));
	line("iter_init_null", cmap_iter_init(bad, "a.", NULL));
	line("iter_next_null", cmap_iter_next(bad, 1, NULL, NULL, NULL));
	line("track_add_null_fn", cmap_track_add(bad, "a.b.c", CMAP_TRACK_ADD, NULL, NULL, &track));
	line("track_add_null_handle", cmap_track_add(bad, "a.b.c", CMAP_TRACK_ADD, notify, NULL, NULL));
	line("initialize_null", cmap_initialize(NULL));
	line("initialize_map_bad", cmap_initialize_map(&bad, 7));
}

static void values(cmap_handle_t h)
{
	char long_key[300];
	char buf[64];
	char small[2];
	size_t len;
	cmap_value_types_t type;
	int8_t i8;
	uint8_t u8;
	int16_t i16;
	uint16_t u16;
	int32_t i32;
	uint32_t u32 = 7;
	int64_t i64;
	uint64_t u64;
	float flt;
	double dbl;
	char *str = NULL;

	memset(long_key, 'k', 256);
	long_key[256] = 0;
	line("set_long_key", cmap_set_uint8(h, long_key, 1));
	line("get_long_key", cmap_get(h, long_key, NULL, NULL, NULL));
	line("set_short_key", cmap_set_uint8(h, "ab", 1));
	line("set_bad_char", cmap_set_uint8(h, "has space", 1));
	line("get_short_key", cmap_get(h, "ab", NULL, NULL, NULL));
	line("get_missing", cmap_get_uint8(h, "t.missing", &u8));
	line("set_wrong_width", cmap_set(h, "t.width", &u32, 2, CMAP_VALUETYPE_UINT32));
	line("set_bad_type", cmap_set(h, "t.width", &u32, 4, 99));
	line("set_past_nul", cmap_set(h, "t.str", "ab\0cd", 5, CMAP_VALUETYPE_STRING));

	line("set_int8", cmap_set_int8(h, "t.i8", -8));
	line("set_uint8", cmap_set_uint8(h, "t.u8", 255));
	line("set_int16", cmap_set_int16(h, "t.i16", -16000));
	line("set_uint16", cmap_set_uint16(h, "t.u16", 65535));
	line("set_int32", cmap_set_int32(h, "t.i32", -32));
	line("set_uint32", cmap_set_uint32(h, "t.u32", 4000000000u));
	line("set_int64", cmap_set_int64(h, "t.i64", -64));
	line("set_uint64", cmap_set_uint64(h, "t.u64", UINT64_MAX));
	line("set_float", cmap_set_float(h, "t.flt", 1.5f));
	line("set_double", cmap_set_double(h, "t.dbl", -2.25));
	line("set_string", cmap_set_string(h, "t.str", "hello"));
	line("set_binary", cmap_set(h, "t.bin", "\x01\x00\x02", 3, CMAP_VALUETYPE_BINARY));
	line("set_string_with_nul", cmap_set(h, "t.str2", "abc", 4, CMAP_VALUETYPE_STRING));

	line("get_int8", cmap_get_int8(h, "t.i8", &i8));
	line("int8", i8);
	line("get_uint8", cmap_get_uint8(h, "t.u8", &u8));
	line("uint8", u8);
	line("get_int16", cmap_get_int16(h, "t.i16", &i16));
	line("int16", i16);
	line("get_uint16", cmap_get_uint16(h, "t.u16", &u16));
	line("uint16", u16);
	line("get_int32", cmap_get_int32(h, "t.i32", &i32));
	line("int32", i32);
	line("get_uint32", cmap_get_uint32(h, "t.u32", &u32));
	line("uint32", u32);
	line("get_int64", cmap_get_int64(h, "t.i64", &i64));
	line("int64", i64);
	line("get_uint64", cmap_get_uint64(h, "t.u64", &u64));
	line("uint64_is_max", u64 == UINT64_MAX);
	line("get_float", cmap_get_float(h, "t.flt", &flt));
	line("float_times_4", (long)(flt * 4));
	line("get_double", cmap_get_double(h, "t.dbl", &dbl));
	line("double_times_4", (long)(dbl * 4));
	line("get_string", cmap_get_string(h, "t.str", &str));
	text("string", str);
	free(str);
	line("get_string_of_u8", cmap_get_string(h, "t.u8", &str));
	line("get_uint8_of_u32", cmap_get_uint8(h, "t.u32", &u8));
	line("get_int8_null", cmap_get_int8(h, "t.i8", NULL));

	line("get_len_only", cmap_get(h, "t.str", NULL, &len, &type));
	line("len", (long)len);
	line("type", type);
	line("get_str2", cmap_get(h, "t.str2", NULL, &len, &type));
	line("len", (long)len);
	len = sizeof(small);
	line("get_small_buffer", cmap_get(h, "t.str", small, &len, &type));
	line("get_buffer_no_len", cmap_get(h, "t.str", buf, NULL, &type));
	len = sizeof(buf);
	memset(buf, 'x', sizeof(buf));
	line("get_buffer", cmap_get(h, "t.bin", buf, &len, &type));
	line("len", (long)len);
	line("type", type);
	line("bytes", buf[0] * 100 + buf[1] * 10 + buf[2]);
	len = sizeof(buf);
	line("get_buffer_str", cmap_get(h, "t.str", buf, &len, NULL));
	line("len", (long)len);
	text("text", buf);

	line("inc_u8", cmap_inc(h, "t.u8"));
	cmap_get_uint8(h, "t.u8", &u8);
	line("u8_wrapped", u8);
	line("dec_i64", cmap_dec(h, "t.i64"));
	cmap_get_int64(h, "t.i64", &i64);
	line("i64", i64);
	line("inc_string", cmap_inc(h, "t.str"));
	line("inc_missing", cmap_inc(h, "t.missing"));
	line("dec_missing", cmap_dec(h, "t.missing"));

	line("delete", cmap_delete(h, "t.i8"));
	line("get_deleted", cmap_get_int8(h, "t.i8", &i8));
	line("delete_missing", cmap_delete(h, "t.i8"));
	line("set_readonly", cmap_set_string(h, "runtime.version", "x"));
	line("delete_readonly", cmap_delete(h, "runtime.version"));
	line("inc_readonly", cmap_inc(h, "runtime.node_id"));
	line("get_readonly", cmap_get_string(h, "runtime.version", &str));
	free(str);
}

static void iteration(cmap_handle_t h)
{
	cmap_iter_handle_t iter, other;
	char key[CMAP_KEYNAME_MAXLEN + 1];
	size_t len;
	cmap_value_types_t type;
	cs_error_t err;
	char what[300];

	cmap_set_uint32(h, "it.b", 2);
	cmap_set_string(h, "it.a", "one");
	cmap_set_uint8(h, "it.c.d", 3);
	cmap_set_uint8(h, "iu.x", 3);
	line("iter_init", cmap_iter_init(h, "it.", &iter));
	while ((err = cmap_iter_next(h, iter, key, &len, &type)) == CS_OK) {
		snprintf(what, sizeof(what), "next %s %zu", key, len);
		line(what, type);
	}
	line("iter_end", err);
	line("iter_end_again", cmap_iter_next(h, iter, key, &len, &type));
	line("iter_finalize", cmap_iter_finalize(h, iter));
	line("iter_finalize_again", cmap_iter_finalize(h, iter));
	line("iter_next_finalized", cmap_iter_next(h, iter, key, NULL, NULL));
	line("iter_init_empty", cmap_iter_init(h, "nothing.here.", &other));
	line("iter_next_empty", cmap_iter_next(h, other, key, NULL, NULL));
	line("iter_finalize_empty", cmap_iter_finalize(h, other));
	line("iter_init_all", cmap_iter_init(h, NULL, &other));
	len = 0;
	while (cmap_iter_next(h, other, key, NULL, NULL) == CS_OK) {
		len++;
	}
	line("iter_all_at_least_10", len >= 10);
	line("iter_finalize_all", cmap_iter_finalize(h, other));
}

static void stats(void)
{
	cmap_handle_t s;
	cmap_iter_handle_t iter;
	char key[CMAP_KEYNAME_MAXLEN + 1];
	cmap_value_types_t type;
	uint32_t tags;
	long n = 0;

	line("initialize_stats", cmap_initialize_map(&s, CMAP_MAP_STATS));
	line("stats_set", cmap_set_uint32(s, "stats.vigild.tags", 9));
	line("stats_delete", cmap_delete(s, "stats.vigild.tags"));
	line("stats_inc", cmap_inc(s, "stats.vigild.tags"));
	line("stats_get", cmap_get_uint32(s, "stats.vigild.tags", &tags));
	line("stats_tags", tags);
	line("stats_main_key", cmap_get(s, "runtime.version", NULL, NULL, NULL));
	line("stats_iter", cmap_iter_init(s, "stats.vigild.", &iter));
	while (cmap_iter_next(s, iter, key, NULL, &type) == CS_OK) {
		n++;
	}
	line("stats_keys_at_least_5", n >= 5);
	line("stats_finalize", cmap_finalize(s));
}

static void tracking(cmap_handle_t h)
{
	cmap_handle_t w;
	cmap_track_handle_t exact, prefix, t;
	const void *ctx = NULL;
	cs_error_t err;
	int i;

	line("context_set", cmap_context_set(h, "ctx"));
	line("context_get", cmap_context_get(h, &ctx));
	text("context", ctx ? (const char *)ctx : "NULL");

	line("initialize_writer", cmap_initialize(&w));
	line("track_add_bad_flags", cmap_track_add(h, "tr.key", 64 | CMAP_TRACK_ADD, notify, "x", &t));
	line("track_add", cmap_track_add(h, "tr.key", CMAP_TRACK_ADD | CMAP_TRACK_MODIFY | CMAP_TRACK_DELETE, notify,
					 "exact", &exact));
	line("track_add_prefix",
	     cmap_track_add(h, "tr.", CMAP_TRACK_ADD | CMAP_TRACK_DELETE | CMAP_TRACK_PREFIX, notify, "prefix", &prefix));
	line("dispatch_all_none", cmap_dispatch(h, CS_DISPATCH_ALL));
	line("dispatch_nonblocking_none", cmap_dispatch(h, CS_DISPATCH_ONE_NONBLOCKING));

	cmap_set_uint32(w, "tr.key", 1);
	cmap_set_uint32(w, "tr.key", 1); /* unchanged: no notification */
	cmap_set_int8(w, "tr.key", -2);
	cmap_set_string(w, "tr.other", "s");
	cmap_delete(w, "tr.key");
	cmap_set_uint32(w, "untracked.key", 1);
	/* Six notifications; they may still be on their way on h's connection: ONE waits for each. */
	expected_track = 0;
	for (i = 0; i < 6; i++) {
		err = cmap_dispatch(h, CS_DISPATCH_ONE);
		if (err != CS_OK)
			line("dispatch_one", err);
	}
	line("notified", notified);
	line("dispatch_nonblocking_none", cmap_dispatch(h, CS_DISPATCH_ONE_NONBLOCKING));

	line("track_delete", cmap_track_delete(h, exact));
	line("track_delete_again", cmap_track_delete(h, exact));
	line("track_delete_other_handle", cmap_track_delete(w, prefix));
	cmap_set_uint32(w, "tr.key", 3);
	notified = 0;
	expected_track = prefix;
	line("dispatch_one_prefix", cmap_dispatch(h, CS_DISPATCH_ONE));
	line("notified", notified);

	/* A callback that finalizes its handle ends a blocking dispatch. */
	cmap_set_uint32(w, "tr.last", 3);
	finalize_in_callback = h;
	line("dispatch_blocking", cmap_dispatch(h, CS_DISPATCH_BLOCKING));
	line("finalize_again", cmap_finalize(h));
	line("get_finalized", cmap_get(h, "tr.key", NULL, NULL, NULL));
	line("finalize_writer", cmap_finalize(w));
}

static void api(void)
{
	cmap_handle_t h;

	errors();
	line("initialize", cmap_initialize(&h));
	values(h);
	iteration(h);
	stats();
	tracking(h);
}

static int readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/*
 * The notification of a set made on the tracking handle itself arrives while the library waits for the
 * set's answer: the library keeps it, and the fd must still poll readable.
 */
static void fd_scenario(void)
{
	cmap_handle_t h, w;
	cmap_track_handle_t t;
	int fd = -1, fd2 = -1;

	line("initialize", cmap_initialize(&h));
	line("initialize_writer", cmap_initialize(&w));
	line("fd_get", cmap_fd_get(h, &fd));
	line("fd_get_null", cmap_fd_get(h, NULL));
	line("fd_get_again", cmap_fd_get(h, &fd2));
	line("same_fd", fd == fd2);
	line("track_add", cmap_track_add(h, "fd.", CMAP_TRACK_ADD | CMAP_TRACK_MODIFY | CMAP_TRACK_PREFIX, notify,
					 "fd", &t));
	expected_track = t;
	line("readable_before", readable(fd, 0));
	line("set_same_handle", cmap_set_uint32(h, "fd.a", 1));
	line("readable_after_own_set", readable(fd, 0));
	line("dispatch_one", cmap_dispatch(h, CS_DISPATCH_ONE));
	line("readable_after_dispatch", readable(fd, 0));

	line("set_two_same_handle", cmap_set_uint32(h, "fd.a", 2) + cmap_set_uint32(h, "fd.b", 2) - 1);
	line("readable_two", readable(fd, 0));
	line("dispatch_nonblocking", cmap_dispatch(h, CS_DISPATCH_ONE_NONBLOCKING));
	line("readable_one_left", readable(fd, 0));
	line("dispatch_all", cmap_dispatch(h, CS_DISPATCH_ALL));
	line("readable_none_left", readable(fd, 0));

	line("set_other_handle", cmap_set_uint32(w, "fd.c", 3));
	line("readable_other", readable(fd, 5000));
	line("dispatch_all_other", cmap_dispatch(h, CS_DISPATCH_ALL));
	line("readable_end", readable(fd, 0));
	line("notified", notified);
	line("finalize", cmap_finalize(h));
	line("finalize_writer", cmap_finalize(w));
}

static cmap_handle_t shared;

static void *dispatcher(void *arg)
{
	(void)arg;
	line("dispatch_blocking", cmap_dispatch(shared, CS_DISPATCH_BLOCKING));
	return NULL;
}

/*
 * One thread blocks in dispatch while another makes requests on the same handle, then finalizes it. The
 * main thread writes its results after the join, so the order of the lines is fixed.
 */
static void threads_scenario(void)
{
	cmap_track_handle_t t;
	pthread_t thread;
	uint32_t v = 0;
	cs_error_t err;
	int i;

	line("initialize", cmap_initialize(&shared));
	line("track_add", cmap_track_add(shared, "th.", CMAP_TRACK_ADD | CMAP_TRACK_MODIFY | CMAP_TRACK_PREFIX, notify,
					 "thread", &t));
	expected_track = t;
	pthread_create(&thread, NULL, dispatcher, NULL);
	for (i = 1; i <= 3; i++) {
		cmap_set_uint32(shared, "th.key", i);
	}
	cmap_get_uint32(shared, "th.key", &v);
	for (i = 0; i < 500 && __atomic_load_n(&notified, __ATOMIC_SEQ_CST) < 3; i++) {
		usleep(10000);
	}
	err = cmap_finalize(shared);
	pthread_join(thread, NULL);
	line("value", v);
	line("finalize", err);
	line("notified", notified);
}

int main(int argc, char **argv)
{
	cmap_handle_t h;

	if (argc != 3)
		return 2;
	out_path = argv[1];
	out = fopen(out_path, "w");
	if (out == NULL)
		return 2;
	if (strcmp(argv[2], "api") == 0)
		api();
	else if (strcmp(argv[2], "fd") == 0)
		fd_scenario();
	else if (strcmp(argv[2], "threads") == 0)
		threads_scenario();
	else if (strcmp(argv[2], "nodaemon") == 0)
		line("initialize", cmap_initialize(&h));
	else
		return 2;
	fclose(out);
	return 0;
}
