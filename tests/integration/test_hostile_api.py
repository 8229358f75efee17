#!/usr/bin/python3
"""Hostile clients of the API, after authentication (issue "Hardening round 1", items 6, 8, 9):
one tenant's worst requests must not stall or exhaust the service that serves every tenant.

  /usr/bin/python3 tests/integration/test_hostile_api.py --bin-dir BUILD [--only NAME]... [--keep]

Every case runs a bounded attack (counted requests, a few seconds, loopback only) while a probe
thread asks GET /healthz every 20 ms and another tenant reads its org (a store read); the case
then checks that /healthz always answered within HEALTHZ_MAX_MS (100 ms; 99 % within 75 ms), the other tenant
within OTHER_MAX_MS (1 s), and that the service's resident memory (VmRSS) stayed under RSS_MAX_MB
(700 MB, SQLite's page cache included). Each case runs on a server of its own.

  amplifying_json_message     30 MiB of {"to":[{},{},...]} to POST /v1/messages: refused (400,
                              too many values) before jansson builds a tree
  deep_json_message           30 MiB of [[[[...: refused before any recursion
  large_valid_message_off_loop 8 messages of ~20 MiB (text and attachments) at once: built on
                              the workers while /healthz keeps answering; the node's budget for
                              large bodies (96 MiB) has some wait (503 + Retry-After, retried)
  large_import_chunked        a 100,000-row CSV import (plus 1,500 bad rows): other tenants'
                              store reads are answered while it runs (1,000 rows per
                              transaction), and the reject report is capped at 1,000 with the total
  import_million_streamed     1,000,000 rows (~46 MB) in ONE chunked request, generated as it is
                              sent: all stored, /healthz and another tenant's reads answered
                              throughout, the service's RSS under RSS_MAX_MB (the body is
                              streamed into 1,000-row transactions, never held whole)
  import_over_old_cap         a 20 MiB import with Content-Length (413 while the route read
                              whole bodies up to 16 MiB): 200, every row stored
  import_stream_caps_gone     a second import in the same org while one runs: 429 with
                              Retry-After; another org's goes through; with two running on the
                              node a third org's is 503 with Retry-After, nothing stored; the
                              first client leaves mid-body: its 5 full chunks stay stored, the
                              org may import again
  import_stream_deadline      http_request_timeout = 3s: a client silent before the first chunk
                              is stored gets 408 (nothing stored), after it 200 with the rows
                              and `stopped`; the org may import again
  import_stops_midway         broken CSV after 2,500 rows: 200, those stored, `stopped` names the
                              line; the same in the first chunk: 400, nothing stored
  addin_large_message_off_loop 8 add-in posts of a ~16 MiB message at once: parsed on the workers
  stalled_smtp_peer_bodies    30 messages of ~7 MB for a custom SMTP server that takes the data
                              and never answers the dot: the sender holds at most its account's
                              body budget (64 MiB, gauge mailtrail_sender_body_bytes) in memory,
                              not every claimed body

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import base64
import contextlib
import http.client
import json
import multiprocessing
import os
import queue
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

# Work done on the loop instead of a worker stalls it for seconds (a 20 MiB message built there,
# a 30 MiB JSON tree). Every probe must be answered within 100 ms (issue 10) and 99 % within
# 75 ms. On 2 cores the loop shares them with the store thread and the workers; what else
# competed in this script was moved out of the measurement: the probe runs in a process of its
# own, at PROBE_NICE, the attack's threads and the rig's sink run at ATTACKER_NICE, and the
# service's workers and checkpoint thread at MT_WORK_NICE / MT_CHECKPOINT_NICE. Eight 20 MiB
# messages at once, the worst case, took 53-81 ms with every thread at one priority and a
# byte-by-byte 8-bit scan of each body on the loop (11 ms per body); 7-20 ms since on one machine of this kind, 35-61 ms on another (2026-12-06, 12 runs,
# the third-worst of ~300 probes, which is what the p99 reads here, at 43-51 ms: 50 failed one
# run in six with the code unchanged).
HEALTHZ_P99_MS = 75
HEALTHZ_MAX_MS = 100
ADDIN_ROUNDS = 4
OTHER_MAX_MS = 1000
# Resident memory of the whole service, SQLite's page cache included: the bodies a case writes
# pass through it (it is capped at 512 MiB per connection, see limits.h). The in-flight large
# bodies are capped at 96 MiB node-wide (MT_HTTP_LARGE_BODIES_MAX), about three times that while
# they are decoded and built.
RSS_MAX_MB = 700
# A streamed import itself holds its 1 MiB read-ahead, the piece being parsed and one 1,000-row
# chunk of profiles (~5.4 MB) whatever the file's size. What grows with the rows stored is
# SQLite's page cache (a 512 MiB ceiling, MT_SQLITE_CACHE_KIB): ~110 MB of anonymous memory per
# 200,000 short profiles, the same with the old whole-body import (measured: 5 x 200,000 rows,
# base 577 MB, streamed 571 MB of RssAnon). The million-row case is therefore held to
# RSS_MAX_MB; the 20 MiB case (94,000 rows, page cache ~130 MB) to IMPORT_RSS_MAX_MB of
# anonymous memory, which a 20 MiB body held whole, and built upon, would pass.
IMPORT_RSS_MAX_MB = 250


def rss_mb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def timed_gets(port, path, token, stop, samples, errors):
    """GET `path` every 20 ms on one kept connection until `stop` is set, appending each
    answer's time in ms to `samples` and what went wrong to `errors`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": "Bearer " + token} if token else {}
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(f"{path}: {r.status}")
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{path}: {e!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            samples.append((time.monotonic() - t0) * 1000)
            time.sleep(0.02)
    finally:
        conn.close()


def probe_healthz(port, stop, results):
    """timed_gets of /healthz in a process of its own; puts (samples, errors) on `results`.
    The probe runs ahead of everything else on the machine where it may (PROBE_NICE, as root:
    the rig always is): the time it waited for a core after the answer came is the rig's, not
    the service's."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PROBE_NICE)
    except PermissionError:
        pass
    samples, errors = [], []
    timed_gets(port, "/healthz", None, stop, samples, errors)
    results.put((samples, errors))


class Watch:
    """Probes /healthz (and, with `other`, another tenant's GET /v1/org) and samples RSS while
    the attack runs."""

    def __init__(self, svc, other_token=None):
        self.svc = svc
        self.other = other_token
        self.stop = threading.Event()
        self.healthz = []
        self.other_ms = []
        self.rss = []
        self.anon = []
        self.errors = []
        self.threads = [threading.Thread(target=self.sample, daemon=True)]
        if other_token:
            self.threads.append(threading.Thread(target=self.read_other, daemon=True))
        # /healthz is timed from a process of its own: the attack's threads here build and
        # send tens of MiB under the GIL, which would otherwise be counted as the service's.
        ctx = multiprocessing.get_context("fork")
        self.probe_stop = ctx.Event()
        self.probe_results = ctx.Queue()
        self.prober = ctx.Process(target=probe_healthz,
                                  args=(svc.port, self.probe_stop, self.probe_results),
                                  daemon=True)

    def __enter__(self):
        # What the cases before wrote (a million-profile database, hundreds of MB) is flushed
        # first: the kernel's writeback of another case's files, sharing the two cores, is not
        # this case's attack (a 3 GB write beside a case took /healthz to 121 ms; a full run,
        # right after the million-row import, once to 107 ms).
        os.sync()
        self.prober.start()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.probe_stop.set()
        try:
            samples, errors = self.probe_results.get(timeout=40)
            self.healthz.extend(samples)
            self.errors.extend(errors)
        except queue.Empty:
            self.errors.append("/healthz: the probe process reported nothing")
        self.prober.join(10)
        for t in self.threads:
            t.join(10)

    def read_other(self):
        timed_gets(self.svc.port, "/v1/org", self.other, self.stop, self.other_ms, self.errors)

    def sample(self):
        while not self.stop.is_set():
            self.rss.append(rss_mb(self.svc.proc.pid))
            self.anon.append(rss_mb(self.svc.proc.pid, "RssAnon"))
            time.sleep(0.05)

    def check(self):
        assert self.healthz, "no /healthz sample"
        worst = max(self.healthz)
        assert not self.errors, f"probe errors: {self.errors[:3]}"
        assert worst < HEALTHZ_MAX_MS, \
            f"/healthz took {worst:.0f} ms (bound {HEALTHZ_MAX_MS}; {len(self.healthz)} samples)"
        ordered = sorted(self.healthz)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        assert p99 < HEALTHZ_P99_MS, \
            f"/healthz p99 {p99:.0f} ms (bound {HEALTHZ_P99_MS}; {len(self.healthz)} samples)"
        if self.other:
            assert self.other_ms, "no other-tenant sample"
            assert max(self.other_ms) < OTHER_MAX_MS, \
                f"another tenant's read took {max(self.other_ms):.0f} ms (bound {OTHER_MAX_MS})"
        peak = max(self.rss) if self.rss else 0
        assert peak < RSS_MAX_MB, f"RSS reached {peak:.0f} MB (bound {RSS_MAX_MB})"
        return worst, peak


def post_raw(svc, path, token, body, content_type, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={
            "Authorization": "Bearer " + token, "Content-Type": content_type})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# The attack's client and the rig's SMTP sink run below the service's priority: an attacker and
# a remote mail server do not share the service's 2 cores, and 8 Python threads pushing 20 MiB
# each, or the sink taking 160 MiB, would otherwise be measured as the service's latency (the
# probe and the service stay at the default priority).
ATTACKER_NICE = 10
PROBE_NICE = -10


def parallel(n, fn):
    """fn(0) .. fn(n - 1) on threads of their own, at the attacker's priority."""
    out = [None] * n
    errs = []

    def run(i):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ATTACKER_NICE)
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 (reported below)
            errs.append(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    if errs:
        raise errs[0]
    return out


def attack(fn):
    """fn() on a thread at the attacker's priority; its result."""
    return parallel(1, lambda i: fn())[0]


def setup(svc, ctx):
    a = svc.init("Hostile Org", "admin@hostile.example")
    b = svc.init("Other Org", "admin@other.example")
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.users["other"] = {"id": b["user_id"], "token": b["token"]}
    c = svc.init("Third Org", "admin@third.example")
    svc.users["third"] = {"id": c["user_id"], "token": c["token"]}
    svc.org_ids = {"admin": a["org_id"], "other": b["org_id"], "third": c["org_id"]}
    svc.start()
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": True}), 200)
    r = svc.req("PUT", "/v1/smtp", svc.tok("admin"),
                {"host": "127.0.0.1", "port": ctx["sink_port"], "security": "none",
                 "auth": "none", "from": "admin@hostile.example", "accept_disclaimer": True})
    expect(r, 200)


def case_amplifying_json(svc, ctx):
    items = (30 << 20) // 3
    body = b'{"to":[' + b",".join([b"{}"] * items) + b'],"subject":"x","text":"x"}'
    with Watch(svc, svc.tok("other")) as w:
        t0 = time.monotonic()
        status, data = attack(lambda: post_raw(svc, "/v1/messages", svc.tok("admin"), body,
                                               "application/json"))
        took = time.monotonic() - t0
    assert status == 400 and b"values" in data, f"{status} {data[:200]!r}"
    worst, peak = w.check()
    print(f"     30 MiB of [{{}},...]: 400 in {took:.2f} s, /healthz worst {worst:.0f} ms, "
          f"RSS peak {peak:.0f} MB")


def case_deep_json(svc, ctx):
    body = b'{"to":' + b"[" * (30 << 20) + b"]"
    with Watch(svc) as w:
        status, data = attack(lambda: post_raw(svc, "/v1/messages", svc.tok("admin"), body,
                                               "application/json"))
    assert status == 400 and b"deeper" in data, f"{status} {data[:200]!r}"
    worst, peak = w.check()
    print(f"     30 MiB of [[[...: 400, /healthz worst {worst:.0f} ms, RSS peak {peak:.0f} MB")


def big_message(i):
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 40 + "\n") * 2000
    blob = base64.b64encode(os.urandom(12 << 20)).decode()
    return json.dumps({"to": [f"big{i}@cand.example"], "subject": f"big {i}", "text": text,
                       "attachments": [{"filename": "cv.bin", "content_type":
                                        "application/octet-stream", "content_base64": blob}]
                       }).encode()


def post_until_taken(svc, path, token, body, content_type, deadline_s=120):
    """POSTs until the answer is not a 503 (the node's budget for large bodies was full: its
    Retry-After says when to come back). Returns (status, body, refusals)."""
    refused = 0
    deadline = time.monotonic() + deadline_s
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=120)
        try:
            conn.request("POST", path, body=body, headers={
                "Authorization": "Bearer " + token, "Content-Type": content_type})
            r = conn.getresponse()
            status, data, retry = r.status, r.read(), r.getheader("Retry-After")
        except (BrokenPipeError, ConnectionResetError):
            # refused before the body was read: the connection closed under the upload
            status, data, retry = 503, b"", "1"
        finally:
            conn.close()
        if status != 503 or time.monotonic() > deadline:
            return status, data, refused
        assert retry is not None, "a 503 without Retry-After"
        refused += 1
        time.sleep(float(retry) / 4)


