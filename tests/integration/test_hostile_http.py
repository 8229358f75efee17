#!/usr/bin/python3
"""Hostile HTTP clients against the real `mailtrail serve` (tests/rig): the service must stay
responsive and small while they do their worst.

  /usr/bin/python3 tests/integration/test_hostile_http.py --bin-dir BUILD [--only NAME]...

Every case runs with a watcher in a process of its own (so that the clients' threads cannot
slow it down) that sends GET /healthz every 50 ms on a connection it opened beforehand and
samples the service's VmRSS from /proc/PID/status. During each case every /healthz must be
answered 200 within HEALTH_MAX_S and the RSS must stay under RSS_MAX_KB.

- uploads_31mib_unauthenticated: 8 concurrent clients declare a 31 MiB body to POST
  /v1/messages (half without a token, half with a bogus one the store refuses) and send it. The
  polite half stop when the 401 comes: it must come before they could push UPLOAD_PUSHED_MAX.
  The deaf half go on sending whatever happens: the service drops their bytes and closes
  within a few seconds. Before, evhttp read every body whole into memory first (8 x 31 MiB).
- slowloris: SLOW_CLIENTS clients trickle a head one byte every 0.5 s; with
  http_header_timeout = 2s each is cut (408, then closed) within 2 s of connecting, plus slack.
- fd_exhaustion: a second service under RLIMIT_NOFILE = NOFILE (set in preexec_fn, as
  `ulimit -n` would) gets FD_CLIENTS connections, more than it has descriptors for. accept()
  fails with EMFILE: the service's CPU time over 1 s stays under FD_CPU_MAX_S (no spinning
  accept loop), it warns once, and once the connections close a new one is answered.

Loopback only, loops bounded in count and time. Prints one PASS/FAIL line per case and
"N passed, N failed"; exits 1 if any failed. Standard library only.
"""

import argparse
import http.client
import json
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402
import service  # noqa: E402

HEALTH_MAX_S = 0.100         # every /healthz during a case
RSS_MAX_KB = 200 * 1024      # the service's VmRSS during a case
MIB = 1024 * 1024
UPLOAD_BYTES = 31 * MIB      # MT_HTTP_MESSAGE_MAX, the largest route cap
UPLOADERS = 8
UPLOAD_ROUNDS = 20
UPLOAD_ROUNDS_S = 3
UPLOAD_PUSHED_MAX = 8 * MIB  # socket buffers, not the body
UPLOAD_TIME_MAX_S = 20
DEAF_CLOSED_WITHIN_S = 10
SLOW_CLIENTS = 32
HEADER_TIMEOUT_S = 2
SLOW_CUT_WITHIN_S = HEADER_TIMEOUT_S + 1.5
NOFILE = 128
FD_CLIENTS = 300
FD_CPU_MAX_S = 0.3
BAD_TOKEN = "mt_not-a-real-token-0000000000000000"


# --- the watcher (run as `--watch PORT PID`) --------------------------------------------------

def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def watch_main(port, pid):
    """Polls /healthz on one kept-alive connection until stdin closes, then prints a JSON
    summary on stdout."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.connect()
    print("ready", flush=True)
    latencies, rss, errors = [], [], []
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], 0.05)
        if readable:
            break
        t = time.monotonic()
        try:
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append(f"status {r.status}")
        except (OSError, http.client.HTTPException) as e:
            errors.append(repr(e))
            break
        latencies.append(time.monotonic() - t)
        k = rss_kb(pid)
        if k is not None:
            rss.append(k)
    json.dump({"latencies": latencies, "rss": rss, "errors": errors}, sys.stdout)
    return 0


class Watcher:
    def __init__(self, svc):
        self.svc = svc
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--watch", str(svc.port),
             str(svc.proc.pid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", f"the watcher did not start: {line!r}"

    def finish(self):
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(timeout=10)
        doc = json.loads(out)
        lat, rss = doc["latencies"], doc["rss"]
        assert not doc["errors"], f"/healthz failed during the case: {doc['errors'][:5]}"
        assert len(lat) >= 5, f"only {len(lat)} /healthz answered during the case"
        worst = max(lat)
        peak = max(rss) if rss else 0
        print(f"     (/healthz x{len(lat)}: worst {worst * 1000:.1f} ms; "
              f"VmRSS peak {peak // 1024} MB)", flush=True)
        assert worst < HEALTH_MAX_S, f"/healthz took {worst * 1000:.0f} ms (bound " \
                                     f"{HEALTH_MAX_S * 1000:.0f} ms)"
        assert peak < RSS_MAX_KB, f"VmRSS reached {peak} kB (bound {RSS_MAX_KB} kB)"


# --- cases --------------------------------------------------------------------------------------

def upload(port, source, token, deaf, out):
    """Declares a 31 MiB body and sends it from `source` (a loopback address: many attackers,
    not one over its per-address cap); polite clients stop at the first reply bytes."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            f"\r\n{auth}Content-Length: {UPLOAD_BYTES}\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    s.sendall(head)
    s.setblocking(False)
    chunk = b"x" * 65536
    pushed, reply, closed = 0, b"", False
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < UPLOAD_TIME_MAX_S:
            want_write = pushed < UPLOAD_BYTES
            r, w, _ = select.select([s], [s] if want_write else [], [], 0.5)
            if r:
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                except ConnectionResetError:
                    closed = True
                    break
                if data == b"":
                    closed = True
                    break
                if data:
                    reply += data
                    if not deaf and b"\r\n\r\n" in reply:
                        break
            if w:
                try:
                    pushed += s.send(chunk[:min(len(chunk), UPLOAD_BYTES - pushed)])
                except (BlockingIOError, InterruptedError):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
    finally:
        s.close()
    out.update(pushed=pushed, reply=reply, closed=closed, took=time.monotonic() - t0)


