#!/usr/bin/python3
"""The activity feed under load (DESIGN.md §2 `GET /v1/activities?since=CURSOR`; docs/api.md
"Activities"): a CRM follows the feed while activities are being written.

  /usr/bin/python3 tests/integration/test_feed.py --bin-dir BUILD [--messages N] [--recipients N]
                                                  [--writers N] [--readers N]

One org, 1,000 profiles (CSV import). WRITERS threads (one recruiter each) log MESSAGES add-in
messages of RECIPIENTS profile recipients each (default 200 x 50 = 10,000 activities), while
READERS threads follow the feed from the start (no `since`), each following next_cursor,
sleeping briefly on an empty page, until the writers are done and a final empty page is read.
Checks, per reader: every activity id the writers were told about seen exactly once, nothing
else, next_cursor strictly increasing over non-empty pages (an empty page returns the `since`
it was given), and — the feed being in commit order — every reader saw the very same sequence.
Prints the rates (activities/s written, pages and activities/s read).

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed. Standard
library only (Debian's /usr/bin/python3).
"""

import argparse
import contextlib
import os
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

PROFILES = 1000
DEADLINE_S = 50  # the whole load phase; the test should end well within a minute


def message(frm, recipients, i):
    to = ", ".join(f"P{n} <p{n}@feed-candidates.example>" for n in recipients)
    return ("\r\n".join([
        f"From: Writer <{frm}>",
        f"To: {to}",
        f"Subject: Feed message {i}",
        "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(time.time() - 60)),
        f"Message-ID: <feed.{i}.{uuid.uuid4().hex}@test.mailtrail.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"Message number {i} to {len(recipients)} candidates.",
        "",
    ])).encode()


def case_setup(svc, args):
    org = svc.init("Feed Org", "admin@feed-staffing.example")
    svc.users["admin"] = {"id": org["user_id"], "token": org["token"]}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"), {"domains": ["feed-staffing.example"]}), 200)
    for w in range(args.writers):
        doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                             {"email": f"writer{w}@feed-staffing.example", "name": f"Writer {w}"}), 201)
        svc.users[f"w{w}"] = {"id": doc["id"], "token": doc["token"],
                              "email": f"writer{w}@feed-staffing.example"}
    csv = "kind,name,emails\n" + "".join(
        f"applicant,P{n},p{n}@feed-candidates.example\n" for n in range(PROFILES))
    r = svc.req("POST", "/v1/profiles/import", svc.tok("admin"), raw=csv.encode(),
                content_type="text/csv")
    doc = expect(r, 200)
    assert doc["imported"] == PROFILES and doc["rejected"] == [], r.show()
    # The feed is empty before the load (nothing logged yet).
    doc = expect(svc.req("GET", "/v1/activities", svc.tok("admin")), 200)
    assert doc["activities"] == [] and doc["next_cursor"] is not None, doc


class Reader(threading.Thread):
    def __init__(self, svc, token, limit, writers_done, stop):
        super().__init__(daemon=True)
        self.svc = svc
        self.token = token
        self.limit = limit
        self.writers_done = writers_done
        self.stop = stop
        self.ids = []        # in order of arrival
        self.cursors = []    # next_cursor of each non-empty page
        self.pages = 0
        self.empty_pages = 0
        self.errors = []

    def run(self):
        since = None
        try:
            while not self.stop.is_set():
                done = self.writers_done.is_set()  # read before the request: a page fetched
                path = f"/v1/activities?limit={self.limit}"  # after this is final if empty
                if since is not None:
                    path += f"&since={since}"
                r = self.svc.req("GET", path, self.token, timeout=30)
                self.pages += 1
                if r.status != 200 or not isinstance(r.json, dict):
                    self.errors.append("feed page" + r.show())
                    return
                acts = r.json.get("activities")
                cur = r.json.get("next_cursor")
                if not isinstance(acts, list) or cur is None:
                    self.errors.append("bad feed page" + r.show())
                    return
                if not acts:
                    self.empty_pages += 1
                    if since is not None and str(cur) != str(since):
                        self.errors.append(f"an empty page moved the cursor {since} -> {cur}")
                        return
                    if done:
                        return
                    time.sleep(0.02)
                    continue
                if len(acts) > self.limit:
                    self.errors.append(f"{len(acts)} activities on a page of limit {self.limit}")
                    return
                self.ids.extend(a["id"] for a in acts)
                self.cursors.append(cur)
                since = cur
        except Exception as e:  # noqa: BLE001 - reported as the reader's failure
            self.errors.append(f"{type(e).__name__}: {e}")


