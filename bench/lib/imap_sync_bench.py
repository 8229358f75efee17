#!/usr/bin/python3
"""bench/lib/imap_sync_bench.py MODE WORK MAILTRAIL RAW_CLIENT N [M]: the IMAP sync benchmarks
of issue 14, driven by bench/sync-initial, bench/sync-push and bench/sync-idle (which make WORK,
copy the binaries, raise RLIMIT_NOFILE and clean up).

MODE initial N=MESSAGES M=PROFILES, push N=APPENDS, idle N=ACCOUNTS.

Everything runs under WORK: a private Dovecot (tests/rig/dovecot.py, maildirs in /dev/shm) and a
fresh `mailtrail serve` (its own store, MAILTRAIL_CA_FILE = the rig's CA, loopback allowed),
both started through rig.start_process (own process group, PR_SET_PDEATHSIG) and stopped in a
finally clause. Figures go to stdout, progress to stderr. Debian's /usr/bin/python3, root."""

import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "rig"))
import cyrus  # noqa: E402
import dovecot  # noqa: E402
import rig  # noqa: E402

ORG_DOMAIN = "staffing.example"
ADMIN = "admin@" + ORG_DOMAIN
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
WORDS = ("quarterly report meeting agenda invoice proposal review update schedule budget "
         "contract draft follow-up question launch roadmap notes summary feedback").split()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Api:
    """Keep-alive HTTP/1.1 client of mailtrail's API (one connection per thread)."""

    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        return c

    def req(self, method, path, token=None, body=None, ctype="application/json", raw=False):
        headers = {}
        if token:
            headers["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = ctype
        for attempt in range(3):
            try:
                c = self.conn()
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                payload = r.read()
                break
            except (http.client.HTTPException, OSError):
                self.local.c = None
                if attempt == 2:
                    raise
        if raw:
            return r.status, payload, r.getheader("Retry-After")
        doc = json.loads(payload) if payload and payload[:1] in b"{[" else payload
        return r.status, doc, r.getheader("Retry-After")

    def ok(self, method, path, token=None, body=None, ctype="application/json"):
        status, doc, _ = self.req(method, path, token, body, ctype)
        if status // 100 != 2:
            raise SystemExit(f"{method} {path}: {status} {doc!r:.500}")
        return doc


class Mailtrail:
    def __init__(self, binary, work, ca_file, env=None):
        self.data = os.path.join(work, "data")
        out = subprocess.run([binary, "init", "--data", self.data, "--org", "Bench",
                              "--admin-email", ADMIN], check=True, capture_output=True).stdout
        self.admin_token = json.loads(out)["token"]
        self.port = rig.free_port()
        e = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRAIL_")}
        e.update(MAILTRAIL_CA_FILE=ca_file, MAILTRAIL_ALLOW_PRIVATE_HOSTS="127.0.0.0/8",
                 MAILTRAIL_NO_AUTH_HOSTS="127.0.0.1")
        e.update(env or {})
        self.log_path = os.path.join(work, "serve.log")
        with open(self.log_path, "ab") as lf:
            self.proc = rig.start_process([binary, "serve", "--data", self.data, "--http",
                                           f"127.0.0.1:{self.port}"], env=e,
                                          stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
        if not rig.wait_port("127.0.0.1", self.port, timeout=30, proc=self.proc):
            raise SystemExit("mailtrail serve did not start: see " + self.log_path)
        self.api = Api(self.port)
        self.api.ok("PUT", "/v1/org", self.admin_token,
                    {"domains": [ORG_DOMAIN], "features": {"imap_sync": True}})

    def user(self, email, name):
        doc = self.api.ok("POST", "/v1/users", self.admin_token,
                          {"email": email, "name": name, "role": "user"})
        return doc["token"]

    def put_imap(self, token, dc, username, since, retry=False):
        body = {"host": dc.host, "port": dc.imap_port, "security": "starttls",
                "username": username, "password": dc.users[username], "since": since,
                "folders": ["INBOX"]}
        while True:
            status, doc, after = self.api.req("PUT", "/v1/imap", token, body)
            if status == 200:
                return doc
            if retry and status in (429, 503):
                time.sleep(float(after or 0.2) if (after or "").replace(".", "").isdigit()
                           else 0.2)
                continue
            raise SystemExit(f"PUT /v1/imap: {status} {doc!r:.500}")

    def metric(self, name, label):
        status, body, _ = self.api.req("GET", "/metrics", raw=True)
        for line in body.decode().splitlines():
            if line.startswith(name + "{") and label in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self):
        rig.stop_process(self.proc)


def inbox(doc):
    for f in doc.get("folders") or []:
        if f.get("role") == "inbox" or f.get("name", "").upper() == "INBOX":
            return f
    return {}


def rfc2822(t):
    g = time.gmtime(t)
    return "%s, %d %s %d %02d:%02d:%02d +0000" % (DAYS[g.tm_wday], g.tm_mday,
                                                   MONTHS[g.tm_mon - 1], g.tm_year, g.tm_hour,
                                                   g.tm_min, g.tm_sec)


def message(rnd, i, frm, to, cc=(), subject=None, mid=None):
    subject = subject or " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 9))).capitalize()
    date = rfc2822(1700000000 + i * 37)
    head = (f"Return-Path: <bounce-{i}@mx.example>\r\n"
            f"Received: from mx.example (mx.example [192.0.2.{i % 250 + 1}])\r\n"
            f"\tby imap.example with ESMTPS id {i:08x}; {date}\r\n"
            f"From: {frm}\r\nTo: {', '.join(to)}\r\n"
            + (f"Cc: {', '.join(cc)}\r\n" if cc else "") +
            f"Subject: {subject}\r\nDate: {date}\r\n"
            f"Message-ID: <{mid or '%x.%012x@mx.example' % (i, rnd.getrandbits(48))}>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n")
    size = rnd.randint(2048, 4096) - len(head)
    lines, n = [], 0
    while n < size:
        line = " ".join(rnd.choice(WORDS) for _ in range(12))
        lines.append(line)
        n += len(line) + 2
    return (head + "\r\n".join(lines) + "\r\n").encode()


def profile_addr(p, k):
    return f"cand{p}.{'abc'[k]}@cand{p % 97}.example"


# ---- bench/sync-initial ---------------------------------------------------------------------


def per_thread(pid, read):
    """Sums, per thread name of process `pid`, what `read` gives for one thread's /proc
    directory as (name, value); threads that ended meanwhile are skipped."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name, value = read(f"/proc/{pid}/task/{tid}")
        except OSError:
            continue
        out[name] = out.get(name, 0) + value
    return out


def thread_cpu(pid):
    """CPU seconds (user + system) per thread name of process `pid` ("mailtrail" is the loop)."""
    def read(task):
        stat = open(f"{task}/stat").read()
        ticks = sum(int(x) for x in stat.rsplit(")", 1)[1].split()[11:13])
        return stat[stat.index("(") + 1:stat.rindex(")")], ticks / os.sysconf("SC_CLK_TCK")
    return per_thread(pid, read)


def thread_switches(pid):
    """Context switches (voluntary + involuntary) per thread name of process `pid`."""
    def read(task):
        fields = dict(line.split(":", 1) for line in open(f"{task}/status").read().splitlines()
                      if ":" in line)
        return fields["Name"].strip(), (int(fields["voluntary_ctxt_switches"])
                                        + int(fields["nonvoluntary_ctxt_switches"]))
    return per_thread(pid, read)


def proc_io(pid):
    """The process's /proc/PID/io counters (wchar: bytes it passed to write calls)."""
    return {k: int(v) for k, v in (line.split(": ") for line in open(f"/proc/{pid}/io"))}


def machine_busy():
    """CPU seconds the whole machine spent busy (all cores, /proc/stat: not idle, not iowait)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def dovecot_cpu(dc):
    """CPU seconds of the rig's Dovecot `dc` by role: its process group alive now, per
    process name ("imap": the FETCH answers; "imap-login": the TLS proxy; auth, the master,
    ...), with what the master has reaped (an imap process that logged out, its cutime and
    cstime) counted as "imap"."""
    out = {}
    for pid in dovecot.group_members(dc.proc.pid):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = [int(x) for x in stat.rsplit(")", 1)[1].split()[11:15]]
        role = name if name in ("imap", "imap-login") else "other"
        out[role] = out.get(role, 0) + sum(fields[:2])
        if pid == dc.proc.pid:
            out["imap"] = out.get("imap", 0) + sum(fields[2:])
    return {k: v / os.sysconf("SC_CLK_TCK") for k, v in out.items()}


def cpu_delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items()}


def dovecot_text(d):
    """'4.52 (imap 2.71, imap-login 1.70, other 0.11)'"""
    return "%.2f (%s)" % (sum(d.values()), ", ".join(
        f"{k} {d.get(k, 0):.2f}" for k in ("imap", "imap-login", "other")))


def initial(work, mt_bin, raw_bin, messages, profiles, sync_count=3):
    rnd = random.Random(14)
    owner = "rita"
    owner_email = "rita@" + ORG_DOMAIN
    expected = [0]

    def corpus():
        for i in range(messages):
            # From: a profile address 60 % of the time, else a stranger; To: the mailbox owner,
            # sometimes with a second profile (or stranger) address; Cc now and then.
            matched = set()
            if rnd.random() < 0.6:
                p = rnd.randrange(profiles)
                matched.add(p)
                frm = f"Cand {p} <{profile_addr(p, rnd.randrange(3))}>"
            else:
                frm = f"Stranger {i} <stranger{i}@elsewhere{i % 31}.example>"
            to = [f"Rita <{owner_email}>"]
            cc = []
            r = rnd.random()
            if r < 0.3:
                p = rnd.randrange(profiles)
                matched.add(p)
                to.append(profile_addr(p, rnd.randrange(3)))
            elif r < 0.45:
                cc.append(f"other{i}@stranger.example")
            expected[0] += len(matched)
            yield message(rnd, i, frm, to, cc)

    certs = rig.make_certs(os.path.join(work, "certs"))
    password_file = os.path.join(work, "password")
    with open(password_file, "w") as f:
        f.write("rita-pw")
    with dovecot.dovecot(certs, os.path.join(work, "dovecot"), users={owner: "rita-pw"},
                         shm=True) as dc:
        t = time.monotonic()
        dc.fill_maildir(owner, "INBOX", corpus())
        fill_s = time.monotonic() - t
        log(f"filled {messages} messages in {fill_s:.1f} s ({expected[0]} activities expected)")

        raw_busy, raw_dovecot, raw_first, raw_setup = [], [], [], []

        def raw():
            busy, dc_cpu = machine_busy(), dovecot_cpu(dc)
            out = subprocess.run([raw_bin, "--host", dc.host, "--port", str(dc.imap_port),
                                  "--starttls", "--ca-file", certs.ca_cert, "--user", owner,
                                  "--password-file", password_file, "--sync-items", "--examine",
                                  "--chunk", "200", "--window", "3"],
                                 check=True, capture_output=True, text=True).stdout
            kv = dict(x.split("=") for x in out.split())
            if int(kv["fetched"]) != messages:
                raise SystemExit(f"raw client fetched {kv['fetched']} of {messages}")
            raw_first.append(float(kv["first_ms"]))
            raw_setup.append(float(kv["setup_ms"]))
            time.sleep(0.3)  # its imap process logs out and is reaped: the master counts it
            raw_busy.append(machine_busy() - busy)
            raw_dovecot.append(cpu_delta(dovecot_cpu(dc), dc_cpu))
            return float(kv["ms"])

        def sync(index):
            """One sync by a fresh mailtrail (its own data directory): its figures."""
            mt_work = os.path.join(work, f"mailtrail-{index}")
            os.makedirs(mt_work)
            mt = Mailtrail(mt_bin, mt_work, certs.ca_cert)
            r = {}
            try:
                token = mt.user(owner_email, "Rita Recruiter")
                rows = ["kind,name,emails"]
                for p in range(profiles):
                    rows.append(f"applicant,Cand {p},"
                                + ";".join(profile_addr(p, k) for k in range(3)))
                t = time.monotonic()
                doc = mt.api.ok("POST", "/v1/profiles/import", token,
                                ("\n".join(rows) + "\n").encode(), "text/csv")
                r["import_s"] = time.monotonic() - t
                log(f"imported {profiles} profiles in {r['import_s']:.1f} s: "
                    f"{json.dumps(doc)[:200]}")
                time.sleep(1)  # the import's (empty) backfill
                r["rss_before"] = rss_kib(mt.proc.pid)
                threads_before, dovecot_before = thread_cpu(mt.proc.pid), dovecot_cpu(dc)
                switches_before = thread_switches(mt.proc.pid)
                busy_before, io_before = machine_busy(), proc_io(mt.proc.pid)
                perf = None
                if os.environ.get("BENCH_PERF") and index == 1:  # a profile of the first sync
                    perf = subprocess.Popen(["perf", "record", "-q", "-F", "999",
                                             "--call-graph", "dwarf,16384", "-p",
                                             str(mt.proc.pid), "-o", os.environ["BENCH_PERF"]])
                    time.sleep(0.5)
                t0 = time.monotonic()
                mt.put_imap(token, dc, owner, "2000-01-01")
                r["put_s"] = time.monotonic() - t0
                last_print = t0
                while True:
                    f = inbox(mt.api.ok("GET", "/v1/imap", token))
                    if f.get("last_uid", 0) >= messages:
                        break
                    if time.monotonic() - t0 > 1800:
                        raise SystemExit(f"bench/sync-initial: not synced in 30 min: {f}")
                    if time.monotonic() - last_print > 10:
                        last_print = time.monotonic()
                        log(f"  {time.monotonic() - t0:.0f} s: last_uid {f.get('last_uid')}, "
                            f"messages_synced {f.get('messages_synced')}")
                    time.sleep(0.05)
                r["wall"] = time.monotonic() - t0
                if perf is not None:
                    perf.send_signal(signal.SIGINT)
                    perf.wait()
                r["threads"] = cpu_delta(thread_cpu(mt.proc.pid), threads_before)
                r["dovecot"] = cpu_delta(dovecot_cpu(dc), dovecot_before)
                r["switches"] = cpu_delta(thread_switches(mt.proc.pid), switches_before)
                r["busy"] = machine_busy() - busy_before
                r["io"] = cpu_delta(proc_io(mt.proc.pid), io_before)
                r["hwm"] = rss_kib(mt.proc.pid, "VmHWM")
                r["rss_after"] = rss_kib(mt.proc.pid)
                r["cpu"] = sum(int(x) for x in open(f"/proc/{mt.proc.pid}/stat").read()
                               .rsplit(")", 1)[1].split()[11:13]) / os.sysconf("SC_CLK_TCK")
                r["acts"] = subprocess.run(
                    ["sqlite3", "-readonly", os.path.join(mt.data, "mailtrail.db"),
                     "SELECT count(*) FROM activities"], capture_output=True,
                    text=True).stdout.strip()
            finally:
                mt.stop()
            # The next sync's machine without this one's files (~300 MB) in the page cache
            # and their write-back.
            shutil.rmtree(mt_work, ignore_errors=True)
            log(f"sync {index}: {messages / r['wall']:.0f} msg/s ({r['wall']:.2f} s)")
            return r

        t = time.monotonic()
        raw()  # warm-up: Dovecot's index and its cache of these fields for both clients
        log(f"warm-up raw fetch (Dovecot indexes and caches the fields): "
            f"{time.monotonic() - t:.1f} s")
        # Raw runs and syncs take turns, so that both sample the same minutes of the machine
        # (the raw client's rate moves by a third between minutes here).
        raw_ms = [raw()]
        syncs = []
        for i in range(1, sync_count + 1):
            raw_ms.append(raw())
            syncs.append(sync(i))
        raw_ms.append(raw())

    raw_med = statistics.median(raw_ms)
    mt_rates = [messages / r["wall"] for r in syncs]
    mt_rate = statistics.median(mt_rates)
    raw_rate = messages * 1000 / raw_med
    print(f"messages={messages} profiles={profiles}x3 addresses; STARTTLS on loopback, "
          f"Dovecot {dovecot_version()}, {os.cpu_count()} cores (filled in {fill_s:.1f} s, "
          f"profiles imported in {syncs[0]['import_s']:.1f} s)")
    print(f"raw client (same items, EXAMINE, UID FETCH chunks of 200, three in flight, as the sync): "
          f"{raw_rate:.0f} msg/s  (median of {len(raw_ms)}: "
          f"{', '.join('%.0f ms' % x for x in raw_ms)})")
    print(f"raw client: connect to EXAMINE done {', '.join('%.0f' % x for x in raw_setup[1:])} ms"
          f" (not in its time); first FETCH to first answer "
          f"{', '.join('%.0f' % x for x in raw_first[1:])} ms (in its time)")
    print(f"raw client runs: machine CPU busy (all cores), s: "
          f"{', '.join('%.1f' % x for x in raw_busy[1:])}; Dovecot's CPU, s: "
          f"{'; '.join(dovecot_text(x) for x in raw_dovecot[1:])}")
    print(f"mailtrail, PUT /v1/imap -> last chunk committed: {mt_rate:.0f} msg/s  (median of "
          f"{len(syncs)}: {', '.join('%.2f s' % r['wall'] for r in syncs)})")
    names = {"mailtrail": "loop", "mt-store": "store", "mt-work": "workers",
             "mt-checkpoint": "checkpoint"}
    for i, r in enumerate(syncs, 1):
        print(f"sync {i}: {messages / r['wall']:.0f} msg/s, {r['wall']:.2f} s wall (PUT "
              f"answered in {r['put_s'] * 1000:.0f} ms); mailtrail CPU {r['cpu']:.1f} s: " +
              ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in
                        sorted(r["threads"].items(), key=lambda kv: -kv[1]) if v >= 0.005))
        print(f"  context switches: " + ", ".join(
            f"{names.get(k, k)} {v}" for k, v in
            sorted(r["switches"].items(), key=lambda kv: -kv[1]) if v > 0))
        print(f"  machine CPU busy (all cores) {r['busy']:.1f} s; Dovecot's CPU "
              f"{dovecot_text(r['dovecot'])} s")
        print(f"  wrote {r['io']['wchar'] / 1e6:.0f} MB (write calls: the log, checkpoints, "
              f"sockets), {r['io']['wchar'] / messages / 1024:.1f} KiB a message; "
              f"activities committed: {r['acts']} (expected {expected[0]})")
        print(f"  peak RSS (VmHWM): {r['hwm'] / 1024:.1f} MiB  (VmRSS before PUT "
              f"{r['rss_before'] / 1024:.1f} MiB, after {r['rss_after'] / 1024:.1f} MiB)")
    print(f"mailtrail peak RSS (VmHWM): {max(r['hwm'] for r in syncs) / 1024:.1f} MiB")
    print(f"mailtrail / raw: {mt_rate / raw_rate:.2f}x  (medians; target >= 0.5)")
    for r in syncs:
        if str(r["acts"]) != str(expected[0]):
            raise SystemExit(f"bench/sync-initial: {r['acts']} activities, "
                             f"expected {expected[0]}")


def dovecot_version():
    try:
        return subprocess.run([dovecot.DOVECOT, "--version"], capture_output=True,
                              text=True).stdout.split()[0]
    except (OSError, IndexError):
        return "?"


# ---- bench/sync-push ------------------------------------------------------------------------


def push(work, mt_bin, appends, servers):
    """Runs the push measurement against each of `servers` ("dovecot", "cyrus") in turn, a
    fresh mailtrail each time, and prints a figure per server."""
    owner = "rita"
    certs = rig.make_certs(os.path.join(work, "certs"))
    print(f"appends={appends} at random intervals of 50-500 ms, STARTTLS, IDLE on INBOX; the feed "
          f"polled every 10 ms; {os.cpu_count()} cores")
    for server in servers:
        if server == "dovecot":
            ctx = dovecot.dovecot(certs, os.path.join(work, "dovecot"),
                                  users={owner: "rita-pw"}, shm=True)
            name = f"Dovecot {dovecot_version()}"
        elif server == "cyrus":
            ctx = cyrus.cyrus(certs, os.path.join(work, "cyrus"), users={owner: "rita-pw"})
            name = "Cyrus 3.6"
        else:
            raise SystemExit(f"bench/sync-push: unknown server {server}")
        with ctx as peer:
            lat, idle_lat = push_on(peer, server, work, mt_bin, certs, owner, appends)
        p50 = lat[len(lat) // 2]
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"{name}: APPEND OK -> activity in GET /v1/activities: min {lat[0]:.0f} ms, "
              f"p50 {p50:.0f} ms, p90 {lat[int(len(lat) * 0.9)]:.0f} ms, p99 {p99:.0f} ms, "
              f"max {lat[-1]:.0f} ms")
        if idle_lat:
            print(f"{name}: APPEND OK -> * EXISTS on a bare IDLE connection (the server's own "
                  f"delay, the bound): p50 {idle_lat[len(idle_lat) // 2]:.0f} ms, "
                  f"p99 {idle_lat[min(len(idle_lat) - 1, int(len(idle_lat) * 0.99))]:.0f} ms "
                  f"({len(idle_lat)} of {appends} seen)")
        print(f"{name}: p50 {p50:.0f} ms, p99 {p99:.0f} ms  (target p50 < 200 ms, p99 < 1 s)")


def push_on(peer, server, work, mt_bin, certs, owner, appends):
    """One account syncing `peer`'s INBOX; returns the sorted latencies (ms) from each APPEND's
    OK to its activity in the feed, and to the bare IDLE connection's EXISTS."""
    owner_email = owner + "@" + ORG_DOMAIN
    rnd = random.Random(14)
    peer.append(owner, "INBOX", message(rnd, 0, "someone@elsewhere.example", [owner_email]))
    shutil.rmtree(os.path.join(work, "data"), ignore_errors=True)
    mt = Mailtrail(mt_bin, work, certs.ca_cert)
    try:
        token = mt.user(owner_email, "Rita Recruiter")
        rows = ["kind,name,emails"] + [f"applicant,Push {p},{profile_addr(p, 0)}"
                                       for p in range(appends)]
        mt.api.ok("POST", "/v1/profiles/import", token, ("\n".join(rows) + "\n").encode(),
                  "text/csv")
        mt.put_imap(token, peer, owner, "2000-01-01")
        deadline = time.monotonic() + 60
        while not mt.api.ok("GET", "/v1/imap", token).get("last_sync_at"):
            if time.monotonic() > deadline:
                raise SystemExit("bench/sync-push: the first pass did not finish")
            time.sleep(0.05)
        while mt.metric("mailtrail_imap_sync_sessions", 'state="watching"') < 1:
            if time.monotonic() > deadline:
                raise SystemExit("bench/sync-push: the session is not watching")
            time.sleep(0.05)
        time.sleep(0.5)
        # The feed's end: poll from there.
        since = None
        while True:
            path = "/v1/activities?limit=1000" + (f"&since={since}" if since else "")
            doc = mt.api.ok("GET", path, token)
            if not doc["activities"]:
                break
            since = doc["next_cursor"]
        seen = {}
        ok_at = {}
        done = threading.Event()
        errors = []

        def poller(cursor):
            api = Api(mt.port)
            try:
                while len(seen) < appends and not done.is_set():
                    path = "/v1/activities?limit=1000" + (f"&since={cursor}" if cursor else "")
                    doc = api.ok("GET", path, token)
                    now = time.monotonic()
                    for a in doc["activities"]:
                        seen.setdefault(a.get("subject"), now)
                    if doc["activities"]:
                        cursor = doc["next_cursor"]
                    else:
                        time.sleep(0.01)
            except BaseException as e:  # noqa: BLE001 - reported by the main thread
                errors.append(repr(e))

        # The peer: a bare IDLE connection of our own on the same INBOX; when its
        # "* N EXISTS" arrives is the bound the server sets (Dovecot waits before it tells).
        exists_at = {}
        bare = peer.connect()
        try:
            bare.login(owner, peer.users[owner])
            bare.select("INBOX", readonly=True)
            sock, fh = bare.sock, bare.file
            sock.sendall(b"c IDLE\r\n")
            while not fh.readline().startswith(b"+"):
                pass

            def idler():
                try:
                    for line in fh:
                        if line.startswith(b"* ") and line.rstrip().endswith(b" EXISTS"):
                            now, n = time.monotonic(), int(line.split()[1])
                            for k in range(2, n + 1):  # one EXISTS may announce several
                                exists_at.setdefault(k, now)
                except (OSError, ValueError):
                    pass  # closed at the end

            threading.Thread(target=idler, daemon=True).start()
            th = threading.Thread(target=poller, args=(since,), daemon=True)
            th.start()
            order = []
            with peer.connect(owner) as c:
                for i in range(appends):
                    time.sleep(rnd.uniform(0.05, 0.5))
                    subject = f"Push {i} {rnd.getrandbits(32):08x}"
                    raw = message(rnd, i + 1, f"Push {i} <{profile_addr(i, 0)}>",
                                  [owner_email], subject=subject,
                                  mid=f"push{i}.{rnd.getrandbits(48):x}@bench.example")
                    typ, data = c.append("INBOX", None, None, raw)
                    ok_at[subject] = time.monotonic()
                    order.append(subject)
                    if typ != "OK":
                        raise SystemExit(f"APPEND: {typ} {data}")
            th.join(30)
            done.set()
        finally:
            try:  # no LOGOUT: the connection is in IDLE, read by idler()
                bare.sock.shutdown(socket.SHUT_RDWR)
                bare.shutdown()
            except OSError:
                pass
        if errors:
            raise SystemExit("bench/sync-push: poller: " + errors[0])
    finally:
        mt.stop()
    lat = sorted(max(0.0, seen[s] - t) * 1000 for s, t in ok_at.items() if s in seen)
    missing = appends - len(lat)
    if missing:
        raise SystemExit(f"bench/sync-push: {server}: {missing} of {appends} never showed up "
                         f"in the feed")
    # EXISTS n is the (n-1)th append (one message was there before)
    idle_lat = sorted(max(0.0, exists_at[i + 2] - ok_at[s]) * 1000 for i, s in enumerate(order)
                      if i + 2 in exists_at)
    return lat, idle_lat


# ---- bench/sync-idle ------------------------------------------------------------------------


def idle(work, mt_bin, accounts, concurrency=4):
    certs = rig.make_certs(os.path.join(work, "certs"))
    users = {f"u{i}": f"pw-{i}" for i in range(accounts)}
    per_proc = 100
    procs = accounts // per_proc + 10
    with dovecot.dovecot(certs, os.path.join(work, "dovecot"), users=users, shm=True,
                         imap_process_limit=procs, imap_client_limit=per_proc,
                         login_client_limit=2 * accounts + 100,
                         extra_conf=("default_client_limit = %d\nservice imap {\n  service_count = 0\n}\n"
                                     % (4 * accounts + 1000))) as dc:
        mt = Mailtrail(mt_bin, work, certs.ca_cert)
        try:
            t = time.monotonic()
            tokens = [mt.user(f"u{i}@{ORG_DOMAIN}", f"User {i}") for i in range(accounts)]
            log(f"{accounts} users in {time.monotonic() - t:.1f} s")
            # A baseline after the same kind of API traffic: one account saved and removed.
            mt.put_imap(tokens[0], dc, "u0", "2020-01-01", retry=True)
            mt.api.ok("DELETE", "/v1/imap", tokens[0])
            time.sleep(1)
            before = rss_kib(mt.proc.pid)
            t = time.monotonic()
            nxt = [0]
            lock = threading.Lock()
            errors = []

            def saver():
                try:
                    while True:
                        with lock:
                            i = nxt[0]
                            nxt[0] += 1
                        if i >= accounts:
                            return
                        mt.put_imap(tokens[i], dc, f"u{i}", "2020-01-01", retry=True)
                except BaseException as e:  # noqa: BLE001
                    errors.append(repr(e))

            ths = [threading.Thread(target=saver) for _ in range(concurrency)]
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            if errors:
                raise SystemExit("bench/sync-idle: " + errors[0])
            save_s = time.monotonic() - t
            log(f"{accounts} accounts saved in {save_s:.1f} s")
            deadline = time.monotonic() + 300
            while True:
                watching = mt.metric("mailtrail_imap_sync_sessions", 'state="watching"')
                if watching >= accounts:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench/sync-idle: {watching:.0f} of {accounts} watching")
                time.sleep(0.2)
            idle_s = time.monotonic() - t
            time.sleep(2)
            after = rss_kib(mt.proc.pid)
            hwm = rss_kib(mt.proc.pid, "VmHWM")
            if os.environ.get("BENCH_HOLD"):
                log(f"holding: mailtrail pid {mt.proc.pid}, before {before} KiB; touch {work}/release")
                while not os.path.exists(os.path.join(work, "release")):
                    time.sleep(0.5)
            fds = len(os.listdir(f"/proc/{mt.proc.pid}/fd"))
            # the IDLE connections at Dovecot: one imap session per account
            who = subprocess.run(["doveadm", "-c", dc.conf, "who", "-1"], capture_output=True,
                                 text=True).stdout if hasattr(dc, "conf") else ""
        finally:
            mt.stop()
    per = (after - before) / accounts
    print(f"accounts={accounts}, STARTTLS, one IDLE connection each (INBOX only); "
          f"{os.cpu_count()} cores; saved in {save_s:.1f} s, all watching after {idle_s:.1f} s; "
          f"mailtrail fds {fds}" + (f", Dovecot sessions {len(who.splitlines()) - 1}" if who
                                    else ""))
    print(f"mailtrail VmRSS: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with "
          f"{accounts} idle accounts (VmHWM {hwm / 1024:.1f} MiB)")
    print(f"RSS per idle account: {per:.1f} KiB  (target <= 32 KiB)")


def main():
    mode, work, mt_bin = sys.argv[1], sys.argv[2], sys.argv[3]
    rig.install_signal_cleanup()
    if mode == "initial":
        initial(work, mt_bin, sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
                int(os.environ.get("BENCH_SYNCS", "3")))
    elif mode == "push":
        push(work, mt_bin, int(sys.argv[4]), sys.argv[5].split(",") if len(sys.argv) > 5
             else ["dovecot", "cyrus"])
    elif mode == "idle":
        idle(work, mt_bin, int(sys.argv[4]))
    else:
        raise SystemExit("mode: initial, push or idle")


if __name__ == "__main__":
    main()
