# bench/lib/common.sh: shell helpers shared by bench/send and bench/enqueue (sourced, POSIX sh).
# Every process started here is recorded in BENCH_PIDS and stopped by bench_cleanup, which the
# benches call from an EXIT/INT/TERM trap; a private Postfix started with bench_postfix_start is
# stopped there too.

PY=/usr/bin/python3
SINK_BIN=/usr/sbin/smtp-sink
SOURCE_BIN=/usr/sbin/smtp-source
BENCH_LIB=$(pwd)/bench/lib # the benches run from the top of the tree
BENCH_PIDS=""
BENCH_POSTFIX_DIR=""

now_ms() { date +%s%3N; }

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_free() { # PORT: true when nothing listens there (smtp-sink would share a bound port)
	! $PY -c "import socket; socket.create_connection(('127.0.0.1',$1),0.5)" 2>/dev/null
}

wait_port() { # PORT [PID]: until something accepts on 127.0.0.1:PORT (10 s), or PID died
	for _ in $(seq 200); do
		$PY -c "import socket; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null && return 0
		[ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null && return 1
		sleep 0.05
	done
	return 1
}

track() { BENCH_PIDS="$BENCH_PIDS $1"; }

untrack() {
	rest=""
	for p in $BENCH_PIDS; do [ "$p" = "$1" ] || rest="$rest $p"; done
	BENCH_PIDS=$rest
}

stop_pid() { # PID: TERM (a stopped process is continued first), then KILL after 5 s; reaps it
	kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; untrack "$1"; return 0; }
	kill -TERM "$1" 2>/dev/null || true
	kill -CONT "$1" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	untrack "$1"
}

bench_cleanup() {
	for p in $BENCH_PIDS; do stop_pid "$p"; done
	if [ -n "$BENCH_POSTFIX_DIR" ]; then
		"$BENCH_LIB/postfix-private" stop "$BENCH_POSTFIX_DIR" || true
		BENCH_POSTFIX_DIR=""
	fi
}

# sink_start PORT [ARGS...]: Postfix's smtp-sink on 127.0.0.1:PORT; sets SINK_PID.
sink_start() {
	port=$1
	shift
	port_free "$port" || { echo "port $port is taken" >&2; return 1; }
	"$SINK_BIN" -u nobody "$@" "127.0.0.1:$port" 1024 &
	SINK_PID=$!
	track "$SINK_PID"
	wait_port "$port" "$SINK_PID"
}

# bench_postfix_start DIR SMTPD_PORT RELAY_PORT: the private Postfix (bench/lib/postfix-private).
bench_postfix_start() {
	BENCH_POSTFIX_DIR=$1
	"$BENCH_LIB/postfix-private" start "$1" "$2" "$3" 100
}

bench_postfix_stop() {
	[ -n "$BENCH_POSTFIX_DIR" ] && "$BENCH_LIB/postfix-private" stop "$BENCH_POSTFIX_DIR"
	BENCH_POSTFIX_DIR=""
}

# ---- mailtrail ----

MT_BIN=${MT_BIN:-build/mailtrail}