def case_uploads(svc):
    w = Watcher(svc)
    results = []
    t0 = time.monotonic()
    # rounds, so that the watcher sees the service while it is under way
    for _ in range(UPLOAD_ROUNDS):
        if time.monotonic() - t0 > UPLOAD_ROUNDS_S:
            break
        batch = [dict() for _ in range(UPLOADERS)]
        threads = []
        for i in range(UPLOADERS):
            token = BAD_TOKEN if i % 2 else None
            deaf = i >= UPLOADERS // 2
            t = threading.Thread(target=upload,
                                 args=(svc.port, f"127.0.0.{10 + i}", token, deaf, batch[i]),
                                 daemon=True)
            threads.append(t)
            t.start()
        for t in threads:
            t.join(UPLOAD_TIME_MAX_S + 10)
        results.extend(batch)
        time.sleep(0.1)
    w.finish()
    for n, res in enumerate(results):
        i = n % UPLOADERS
        deaf = i >= UPLOADERS // 2
        who = f"client {n} ({'deaf' if deaf else 'polite'}, {'bogus' if i % 2 else 'no'} token)"
        assert res, f"{who} did not finish"
        assert res["reply"].startswith(b"HTTP/1.1 401 "), f"{who}: {res['reply'][:200]!r}"
        if deaf:
            assert res["closed"] and res["took"] < DEAF_CLOSED_WITHIN_S, \
                f"{who}: not closed within {DEAF_CLOSED_WITHIN_S} s ({res['took']:.1f} s)"
        else:
            assert res["pushed"] < UPLOAD_PUSHED_MAX, \
                f"{who} pushed {res['pushed']} bytes before the 401"
    polite = [r["pushed"] for n, r in enumerate(results) if n % UPLOADERS < UPLOADERS // 2]
    deaf = [r["pushed"] for n, r in enumerate(results) if n % UPLOADERS >= UPLOADERS // 2]
    print(f"     ({len(results) // UPLOADERS} rounds of {UPLOADERS}; polite clients pushed at "
          f"most {max(polite) // 1024} KiB before their 401, deaf ones "
          f"{sum(deaf) // MIB} MiB in all, dropped)", flush=True)


def slow_client(port, out):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t0 = time.monotonic()
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100
    reply, cut = b"", None
    try:
        for i in range(len(head)):
            try:
                s.sendall(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                cut = time.monotonic() - t0
                break
            r, _, _ = select.select([s], [], [], 0.5)
            if r:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                reply += data
                if not data:
                    cut = time.monotonic() - t0
                    break
                # the reply came: read on to the close
                while True:
                    r, _, _ = select.select([s], [], [], 5)
                    data = s.recv(4096) if r else b""
                    reply += data
                    if not data:
                        break
                cut = time.monotonic() - t0
                break
    finally:
        s.close()
    out.update(reply=reply, cut=cut)


def case_slowloris(svc):
    w = Watcher(svc)
    results = [dict() for _ in range(SLOW_CLIENTS)]
    threads = [threading.Thread(target=slow_client, args=(svc.port, results[i]), daemon=True)
               for i in range(SLOW_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    w.finish()
    worst = 0
    for i, res in enumerate(results):
        assert res.get("cut") is not None, f"slow client {i} was never cut: {res}"
        worst = max(worst, res["cut"])
        assert res["cut"] < SLOW_CUT_WITHIN_S, f"slow client {i} held {res['cut']:.1f} s"
        assert res["reply"] == b"" or res["reply"].startswith(b"HTTP/1.1 408 "), \
            f"slow client {i}: {res['reply'][:200]!r}"
    print(f"     ({SLOW_CLIENTS} slow clients cut after at most {worst:.2f} s)", flush=True)


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def start_limited(svc, nofile):
    """svc.start() with RLIMIT_NOFILE lowered in the child, as `ulimit -n` would."""
    original = rig.start_process

    def start_process(argv, **kwargs):
        def preexec():
            rig._pdeathsig()
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        kwargs["preexec_fn"] = preexec
        return original(argv, **kwargs)

    rig.start_process = start_process
    try:
        svc.start()
    finally:
        rig.start_process = original


def case_fd_exhaustion(tmp, bin_dir):
    svc = service.Service(bin_dir, os.path.join(tmp, "limited"), env={
        "MAILTRAIL_HTTP_MAX_CONNECTIONS_PER_IP": "4096",
        "MAILTRAIL_HTTP_HEADER_TIMEOUT": "60s",
    })
    try:
        os.makedirs(svc.tmp)
        svc.init("Org L", "admin@l.example")
        start_limited(svc, NOFILE)
        pid = svc.proc.pid
        with open(f"/proc/{pid}/limits") as f:
            assert any(line.startswith("Max open files") and f" {NOFILE} " in line
                       for line in f), "the service's RLIMIT_NOFILE was not lowered"
        w = Watcher(svc)
        socks = []
        try:
            for _ in range(FD_CLIENTS):
                socks.append(socket.create_connection(("127.0.0.1", svc.port), timeout=5))
            time.sleep(0.5)  # the service accepts what it can, then runs out
            open_fds = len(os.listdir(f"/proc/{pid}/fd"))
            cpu0 = proc_cpu_s(pid)
            time.sleep(1.0)
            cpu = proc_cpu_s(pid) - cpu0
        finally:
            w_error = None
            try:
                w.finish()
            except AssertionError as e:
                w_error = e
            for s in socks:
                s.close()
        print(f"     ({FD_CLIENTS} clients, service at {open_fds} descriptors of {NOFILE}; "
              f"{cpu:.2f} s CPU over 1 s)", flush=True)
        if w_error:
            raise w_error
        assert open_fds >= NOFILE - 2, f"the service never ran out ({open_fds} descriptors)"
        assert cpu < FD_CPU_MAX_S, f"the service used {cpu:.2f} s CPU in 1 s out of descriptors"
        # descriptors free again: a new client is answered (the back-off is at most 1 s)
        deadline = time.monotonic() + 10
        while True:
            try:
                r = svc.req("GET", "/healthz", timeout=3)
                if r.status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "not accepting again after the descriptors freed"
            time.sleep(0.2)
        log = svc.log_text().decode(errors="replace")
        # One warning per episode, not per failed accept (of which there were many): freeing
        # the descriptors lets the service accept the closed connections left in its backlog,
        # which may run it out once more.
        paused = log.count("event=http.accept_paused")
        assert 1 <= paused <= 3, f"{paused} accept_paused warnings"
        assert "event=http.accept_resumed" in log, "no accept_resumed after the episode"
    finally:
        svc.stop()


# --- main -------------------------------------------------------------------------------------

def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--watch":
        return watch_main(int(sys.argv[2]), int(sys.argv[3]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    mailtrail = os.path.join(a.bin_dir, "mailtrail")
    if not os.access(mailtrail, os.X_OK):
        print(f"FAIL setup: {mailtrail} is not built")
        print("0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-hostile-") as tmp:
        svc = service.Service(a.bin_dir, tmp, env={
            "MAILTRAIL_HTTP_HEADER_TIMEOUT": f"{HEADER_TIMEOUT_S}s"})
        try:
            only, r.only = r.only, None
            r.run("serve", lambda: (svc.init("Org H", "admin@h.example"), svc.start()))
            r.only = only
            if r.failed:
                print("setup failed\n" + svc.log_tail())
                return r.exit_code()
            r.run("uploads_31mib_unauthenticated", case_uploads, svc)
            r.run("slowloris", case_slowloris, svc)
            r.run("fd_exhaustion", case_fd_exhaustion, tmp, a.bin_dir)
            if r.failed:
                print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        finally:
            svc.stop()
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