def case_large_messages(svc, ctx):
    """Eight ~20 MiB messages at once: built on the workers while /healthz answers; the node's
    budget for large bodies makes some wait (503 + Retry-After) rather than hold them all.
    (Another tenant's store reads wait behind ~200 MB of durable writes here: the store has one
    thread; see docs/architecture.md.)"""
    bodies = [big_message(i) for i in range(8)]
    with Watch(svc) as w:
        results = parallel(8, lambda i: post_until_taken(svc, "/v1/messages", svc.tok("admin"),
                                                         bodies[i], "application/json"))
    for status, data, _ in results:
        assert status == 202, f"{status} {data[:300]!r}"
    worst, peak = w.check()
    print(f"     8 x {len(bodies[0]) >> 20} MiB messages: 202 each after "
          f"{sum(r[2] for r in results)} refusals, /healthz worst {worst:.0f} ms, "
          f"RSS peak {peak:.0f} MB")


def case_large_import(svc, ctx):
    rows = 100000
    lines = ["kind,name,emails"]
    lines += [f"applicant,Person {i},p{i}@imp{i % 97}.example" for i in range(rows)]
    lines += [f"nobody,Bad {i},bad{i}@x.example" for i in range(1500)]
    body = ("\n".join(lines) + "\n").encode()
    with Watch(svc, svc.tok("other")) as w:
        t0 = time.monotonic()
        status, data = attack(lambda: post_raw(svc, "/v1/profiles/import", svc.tok("admin"),
                                               body, "text/csv", timeout=300))
        took = time.monotonic() - t0
    assert status == 200, f"{status} {data[:300]!r}"
    doc = json.loads(data)
    assert doc["imported"] == rows, {k: doc[k] for k in ("imported", "rejected_total")}
    assert len(doc["rejected"]) == 1000 and doc["rejected_total"] == 1500, \
        (len(doc["rejected"]), doc["rejected_total"])
    assert doc["rejected"][0]["line"] == rows + 2, doc["rejected"][0]
    worst, peak = w.check()
    print(f"     {rows} rows in {took:.1f} s; other tenant's reads worst "
          f"{max(w.other_ms):.0f} ms; /healthz worst {worst:.0f} ms; RSS peak {peak:.0f} MB")


