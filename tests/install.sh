#!/usr/bin/env bash
# `make install` into a temporary prefix, then use the result as a C user would: pkg-config, gcc with the
# installed headers and libraries, a vigild from the installed bin/, and the C SAM and DSDL programs against it.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d)
state=$(mktemp -d)
vigild_pid=
cleanup() {
    [ -n "$vigild_pid" ] && kill "$vigild_pid" 2>/dev/null && wait "$vigild_pid" 2>/dev/null
    rm -rf "$prefix" "$state"
}
trap cleanup EXIT
fail() { echo "install: $*" >&2; exit 1; }

make --no-print-directory install PREFIX="$prefix" >/dev/null

for f in bin/vigild bin/vigil bin/pmfadm include/corosync/sam.h include/corosync/cmap.h \
         include/corosync/corotypes.h include/cfg.h include/psm.h include/rgm/libdsdev.h \
         lib/pkgconfig/libsam.pc lib/pkgconfig/libcmap.pc lib/pkgconfig/libcfg.pc lib/pkgconfig/libdsdev.pc \
         lib/pkgconfig/libcorosync_common.pc; do
    [ -e "$prefix/$f" ] || fail "missing $f"
done
for l in sam:4 cmap:4 corosync_common:4 cfg:1 dsdev:1; do
    n=${l%%:*} major=${l#*:}
    [ "$(readlink "$prefix/lib/lib$n.so")" = "lib$n.so.$major" ] || fail "lib$n.so does not point to lib$n.so.$major"
    real=$(readlink "$prefix/lib/lib$n.so.$major")
    [ -f "$prefix/lib/$real" ] || fail "lib$n.so.$major points to a missing $real"
    soname=$(objdump -p "$prefix/lib/$real" | awk '/SONAME/ { print $2 }')
    [ "$soname" = "lib$n.so.$major" ] || fail "lib$n's soname is $soname"
done
exported=$(nm -D --defined-only "$prefix/lib/libdsdev.so.1" | awk '{ print $3 }' | sort | tr '\n' ' ')
[ "$exported" = "scds_close scds_initialize scds_pmf_get_status scds_pmf_restart_fm scds_pmf_signal scds_pmf_start scds_pmf_start_env scds_pmf_stop " ] \
    || fail "libdsdev.so.1 exports more or less than its API: $exported"

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# pkgconf ends its line with a blank; xargs trims it.
flags=$(pkg-config --cflags --libs libsam | xargs)
# The .pc files carry the rpath: programs built with them need no LD_LIBRARY_PATH (see the ldd check).
[ "$flags" = "-I$prefix/include -L$prefix/lib -Wl,-rpath,$prefix/lib -lsam" ] || fail "pkg-config libsam: $flags"
# shellcheck disable=SC2086 # the flags are words
gcc -Wall -Werror -o "$state/sam_test" tests/c/sam_test.c $flags
flags=$(pkg-config --cflags --libs libdsdev | xargs)
[ "$flags" = "-I$prefix/include -L$prefix/lib -Wl,-rpath,$prefix/lib -ldsdev" ] || fail "pkg-config libdsdev: $flags"
# shellcheck disable=SC2086 # the flags are words
gcc -Wall -Werror -o "$state/dsdev_test" tests/c/dsdev_test.c $flags
# A program built with pkg-config and run without LD_LIBRARY_PATH loads the installed libraries, not the
# libsam.so.4 / libcmap.so.4 / libcorosync_common.so.4 of a corosync in the system's library directories.
# shellcheck disable=SC2046 # the flags are words
gcc -Wall -Werror -o "$state/cmap_compat" tests/c/cmap_compat.c $(pkg-config --cflags --libs libcmap libcorosync_common)
for exe in sam_test dsdev_test cmap_compat; do
    libs=$(env -u LD_LIBRARY_PATH ldd "$state/$exe")
    for l in libsam.so.4 libcmap.so.4 libcorosync_common.so.4 libdsdev.so.1; do
        resolved=$(awk -v l="$l" '$1 == l { print $3 }' <<<"$libs")
        [ -z "$resolved" ] || [ "$resolved" = "$prefix/lib/$l" ] || fail "$exe loads $l from $resolved"
    done
done

"$prefix/bin/vigild" --state-dir "$state/s" --socket "$state/sock" --log-level warn 2>"$state/log" &
vigild_pid=$!
for _ in $(seq 100); do [ -S "$state/sock" ] && break; sleep 0.1; done
[ -S "$state/sock" ] || fail "the installed vigild did not start: $(cat "$state/log")"
VIGIL_SOCKET="$state/sock" "$state/sam_test" "$state/out" restart || [ $? = 7 ] || fail "sam_test failed"
grep -qx "4 data_gen 3" "$state/out" || fail "the installed libsam lost the data: $(cat "$state/out")"
# Each output is taken whole before grep -q reads it: under pipefail, a writer that outlives grep's early
# exit ends on SIGPIPE and fails the pipeline.
out=$(VIGIL_SOCKET="$state/sock" "$prefix/bin/vigil" events sys.vigil.sam.quit) || fail "vigil events failed"
grep -q "code=7" <<<"$out" || fail "the installed vigil does not show the SAM application's end: $out"
# shellcheck disable=SC2046 # the flags are words
gcc -Wall -Werror -o "$state/psm_count" tests/c/psm_example_count.c $(pkg-config --cflags --libs libcfg)
out=$(VIGIL_SOCKET="$state/sock" "$state/psm_count") || fail "psm_count failed: $out"
grep -qx "error: framework 0, subsystem errno 2" <<<"$out" || fail "the installed libcfg does not answer: $out"
VIGIL_SOCKET="$state/sock" "$prefix/bin/pmfadm" -c installed sleep 1000 || fail "the installed pmfadm -c failed"
VIGIL_SOCKET="$state/sock" "$prefix/bin/pmfadm" -q installed || fail "the installed pmfadm -q does not see its tag"
# pmfadm -s sends no signal unless one is named (Solaris): name TERM so that the sleep ends.
VIGIL_SOCKET="$state/sock" "$prefix/bin/pmfadm" -s installed -w 10 TERM || fail "the installed pmfadm -s failed"
out=$(VIGIL_SOCKET="$state/sock" "$state/dsdev_test" -R rs -T t -G rg -- start svc 0 0 "sleep 1000" status svc 0 \
    stop svc 0 15 5) || fail "dsdev_test failed: $out"
[ "$out" = "$(printf 'initialize 0\nstart 0\nstatus 0 monitored\nstop 0')" ] || fail "the installed libdsdev: $out"
out=$(VIGIL_SOCKET="$state/sock" "$prefix/bin/vigil" status rg,rs,0.svc) || fail "vigil status failed: $out"
grep -q stopped <<<"$out" || fail "the installed vigil does not show the DSDL program's tag: $out"
echo "install: make install PREFIX=DIR works (bin, lib with sonames, include, pkg-config, C programs)"
