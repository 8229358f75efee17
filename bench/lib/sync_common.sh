# bench/lib/sync_common.sh: the frame of bench/sync-initial, bench/sync-push and bench/sync-idle
# (sourced after bench/lib/common.sh): a work dir, private copies of the binaries, and a trap
# that stops the driver (bench/lib/imap_sync_bench.py: it stops its Dovecot or Cyrus and
# mailtrail in a finally clause, and they die with it through PR_SET_PDEATHSIG) and removes the
# work dir.
# sync_run MODE ARGS...: runs the driver in the background (so the trap can stop it) and
# waits for it; its exit status is the bench's.
[ "$(id -u)" = 0 ] || { echo "$0: run as root (Dovecot's mail user)" >&2; exit 2; }
BUILD=${BUILD_DIR:-build}
bench_workdir
finish() {
	bench_cleanup
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap finish EXIT
trap 'exit 130' INT TERM
bench_binary
[ -x "$BUILD/bench/imap-raw-fetch" ] || { echo "build first: cmake --build $BUILD" >&2; exit 2; }
cp "$BUILD/bench/imap-raw-fetch" "$WORK/imap-raw-fetch"

sync_run() {
	mode=$1
	shift
	$PY bench/lib/imap_sync_bench.py "$mode" "$WORK" "$MT_BIN" "$@" &
	DRIVER_PID=$!
	track "$DRIVER_PID"
	rc=0
	wait "$DRIVER_PID" || rc=$?
	untrack "$DRIVER_PID"
	[ "$rc" = 0 ] || { echo "$0: failed (KEEP=1 keeps $WORK; serve.log there)" >&2; tail -5 "$WORK/serve.log" >&2 2>/dev/null; }
	return "$rc"
}