def import_rows(n, start=0, name_pad=""):
    """The CSV, generated 10,000 rows at a time (never held whole)."""
    yield b"kind,name,emails\n"
    for base in range(start, start + n, 10000):
        yield "".join(f"applicant,Person {i}{name_pad},p{i}@imp{i % 97}.example\n"
                      for i in range(base, min(base + 10000, start + n))).encode()


def count_profiles_db(svc):
    import sqlite3
    db = os.path.join(svc.data, "mailtrail.db")
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return dict(con.execute("SELECT org_id, count(*) FROM profiles GROUP BY org_id"))
    finally:
        con.close()


def post_stream(svc, token, chunks, timeout=300):
    """POST /v1/profiles/import with a chunked body made as it is sent."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/profiles/import", body=chunks, encode_chunked=True,
                     headers={"Authorization": "Bearer " + token, "Content-Type": "text/csv",
                              "Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        return r.status, r.read(), r.getheader("Retry-After")
    finally:
        conn.close()


def case_import_million(svc, ctx):
    rows = 1000000
    sent = [0]

    def counted():
        for piece in import_rows(rows):
            sent[0] += len(piece)
            yield piece

    with Watch(svc, svc.tok("other")) as w:
        t0 = time.monotonic()
        status, data, _ = attack(lambda: post_stream(svc, svc.tok("admin"), counted()))
        took = time.monotonic() - t0
    assert status == 200, f"{status} {data[:300]!r}"
    doc = json.loads(data)
    assert doc["imported"] == rows and doc["rejected_total"] == 0 and doc["stopped"] is None, \
        {k: doc[k] for k in ("imported", "rejected_total", "stopped")}
    assert len(doc["profiles"]) == 1000 and doc["profiles"][-1]["line"] == 1001, \
        doc["profiles"][-1]
    stored = count_profiles_db(svc)
    assert sorted(stored.values()) == [rows], stored
    worst, peak = w.check()  # VmRSS < RSS_MAX_MB
    anon = max(w.anon)
    ordered = sorted(w.healthz)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"     {rows} rows ({sent[0] / 2**20:.1f} MiB, chunked) in {took:.1f} s = "
          f"{rows / took:,.0f} rows/s; /healthz p99 {p99:.0f} ms worst {worst:.0f} ms; "
          f"other tenant's reads worst {max(w.other_ms):.0f} ms; RSS peak {peak:.0f} MB "
          f"(anonymous {anon:.0f} MB: SQLite's page cache of a 1M-profile database)")


def case_import_over_old_cap(svc, ctx):
    pad = " " + "x" * 180  # ~224 bytes a row: 20 MiB in ~94,000 rows
    body = b"".join(import_rows(94000, name_pad=pad))
    assert len(body) > 20 << 20, len(body)
    with Watch(svc, svc.tok("other")) as w:
        status, data = attack(lambda: post_raw(svc, "/v1/profiles/import", svc.tok("admin"),
                                               body, "text/csv", timeout=300))
    assert status == 200, f"{status} {data[:300]!r}"
    doc = json.loads(data)
    assert doc["imported"] == 94000 and doc["rejected_total"] == 0, \
        {k: doc[k] for k in ("imported", "rejected_total")}
    worst, peak = w.check()
    anon = max(w.anon)
    assert anon < IMPORT_RSS_MAX_MB, \
        f"anonymous RSS reached {anon:.0f} MB (bound {IMPORT_RSS_MAX_MB})"
    print(f"     {len(body) / 2**20:.1f} MiB with Content-Length: 200, 94000 stored; "
          f"RSS peak {peak:.0f} MB")


def hanging_import(svc, token, rows, start=0):
    """An import whose client sends `rows` rows and then nothing more (the socket)."""
    import socket
    sock = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
    sock.sendall(("POST /v1/profiles/import HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  f"{token}\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n")
                 .encode())
    part = b"".join(import_rows(rows, start=start))
    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    return sock


def case_import_caps_gone(svc, ctx):
    a = svc.tok("admin")
    # One import left hanging mid-body: 5,000 rows sent, the rest never comes.
    sock = hanging_import(svc, a, 5000)
    deadline = time.monotonic() + 30
    while count_profiles_db(svc).get(svc.org_ids["admin"], 0) < 5000:
        assert time.monotonic() < deadline, "the first 5 chunks were never stored"
        time.sleep(0.1)
    small = b"".join(import_rows(3, start=900000))
    status, data, retry = post_stream(svc, a, iter([small]))
    assert status == 429 and retry is not None, (status, data[:200], retry)
    assert json.loads(data)["error"]["class"] == "throttle", data
    status, data, _ = post_stream(svc, svc.tok("other"), iter([small]))
    assert status == 200 and json.loads(data)["imported"] == 3, (status, data[:200])
    # The node's cap (MT_IMPORT_STREAMS_MAX = 2): a second org's import left hanging too,
    # then a third org's is refused with 503 and Retry-After, before any row is read.
    sock2 = hanging_import(svc, svc.tok("other"), 2000, start=800000)
    while count_profiles_db(svc).get(svc.org_ids["other"], 0) < 3 + 2000:
        assert time.monotonic() < deadline, "the other org's first chunks were never stored"
        time.sleep(0.1)
    status, data, retry = post_stream(svc, svc.tok("third"), iter([small]))
    assert status == 503 and retry is not None, (status, data[:200], retry)
    assert count_profiles_db(svc).get(svc.org_ids["third"], 0) == 0
    sock2.close()
    deadline = time.monotonic() + 10
    while True:
        status, data, _ = post_stream(svc, svc.tok("third"), iter([small]))
        if status != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and json.loads(data)["imported"] == 3, (status, data[:200])
    # The first client leaves: what was committed stays, the org's slot is freed.
    sock.close()
    deadline = time.monotonic() + 10
    while True:
        status, data, _ = post_stream(svc, a, iter([small]))
        if status != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and json.loads(data)["imported"] == 3, (status, data[:200])
    stored = count_profiles_db(svc)
    assert stored[svc.org_ids["admin"]] == 5003, stored
    assert svc.req("GET", "/healthz").status == 200
    print(f"     429 for a second import in the org, 200 for another org's; after the "
          f"client left: {stored[svc.org_ids['admin']] - 3} rows kept (5 chunks)")


def read_reply(sock, timeout):
    """The status and body of the one reply on `sock` (the server closes after it)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except OSError:
            break
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    return status, body


