/*
 * corosync's observable behaviour through libcmap and libcorosync_common, as a program written for
 * corosync relies on it. Each line written to argv[1] is "<what> <result>"; the test compares them with
 * what corosync answers (the sources each rule comes from are cited in crates/vigild/tests/daemon/compat_c.rs).
 *
 *   cmap_compat OUT limits    values up to ICMAP_MAX_VALUE_LEN (16 KiB) and one byte more
 *   cmap_compat OUT map       cmap_initialize_map with a map that does not exist
 *   cmap_compat OUT track0    tracks of type 0 and CMAP_TRACK_PREFIX alone: accepted, deliver nothing
 *   cmap_compat OUT bytes     a string that is not UTF-8, back byte for byte
 *   cmap_compat OUT common    CS_PRI_* and libcorosync_common's three functions
 */
#include <corosync/cmap.h>
#include <corosync/corotypes.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *out;

static void line(const char *what, long value)
{
	fprintf(out, "%s %ld\n", what, value);
	fflush(out);
}

static int calls[3];

static void notify(cmap_handle_t h, cmap_track_handle_t t, int32_t event, const char *key,
		   struct cmap_notify_value new_value, struct cmap_notify_value old_value, void *user_data)
{
	(void)h; (void)t; (void)event; (void)key; (void)new_value; (void)old_value;
	calls[(intptr_t)user_data]++;
}

static cmap_handle_t connect_main(void)
{
	cmap_handle_t h;
	cs_error_t e = cmap_initialize(&h);
	if (e != CS_OK) {
		line("initialize", e);
		exit(1);
	}
	return h;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: cmap_compat OUT limits|map|track0|bytes|common\n");
		return 2;
	}
	out = fopen(argv[1], "w");
	if (out == NULL) {
		perror(argv[1]);
		return 2;
	}
	const char *s = argv[2];
	if (strcmp(s, "limits") == 0) {
		cmap_handle_t h = connect_main();
		size_t max = 16 * 1024;
		char *buf = malloc(max + 2);
		memset(buf, 'a', max + 1);
		buf[max + 1] = 0;
		line("set_bin_max", cmap_set(h, "t.bin", buf, max, CMAP_VALUETYPE_BINARY));
		line("set_bin_over", cmap_set(h, "t.bin", buf, max + 1, CMAP_VALUETYPE_BINARY));
		size_t len = 0;
		line("get_bin", cmap_get(h, "t.bin", NULL, &len, NULL));
		line("bin_len", (long)len);
		/* cmap_set_string passes strlen: 16 KiB of text is taken, one character more is not. */
		line("set_string_over", cmap_set_string(h, "t.str", buf));
		buf[max] = 0;
		line("set_string_max", cmap_set_string(h, "t.str", buf));
		line("get_str", cmap_get(h, "t.str", NULL, &len, NULL));
		line("str_len", (long)len);
		free(buf);
		cmap_finalize(h);
	} else if (strcmp(s, "map") == 0) {
		cmap_handle_t h = 0;
		line("initialize_map_2", cmap_initialize_map(&h, (cmap_map_t)2));
		line("initialize_map_minus1", cmap_initialize_map(&h, (cmap_map_t)-1));
		line("initialize_map_stats", cmap_initialize_map(&h, CMAP_MAP_STATS));
		cmap_finalize(h);
	} else if (strcmp(s, "track0") == 0) {
		cmap_handle_t h = connect_main();
		cmap_track_handle_t t0, tp, tm;
		/* A second run finds the key of the first: start without it, so the set below adds it. */
		(void)cmap_delete(h, "t.key");
		line("track_type0", cmap_track_add(h, "t.key", 0, notify, (void *)0, &t0));
		line("track_prefix_only", cmap_track_add(h, "t.", CMAP_TRACK_PREFIX, notify, (void *)1, &tp));
		/* The marker: a track that does ask for additions, added last, so its callback proves the
		   change was delivered to this connection. */
		line("track_marker", cmap_track_add(h, "t.key", CMAP_TRACK_ADD, notify, (void *)2, &tm));
		line("set", cmap_set_uint32(h, "t.key", 7));
		while (calls[2] == 0) {
			cs_error_t e = cmap_dispatch(h, CS_DISPATCH_ONE);
			if (e != CS_OK) {
				line("dispatch", e);
				return 1;
			}
		}
		line("dispatch_all", cmap_dispatch(h, CS_DISPATCH_ALL));
		line("calls_type0", calls[0]);
		line("calls_prefix_only", calls[1]);
		line("calls_marker", calls[2]);
		line("track_delete_type0", cmap_track_delete(h, t0));
		line("track_delete_prefix_only", cmap_track_delete(h, tp));
		cmap_finalize(h);
	} else if (strcmp(s, "bytes") == 0) {
		cmap_handle_t h = connect_main();
		const char bytes[] = "\xff\xfe latin1 \xe9t\xe9";
		line("set_string", cmap_set_string(h, "t.bytes", bytes));
		char *back = NULL;
		line("get_string", cmap_get_string(h, "t.bytes", &back));
		line("same", back != NULL && strcmp(back, bytes) == 0);
		free(back);
		char buf[64];
		size_t len = sizeof(buf);
		cmap_value_types_t type = 0;
		line("get", cmap_get(h, "t.bytes", buf, &len, &type));
		line("type", type);
		line("len", (long)len);
		line("same_get", len == sizeof(bytes) && memcmp(buf, bytes, len) == 0);
		cmap_finalize(h);
	} else if (strcmp(s, "common") == 0) {
		fprintf(out, "node " CS_PRI_NODE_ID "\n", (uint32_t)7);
		fprintf(out, "padded [" CS_PRI_NODE_ID_PADDED "]\n", (uint32_t)7);
		fprintf(out, "ring " CS_PRI_RING_ID "\n", (uint32_t)10, (uint64_t)255);
		fprintf(out, "seq " CS_PRI_RING_ID_SEQ "\n", (uint64_t)255);
		fprintf(out, "strerror_ok [%s]\n", cs_strerror(CS_OK));
		fprintf(out, "strerror_exist [%s]\n", cs_strerror(CS_ERR_EXIST));
		fprintf(out, "strerror_library [%s]\n", cs_strerror(CS_ERR_LIBRARY));
		fprintf(out, "strerror_29 [%s]\n", cs_strerror((cs_error_t)29));
		line("qb_ok", qb_to_cs_error(3));
		line("qb_eagain", qb_to_cs_error(-EAGAIN));
		line("qb_e2big", qb_to_cs_error(-E2BIG));
		line("qb_enotconn", qb_to_cs_error(-ENOTCONN));
		line("hdb_ok", hdb_error_to_cs(0));
		line("hdb_emfile", hdb_error_to_cs(-EMFILE));
		line("hdb_einval", hdb_error_to_cs(-EINVAL));
	} else {
		fprintf(stderr, "unknown scenario %s\n", s);
		return 2;
	}
	return 0;
}