def case_feed_under_load(svc, args):
    writers_done = threading.Event()
    stop = threading.Event()
    readers = [Reader(svc, svc.tok("admin"), limit, writers_done, stop)
               for limit in ([100, 257, 1000] * args.readers)[:args.readers]]
    expected = {}   # activity id -> message index
    write_errors = []
    lock = threading.Lock()
    counter = iter(range(args.messages))

    def writer(w):
        token = svc.tok(f"w{w}")
        frm = svc.users[f"w{w}"]["email"]
        while True:
            with lock:
                i = next(counter, None)
            if i is None or stop.is_set():
                return
            start = (i * args.recipients) % PROFILES
            recipients = [(start + k) % PROFILES for k in range(args.recipients)]
            try:
                r = svc.req("POST", "/v1/addin/log", token, raw=message(frm, recipients, i),
                            content_type="message/rfc822", timeout=30)
            except OSError as e:
                with lock:
                    write_errors.append(f"message {i}: {e!r}")
                return
            ok = (r.status == 200 and isinstance(r.json, dict) and r.json.get("outcome") == "logged"
                  and r.json.get("created") == args.recipients
                  and len(r.json.get("activities", [])) == args.recipients)
            with lock:
                if not ok:
                    write_errors.append(f"message {i}" + r.show())
                    return
                for a in r.json["activities"]:
                    if a["type"] != "email_sent" or a["id"] in expected:
                        write_errors.append(f"message {i}: unexpected activity {a}")
                    expected[a["id"]] = i

    for rd in readers:
        rd.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(args.writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, DEADLINE_S - (time.monotonic() - t0)))
    write_s = time.monotonic() - t0
    hung = any(t.is_alive() for t in threads)
    writers_done.set()
    for rd in readers:
        rd.join(max(1.0, DEADLINE_S + 5 - (time.monotonic() - t0)))
    read_s = time.monotonic() - t0
    stop.set()
    assert not hung, f"the writers did not finish within {DEADLINE_S} s ({len(expected)} activities)"
    assert not any(rd.is_alive() for rd in readers), "a reader did not reach the end of the feed"
    assert not write_errors, f"{len(write_errors)} write errors:\n    " + "\n    ".join(write_errors[:5])
    total = args.messages * args.recipients
    assert len(expected) == total, f"the writers got {len(expected)} activity ids, expected {total}"
    print(f"     written: {total} activities in {args.messages} messages by {args.writers} writers "
          f"in {write_s:.2f} s = {total / write_s:.0f} activities/s, "
          f"{args.messages / write_s:.0f} messages/s", flush=True)
    problems = []
    for n, rd in enumerate(readers):
        print(f"     reader {n} (limit {rd.limit}): {len(rd.ids)} activities, {rd.pages} pages "
              f"({rd.empty_pages} empty) in {read_s:.2f} s = {rd.pages / read_s:.0f} pages/s, "
              f"{len(rd.ids) / read_s:.0f} activities/s", flush=True)
        tag = f"reader {n} (limit {rd.limit})"
        problems += [f"{tag}: {e}" for e in rd.errors]
        seen = set()
        dups = [i for i in rd.ids if i in seen or seen.add(i)]
        if dups:
            problems.append(f"{tag}: {len(dups)} ids seen twice, e.g. {dups[:3]}")
        missing = set(expected) - seen
        if missing:
            msgs = sorted({expected[m] for m in missing})
            problems.append(f"{tag}: {len(missing)} activities never seen (of messages {msgs[:10]}...)")
        extra = seen - set(expected)
        if extra:
            problems.append(f"{tag}: {len(extra)} unknown activities, e.g. {sorted(extra)[:3]}")
        nums = []
        for c in rd.cursors:
            try:
                nums.append(int(c))
            except (TypeError, ValueError):
                problems.append(f"{tag}: next_cursor {c!r} is not a number")
                break
        else:
            back = [(a, b) for a, b in zip(nums, nums[1:]) if b <= a]
            if back:
                problems.append(f"{tag}: next_cursor not strictly increasing: {back[:5]}")
    # One commit order: every reader saw the same sequence.
    for n, rd in enumerate(readers[1:], 1):
        if rd.ids != readers[0].ids:
            k = next((j for j, (x, y) in enumerate(zip(rd.ids, readers[0].ids)) if x != y),
                     min(len(rd.ids), len(readers[0].ids)))
            problems.append(f"reader {n} saw another order than reader 0 from position {k}")
    # Informational: a message's activities are written by one job, so they usually sit
    # together in the feed (not a promise of the API).
    if readers and readers[0].ids:
        order = [expected.get(i) for i in readers[0].ids]
        runs = sum(1 for j in range(len(order)) if j == 0 or order[j] != order[j - 1])
        print(f"     (the {args.messages} messages form {runs} runs in the feed)", flush=True)
    assert not problems, f"{len(problems)} problems:\n    " + "\n    ".join(problems)
    # And from the start again, in one go: the same sequence.
    again, cursor = [], None
    while True:
        path = "/v1/activities?limit=1000" + (f"&since={cursor}" if cursor is not None else "")
        doc = expect(svc.req("GET", path, svc.tok("admin")), 200)
        if not doc["activities"]:
            break
        again += [a["id"] for a in doc["activities"]]
        cursor = doc["next_cursor"]
    assert again == readers[0].ids, "reading the feed again gives another sequence"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--recipients", type=int, default=50)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--readers", type=int, default=3)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    a = ap.parse_args()
    assert 1 <= a.recipients <= PROFILES and 1 <= a.writers <= 16 and a.readers >= 1
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    mailtrail = os.path.join(a.bin_dir, "mailtrail")
    if not os.access(mailtrail, os.X_OK):
        print(f"FAIL setup: {mailtrail} is not built")
        print("0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-feed-") as tmp, contextlib.ExitStack() as stack:
        svc = Service(a.bin_dir, tmp)
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup_org_writers_profiles", case_setup, svc, a)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail())
            return r.exit_code()
        r.run(f"feed_{a.messages * a.recipients}_activities_{a.writers}_writers_{a.readers}_readers",
              case_feed_under_load, svc, a)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