def case_import_deadline(svc, ctx):
    """http_request_timeout (3 s here) holds for a streamed import too: a client that stops
    sending is answered, and its slot freed, at the deadline."""
    a = svc.tok("admin")
    # Silent before the first 1,000-row chunk was stored: 408, nothing stored.
    t0 = time.monotonic()
    sock = hanging_import(svc, a, 500)
    status, body = read_reply(sock, 30)
    took = time.monotonic() - t0
    sock.close()
    assert status == 408, (status, body[:200])
    assert json.loads(body)["error"]["code"] == "request_timeout", body[:200]
    assert 2.5 <= took < 10, took
    assert count_profiles_db(svc).get(svc.org_ids["admin"], 0) == 0
    # Silent after it: 200 with every complete row stored and `stopped` at the first line
    # not read, as for any fault found after the first chunk.
    t0 = time.monotonic()
    sock = hanging_import(svc, a, 1500, start=10000)
    status, body = read_reply(sock, 30)
    took = time.monotonic() - t0
    sock.close()
    assert status == 200, (status, body[:200])
    doc = json.loads(body)
    assert doc["imported"] == 1500, doc["imported"]
    assert doc["stopped"]["line"] == 1502, doc["stopped"]
    assert "did not arrive in time" in doc["stopped"]["error"], doc["stopped"]
    assert 2.5 <= took < 10, took
    assert count_profiles_db(svc).get(svc.org_ids["admin"], 0) == 1500
    # The org's import slot is free again.
    status, data, _ = post_stream(svc, a, iter([b"".join(import_rows(3, start=900000))]))
    assert status == 200 and json.loads(data)["imported"] == 3, (status, data[:200])
    print(f"     silent before the first chunk: 408, nothing stored; after it: 200, 1,500 "
          f"stored, stopped at line 1502 ({took:.1f} s)")