# mt_init DATA: a fresh store with one org and its admin; sets MT_TOKEN.
mt_init() {
	MT_TOKEN=$("$MT_BIN" init --data "$1" --org Bench --admin-email admin@bench.example |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
}

# mt_serve DATA HTTP_PORT LOG [nowait]: `mailtrail serve` with loopback SMTP allowed; sets
# MT_PID; waits for its HTTP port unless told not to. MAILTRAIL_SMTP_SESSIONS_PER_ACCOUNT /
# MAILTRAIL_SMTP_MAX_INFLIGHT pass through when set.
mt_serve() {
	MAILTRAIL_ALLOW_PRIVATE_HOSTS=127.0.0.0/8 MAILTRAIL_NO_AUTH_HOSTS=127.0.0.1 \
		"$MT_BIN" serve --data "$1" --http "127.0.0.1:$2" >>"$3" 2>&1 &
	MT_PID=$!
	track "$MT_PID"
	[ "${4:-}" = nowait ] && return 0
	wait_port "$2" "$MT_PID" || { echo "mailtrail serve did not start:" >&2; tail -5 "$3" >&2; return 1; }
}

mt_stop() { stop_pid "$MT_PID"; }

# mt_api METHOD PATH [JSON]: prints the body; fails on a non-2xx answer.
mt_api() {
	curl -sS --fail-with-body -X "$1" -H "Authorization: Bearer $MT_TOKEN" \
		-H 'Content-Type: application/json' ${3:+--data "$3"} "http://127.0.0.1:$MT_HTTP$2"
}

# mt_connect_sink SINK_PORT: the org may use custom SMTP; the admin's account sends to the sink.
mt_connect_sink() {
	mt_api PUT /v1/org/features '{"custom_smtp":true}' >/dev/null &&
		mt_api PUT /v1/smtp "{\"host\":\"127.0.0.1\",\"port\":$1,\"security\":\"none\",\"auth\":\"none\",\"from\":\"admin@bench.example\",\"accept_disclaimer\":true}" >/dev/null
}

# mt_outbox_count DATA SQL-WHERE: messages in the outbox matching (read-only look at the store).
mt_outbox_count() {
	sqlite3 -readonly "$1/mailtrail.db" "SELECT count(*) FROM outbox_messages ${2:+WHERE $2};" 2>/dev/null
}

# log_sync_ms DIR: how long a log sync takes on DIR's disk right now — 400 appends of one 4 KiB
# page, each followed by fdatasync (what a group commit's log sync does); prints p50 / p90 / p99
# in ms. A durable queue's rate follows it; smtp-source's does not.
log_sync_ms() {
	/usr/bin/python3 - "$1" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "log-sync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
page, took = b"\0" * 4096, []
for _ in range(400):
    os.write(fd, page)
    t = time.perf_counter()
    os.fdatasync(fd)
    took.append((time.perf_counter() - t) * 1000)
os.close(fd)
os.unlink(path)
took.sort()
print("p50 %.2f / p90 %.2f / p99 %.2f ms" % tuple(took[int(len(took) * q)] for q in (0.5, 0.9, 0.99)))
PY
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
rate() { awk -v n="$1" -v ms="$2" 'BEGIN { printf "%d", (ms > 0) ? n * 1000 / ms : 0 }'; }

# wait_exit PID SECONDS: until the child PID has exited, then reaps it; after SECONDS it is sent
# TERM and the call fails. No polling: a loop of date/cut/sleep every 20 ms took ~15 % of a core
# of the two the figures are measured on, on the timed side only. The watchdog runs in a session
# of its own and is stopped with SIGKILL (to its pid and its group): a TERM sent to a shell that
# has just forked can be lost before its trap is set (dash), which left the caller waiting the
# whole timeout whenever PID had already exited.
wait_exit() {
	rm -f "$WORK/.wait_exit_timeout"
	setsid sh -c 'sleep "$1"; : >"$2"; kill -TERM "$3"' wait_exit "$2" "$WORK/.wait_exit_timeout" "$1" \
		</dev/null >/dev/null 2>&1 &
	wait_exit_watchdog=$!
	wait "$1" 2>/dev/null || true
	kill -KILL -- "-$wait_exit_watchdog" 2>/dev/null || true
	kill -KILL "$wait_exit_watchdog" 2>/dev/null || true
	wait "$wait_exit_watchdog" 2>/dev/null || true
	untrack "$1"
	if [ -e "$WORK/.wait_exit_timeout" ]; then
		rm -f "$WORK/.wait_exit_timeout"
		return 1
	fi
}

# bench_workdir: a fresh temp dir the postfix user can traverse; sets WORK.
bench_workdir() {
	WORK=$(mktemp -d /tmp/mailtrail-bench.XXXXXX)
	chmod 755 "$WORK"
}

# bench_binary: a private copy of $BUILD_DIR/mailtrail (default build/) in WORK (others may
# rebuild the tree while a bench runs; a relink replaces the file). Waits up to 60 s for it to
# be there; sets MT_BIN.
bench_binary() {
	for _ in $(seq 60); do
		if [ -x "${BUILD_DIR:-build}/mailtrail" ] &&
			cp "${BUILD_DIR:-build}/mailtrail" "$WORK/mailtrail" 2>/dev/null &&
			"$WORK/mailtrail" --version >/dev/null 2>&1; then
			MT_BIN=$WORK/mailtrail
			return 0
		fi
		sleep 1
	done
	echo "build first: make build" >&2
	return 1
}
