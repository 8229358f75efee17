#!/usr/bin/python3
"""The outbox's crash safety (DESIGN.md §2 smtp_sessions_per_account x smtp_max_inflight: "after
a crash at most their product may be sent again"; src/engine/sender.h).

  /usr/bin/python3 tests/integration/test_outbox_crash.py --bin-dir BUILD [--count N]
      [--sessions S] [--inflight W] [--kill-at FRACTION] [--keep]

N messages (default 2,000; scripts/crash-test runs 10,000) are queued through one recruiter's
custom SMTP (security none, auth none) into the rig's aiosmtpd sink (plain port; it stores a
message, then answers 250). While they are queued the sink is paused (SIGSTOP), so nothing goes
out before every POST has its 202; then it resumes, and once about a third has arrived the
server is killed with SIGKILL. It is restarted on the same data dir (same DATA/node.id, so its
leases come back at once) and runs until every message is final. Then:

  - 0 lost: every message's Message-ID (from GET /v1/messages/{id}) is at the sink;
  - every message is "sent";
  - duplicates (copies beyond the first, per Message-ID) <= sessions x inflight (set explicitly,
    default 2 x 100), and they are printed with the timings.

Prints PASS/FAIL lines and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import collections
import contextlib
import http.client
import json
import os
import re
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

REC = "crash@a.example"
FINAL = ("sent", "partial", "failed", "cancelled")
THREADS = 8


class Client:
    """A keep-alive HTTP/1.1 connection."""

    def __init__(self, port, token):
        self.port, self.token, self.conn = port, token, None

    def req(self, method, path, body=None):
        h = {"Authorization": "Bearer " + self.token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=45)
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None), raw
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def parallel(n, fn, threads=THREADS):
    """fn(thread_index, i) for i in range(n) from `threads` threads; results in order."""
    results = [None] * n
    errors = []
    lock = threading.Lock()
    it = iter(range(n))

    def worker(k):
        while True:
            with lock:
                if errors:
                    return
                i = next(it, None)
            if i is None:
                return
            try:
                results[i] = fn(k, i)
            except BaseException as e:  # noqa: BLE001 (re-raised below)
                with lock:
                    errors.append(e)
                return

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


def sink_count(store):
    try:
        return sum(1 for n in os.listdir(store) if n.endswith(".json") and not n.startswith("."))
    except OSError:
        return 0


MID = re.compile(rb"^Message-ID:[ \t]*<?([^>\r\n]*)>?", re.M | re.I)


def sink_mids(store):
    counts = collections.Counter()
    for name in os.listdir(store):
        if not name.endswith(".json") or name.startswith("."):
            continue
        with open(os.path.join(store, name[:-5] + ".eml"), "rb") as f:
            head = f.read(8192)
        m = MID.search(head)
        counts[m.group(1).decode().strip() if m else None] += 1
    return counts


def run(a, tmp, stack):
    t = {}
    certs = rig.make_certs(os.path.join(tmp, "certs"))
    store = os.path.join(tmp, "sink")
    sink = stack.enter_context(rig.auth_sink(certs, store, starttls=False, tls=False, plain=True))
    stack.callback(lambda: sink.proc.poll() is None and os.kill(sink.proc.pid, signal.SIGCONT))
    svc = Service(a.bin_dir, tmp, env={
        "MAILTRAIL_NO_AUTH_HOSTS": "127.0.0.1",
        "MAILTRAIL_SMTP_SESSIONS_PER_ACCOUNT": str(a.sessions),
        "MAILTRAIL_SMTP_MAX_INFLIGHT": str(a.inflight),
        "MAILTRAIL_LOG_LEVEL": "info",
    })
    stack.callback(svc.stop)
    doc = svc.init("Crash Org", "admin@a.example")
    admin = doc["token"]
    svc.start()
    expect(svc.req("PUT", "/v1/org/features", admin, {"custom_smtp": True}), 200)
    token = expect(svc.req("POST", "/v1/users", admin,
                           {"email": REC, "name": "Crash Tester", "role": "user"}), 201)["token"]
    expect(svc.req("PUT", "/v1/smtp", token,
                   {"host": "127.0.0.1", "port": sink.port_plain, "security": "none",
                    "auth": "none", "from": REC, "accept_disclaimer": True}), 200)
    base = sink_count(store)  # the live check's confirmation

    # Queue everything while the sink is paused.
    os.kill(sink.proc.pid, signal.SIGSTOP)
    clients = [Client(svc.port, token) for _ in range(THREADS)]

    def post(k, i):
        st, doc, raw = clients[k].req("POST", "/v1/messages", {
            "to": [f"Cand {i} <c{i}@cand{i % 7}.example>"],
            "cc": [f"cc{i}@cand.example"] if i % 3 == 0 else [],
            "subject": f"crash test {i} — ü", "text": f"message {i}\n" + "x" * (i % 500)})
        assert st == 202, f"POST {i} -> {st}: {raw[:300]!r}"
        return doc["id"]

    t0 = time.monotonic()
    ids = parallel(a.count, post)
    t["enqueue"] = time.monotonic() - t0
    for c in clients:
        c.close()
    assert len(set(ids)) == a.count
    arrived_before = sink_count(store) - base
    assert arrived_before == 0, f"{arrived_before} arrived while the sink was paused?"

    # Resume, and kill the server after about a third arrived.
    target = base + int(a.count * a.kill_at)
    t1 = time.monotonic()
    os.kill(sink.proc.pid, signal.SIGCONT)
    deadline = t1 + 60
    while sink_count(store) < target:
        assert time.monotonic() < deadline, \
            f"only {sink_count(store) - base} of {a.count} arrived in 60 s\n{svc.log_tail()}"
        assert svc.proc.poll() is None, f"serve died\n{svc.log_tail()}"
        time.sleep(0.005)
    svc.proc.send_signal(signal.SIGKILL)
    svc.proc.wait(10)
    t["to_kill"] = time.monotonic() - t1
    at_kill = sink_count(store) - base
    time.sleep(0.5)  # what the sink was still receiving lands
    after_kill = sink_count(store) - base

    # Restart on the same data dir and drain.
    t2 = time.monotonic()
    svc.start()
    t["restart"] = time.monotonic() - t2
    clients = [Client(svc.port, token) for _ in range(THREADS)]
    docs = [None] * a.count
    pending = list(range(a.count))
    deadline = time.monotonic() + max(60, a.count / 50)
    while pending:
        got = parallel(len(pending), lambda k, j: clients[k].req(
            "GET", f"/v1/messages/{ids[pending[j]]}")[1])
        still = []
        for i, doc in zip(pending, got):
            if doc["state"] in FINAL:
                docs[i] = doc
            else:
                still.append(i)
        pending = still
        if pending:
            assert time.monotonic() < deadline, \
                f"{len(pending)} messages not final, e.g. {got[0]}\n{svc.log_tail()}"
            time.sleep(0.3)
    t["drain"] = time.monotonic() - t2
    for c in clients:
        c.close()
    time.sleep(0.5)
    counts = sink_mids(store)
    states = collections.Counter(d["state"] for d in docs)
    lost = [d for d in docs if counts.get(d["message_id"], 0) == 0]
    dups = sum(counts[d["message_id"]] - 1 for d in docs if counts.get(d["message_id"], 0) > 1)
    dup_msgs = sum(1 for d in docs if counts.get(d["message_id"], 0) > 1)
    ours = {d["message_id"] for d in docs}
    strangers = sum(n for mid, n in counts.items() if mid not in ours) - base
    bound = a.sessions * a.inflight
    log = svc.log_text().decode(errors="replace")
    released = re.findall(r"event=sender\.leases_released \S+ messages=(\d+)", log)
    print(f"     {a.count} messages, {a.sessions} sessions x {a.inflight} in flight (bound {bound})")
    print(f"     enqueue {t['enqueue']:.1f}s ({a.count / t['enqueue']:.0f}/s); kill -9 after "
          f"{t['to_kill']:.1f}s with {at_kill} arrived ({after_kill} after 0.5 s); restart "
          f"{t['restart']:.1f}s; all final {t['drain']:.1f}s after the restart")
    print(f"     leases released at start: {released}; states {dict(states)}")
    print(f"     lost {len(lost)}, duplicates {dups} (of {dup_msgs} messages), unknown "
          f"messages at the sink {strangers}", flush=True)
    assert not lost, f"{len(lost)} messages lost, e.g. {lost[:3]}"
    assert states == {"sent": a.count}, f"not all sent: {dict(states)}"
    assert dups <= bound, f"{dups} duplicates > {a.sessions} x {a.inflight}"
    assert strangers == 0, f"{strangers} messages at the sink that are none of ours"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=2)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--kill-at", type=float, default=1 / 3)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner()
    if not os.access(os.path.join(a.bin_dir, "mailtrail"), os.X_OK):
        print(f"FAIL setup: {a.bin_dir}/mailtrail is not built\n0 passed, 1 failed")
        return 1
    t0 = time.monotonic()
    with rig.tempdir("mailtrail-crash-") as tmp, contextlib.ExitStack() as stack:
        r.run(f"crash_kill9_{a.count}", run, a, tmp, stack)
        if a.keep:
            import shutil
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