case_import_deadline.env = {"MAILTRAIL_HTTP_REQUEST_TIMEOUT": "3s"}


def case_import_stops_midway(svc, ctx):
    """Broken CSV after 2,500 good rows: the first two chunks were stored before it was read,
    so the file is no longer refused whole: the rows before it are stored and `stopped` says
    where the import ended. The same fault in the first chunk refuses the file (nothing
    stored)."""
    good = b"".join(import_rows(2500, start=700000))
    status, data, _ = post_stream(svc, svc.tok("admin"),
                                  iter([good, b'applicant,"Broken,x@y.example\n']))
    assert status == 200, (status, data[:300])
    doc = json.loads(data)
    assert doc["imported"] == 2500, doc["imported"]
    assert doc["stopped"]["line"] == 2502 and "malformed CSV" in doc["stopped"]["error"], \
        doc["stopped"]
    assert count_profiles_db(svc).get(svc.org_ids["admin"]) == 2500
    small = b"".join(import_rows(900, start=800000))
    status, data, _ = post_stream(svc, svc.tok("admin"),
                                  iter([small, b'applicant,"Broken,x@y.example\n']))
    assert status == 400, (status, data[:300])
    assert count_profiles_db(svc).get(svc.org_ids["admin"]) == 2500
    print("     broken CSV at line 2502: 200, 2,500 stored, stopped at 2502; at line 902: 400")


def case_addin_large(svc, ctx):
    text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * 300000)
    msg = ("From: Jack <jack@cand.example>\r\nTo: admin@hostile.example\r\n"
           "Subject: big add-in\r\nMessage-ID: <big-addin@cand.example>\r\n"
           "Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n" + text).encode()
    # Rounds of 8 at once until /healthz has ~100 answers: with one round (~30) the p99 would
    # be the worst probe, not a percentile.
    results = []
    with Watch(svc, svc.tok("other")) as w:
        for _ in range(ADDIN_ROUNDS):
            results += parallel(8, lambda i: post_until_taken(svc, "/v1/addin/log",
                                                              svc.tok("admin"), msg,
                                                              "message/rfc822"))
    for status, data, _ in results:
        assert status == 200, f"{status} {data[:300]!r}"
    worst, peak = w.check()
    print(f"     {ADDIN_ROUNDS} x 8 x {len(msg) >> 20} MiB add-in messages: /healthz worst "
          f"{worst:.0f} ms ({len(w.healthz)} samples), RSS peak {peak:.0f} MB")


def case_stalled_peer(svc_factory, ctx):
    peer = rig.StallingSmtp("dot")
    svc = svc_factory("stalled")
    try:
        a = svc.init("Stalled Org", "admin@stalled.example")
        svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
        svc.start()
        expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": True}), 200)
        # the live check's confirmation mail stalls too: a plain-text peer for the check first
        with contextlib.ExitStack() as stack:
            sink = stack.enter_context(rig.smtp_sink())
            r = svc.req("PUT", "/v1/smtp", svc.tok("admin"),
                        {"host": "127.0.0.1", "port": sink.port, "security": "none",
                         "auth": "none", "from": "admin@stalled.example",
                         "accept_disclaimer": True})
            expect(r, 200)
        # ... then the account is pointed at the stalled server behind the same settings
        db = os.path.join(svc.data, "mailtrail.db")
        import sqlite3
        con = sqlite3.connect(db, timeout=10)
        con.execute("UPDATE smtp_accounts SET port = ?", (peer.port,))
        con.commit()
        con.close()
        blob = base64.b64encode(os.urandom(5 << 20)).decode()
        body = json.dumps({"to": ["held@cand.example"], "subject": "stalled", "text": "x",
                           "attachments": [{"filename": "a.bin", "content_base64": blob}]}).encode()
        base_rss = rss_mb(svc.proc.pid)
        with Watch(svc) as w:
            for _ in range(30):
                status, data, _ = attack(lambda: post_until_taken(
                    svc, "/v1/messages", svc.tok("admin"), body, "application/json"))
                assert status == 202, f"{status} {data[:200]!r}"
            time.sleep(3)  # the sender claims them all and feeds the stalled sessions
            text = svc.req("GET", "/metrics").text
        held = [float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("mailtrail_sender_body_bytes")]
        assert held, "no mailtrail_sender_body_bytes in /metrics"
        bound = (64 << 20) + len(body)  # the account's budget, and one message past it
        assert 0 < held[0] <= bound, \
            f"the sender holds {held[0] / 2**20:.0f} MiB of bodies for a stalled server " \
            f"(bound {bound / 2**20:.0f} MiB: the account's budget)"
        assert peer.bytes > 0, "the stalled peer never got any data"
        worst, peak = w.check()
        print(f"     30 x {len(body) >> 20} MiB queued for a stalled server: the sender holds "
              f"{held[0] / 2**20:.0f} MiB of bodies; RSS from {base_rss:.0f} to {peak:.0f} MB; "
              f"/healthz worst {worst:.0f} ms")
    finally:
        svc.stop()
        peer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed)")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    if not os.access(os.path.join(a.bin_dir, "mailtrail"), os.X_OK):
        print(f"FAIL setup: {a.bin_dir}/mailtrail is not built\n0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-hostile-api-") as tmp, contextlib.ExitStack() as stack:
        sink = stack.enter_context(rig.smtp_sink())
        # the sink stands for a remote server: it does not compete with the service either
        os.setpriority(os.PRIO_PROCESS, sink.proc.pid, ATTACKER_NICE)
        ctx = {"sink_port": sink.port}

        def fresh(name, env=None):
            home = os.path.join(tmp, name)
            os.makedirs(home)
            other = Service(a.bin_dir, home, env={"MAILTRAIL_LOG_LEVEL": "warn",
                                                 "MAILTRAIL_NO_AUTH_HOSTS": "127.0.0.1",
                                                 **(env or {})})
            stack.callback(other.stop)
            return other

        cases = [
            ("amplifying_json_message", case_amplifying_json),
            ("deep_json_message", case_deep_json),
            ("large_valid_message_off_loop", case_large_messages),
            ("large_import_chunked", case_large_import),
            ("import_million_streamed", case_import_million),
            ("import_over_old_cap", case_import_over_old_cap),
            ("import_stream_caps_gone", case_import_caps_gone),
            ("import_stops_midway", case_import_stops_midway),
            ("import_stream_deadline", case_import_deadline),
            ("addin_large_message_off_loop", case_addin_large),
        ]
        # each case on a server of its own: its RSS is its own
        for name, fn in cases:
            def run(fn=fn, name=name):
                svc = fresh(name, getattr(fn, "env", None))
                try:
                    setup(svc, ctx)
                    fn(svc, ctx)
                except BaseException:
                    print("--- server log (tail)\n" + svc.log_tail(30), flush=True)
                    raise
                finally:
                    svc.stop()
            r.run(name, run)
        r.run("stalled_smtp_peer_bodies", case_stalled_peer, fresh, ctx)
        if a.keep:
            import shutil
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
