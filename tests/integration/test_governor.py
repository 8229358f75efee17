#!/usr/bin/python3
"""The send governor end to end (DESIGN.md §1 SMTP account limits, Relay; docs/sending.md
"Send limits").

  /usr/bin/python3 tests/integration/test_governor.py --bin-dir BUILD [--only NAME]... [--keep]

One store, one server with the relay pointed at the rig's auth sink (relay_user_limits =
3/hour) and throttle_pause = 2s; the same sink as the custom SMTP of most users, and a second
sink that refuses on demand (--fail-file) for the quota case. Cases:

  hour_100_of_150          limit 100/hour, 150 one-recipient messages: the sink accepts exactly
                           100 recipients of the account, the confirmation mail among them, so
                           99 messages are sent and 51 held; GET /v1/smtp shows used 100 and a
                           next_slot_at; nothing more goes out a few seconds later
  over_window_422          a 2-recipient message under 1/hour: 422 with a reason naming the
                           window; a 1-recipient one is accepted
  relay_user_limits        the relay's per-user limit (3/hour): 3 of 5 messages go, 2 are held;
                           4 recipients at once: 422
  quota_pauses             the sink answers RCPT with 550 5.4.5: the messages are held (never
                           failed), the account stays connected; once the sink accepts again,
                           they go after the pause (seconds)
  minute_20_hour_35        limits 20/minute and 35/hour, 60 messages: from the sink's RCPT
                           times, no rolling minute has more than 20 of the account's recipients
                           and no hour more than 35 (confirmation included); after the second
                           minute 34 are sent and 26 held (takes a little over a minute)
  metrics                  mailtrail_governor_holds_total by window

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import contextlib
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

ORG_DOMAIN = "gov.example"
SINK_USER = "sender@gov.example"
SINK_PASSWORD = "s3cret-pw-governor"
RELAY_FROM = "bounces@relay.example"
PAUSE_S = 2


def smtp_put(svc, who, sink, limits=None):
    body = {"host": "127.0.0.1", "port": sink.port_starttls, "security": "starttls",
            "username": SINK_USER, "password": SINK_PASSWORD, "from": svc.users[who]["email"],
            "accept_disclaimer": True}
    if limits is not None:
        body["limits"] = limits
    doc = expect(svc.req("PUT", "/v1/smtp", svc.tok(who), body), 200)
    assert doc["state"] == "connected", doc
    return doc


def add_user(svc, who):
    addr = f"{who}@{ORG_DOMAIN}"
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": addr, "name": who.title(), "role": "user"}), 201)
    svc.users[who] = {"id": doc["id"], "token": doc["token"], "email": addr}


def post(svc, who, to, subject, status=202):
    r = svc.req("POST", "/v1/messages", svc.tok(who),
                {"to": to if isinstance(to, list) else [to], "subject": subject, "text": "x"})
    return expect(r, status)


def states(svc, who, ids):
    out = {}
    for mid in ids:
        doc = expect(svc.req("GET", f"/v1/messages/{mid}", svc.tok(who)), 200)
        out[mid] = doc
    return out


def count_states(docs):
    c = {}
    for d in docs.values():
        c[d["state"]] = c.get(d["state"], 0) + 1
    return c


def wait_counts(svc, who, ids, want, timeout):
    """Polls the messages until their state counts equal `want` (a dict)."""
    deadline = time.monotonic() + timeout
    docs = {}
    while time.monotonic() < deadline:
        docs = states(svc, who, ids)
        if count_states(docs) == want:
            return docs
        time.sleep(0.5)
    raise AssertionError(f"states {count_states(docs)}, want {want} after {timeout:g} s")


def sink_rcpts(sink, sender=None, domain=None):
    """[(time, address)] of the recipients the sink accepted, from its .json files."""
    out = []
    for m in sink.messages():
        if sender is not None and m["mail_from"] != sender:
            continue
        for addr, t in zip(m["rcpt_tos"], m["rcpt_times"]):
            if domain is None or addr.endswith("@" + domain):
                out.append((t, addr))
    out.sort()
    return out


def usage_of(svc, who):
    doc = expect(svc.req("GET", "/v1/smtp", svc.tok(who)), 200)
    return {u["window"]: u for u in doc["usage"]}, doc


# --- cases ----------------------------------------------------------------------------------

def case_setup(svc, sink, qsink):
    a = svc.init("Governor Org", "admin@" + ORG_DOMAIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"),
                   {"domains": [ORG_DOMAIN], "features": {"custom_smtp": True}}), 200)
    for who in ("hr", "mn", "one", "rl", "q"):
        add_user(svc, who)


def case_hour(svc, sink, qsink):
    me = svc.users["hr"]["email"]
    smtp_put(svc, "hr", sink, [{"limit": 100, "window": "hour"}])
    usage, _ = usage_of(svc, "hr")
    assert usage["hour"]["used"] == 1, f"the confirmation mail is not counted: {usage}"
    ids = [post(svc, "hr", f"c{i}@hour.example", f"hour {i}")["id"] for i in range(150)]
    docs = wait_counts(svc, "hr", ids, {"sent": 99, "held": 51}, timeout=60)
    time.sleep(3)  # nothing more may go: the window stays full for an hour
    docs = states(svc, "hr", ids)
    assert count_states(docs) == {"sent": 99, "held": 51}, count_states(docs)
    got = sink_rcpts(sink, sender=me)
    assert len(got) == 100, f"the sink accepted {len(got)} recipients of the account, want 100"
    assert sum(1 for _, a in got if a == me) == 1, "the confirmation is not one of the 100"
    held = [d for d in docs.values() if d["state"] == "held"]
    assert all(d["recipients"][0]["state"] == "pending" for d in held), held[0]
    assert all(d.get("next_attempt_at") for d in held), held[0]
    usage, doc = usage_of(svc, "hr")
    assert doc["state"] == "connected", doc
    u = usage["hour"]
    assert u["limit"] == 100 and u["used"] == 100, usage
    assert isinstance(u["next_slot_at"], str) and u["next_slot_at"].endswith("Z"), usage
    # The oldest slot (the confirmation) leaves the window an hour after it was sent.
    first = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(got[0][0] + 3600))
    last = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(got[0][0] + 3600 + 5))
    assert first <= u["next_slot_at"] <= last, f"next_slot_at {u['next_slot_at']}, the first send {got[0]}"


def case_over_window(svc, sink, qsink):
    smtp_put(svc, "one", sink, [{"limit": 1, "window": "hour"}, {"limit": 1000, "window": "day"}])
    r = svc.req("POST", "/v1/messages", svc.tok("one"),
                {"to": ["a@one.example", "b@one.example"], "subject": "two", "text": "x"})
    expect(r, 422)
    msg = r.err()[1]
    assert "2 recipients" in msg and "1 per hour" in msg, r.show()
    # One recipient is fine (it waits for its slot: the confirmation took the hour's only one).
    doc = post(svc, "one", "a@one.example", "one")
    time.sleep(2)
    d = expect(svc.req("GET", f"/v1/messages/{doc['id']}", svc.tok("one")), 200)
    assert d["state"] == "held", d


def case_relay(svc, sink, qsink):
    # rl has no custom SMTP: its mail takes the relay, limited to 3 per hour per user.
    ids = [post(svc, "rl", f"r{i}@relay-limit.example", f"relay {i}")["id"] for i in range(5)]
    wait_counts(svc, "rl", ids, {"sent": 3, "held": 2}, timeout=30)
    time.sleep(2)
    assert count_states(states(svc, "rl", ids)) == {"sent": 3, "held": 2}
    got = sink_rcpts(sink, sender=RELAY_FROM, domain="relay-limit.example")
    assert len(got) == 3, got
    r = svc.req("POST", "/v1/messages", svc.tok("rl"),
                {"to": [f"x{i}@relay-limit.example" for i in range(4)], "subject": "4", "text": "x"})
    expect(r, 422)
    assert "relay" in r.err()[1] and "3 per hour" in r.err()[1], r.show()


def case_quota(svc, sink, qsink, fail_file):
    smtp_put(svc, "q", qsink)
    with open(fail_file, "w") as f:
        f.write("rcpt 550 5.4.5 Daily user sending limit exceeded\n")
    t0 = time.time()
    ids = [post(svc, "q", f"q{i}@quota.example", f"quota {i}")["id"] for i in range(3)]
    docs = wait_counts(svc, "q", ids, {"held": 3}, timeout=20)
    for d in docs.values():
        assert d["recipients"][0]["state"] == "pending", d
    # The ones the sink refused carry its reply; the others were held before they were tried.
    assert any("5.4.5" in (d.get("last_error") or "") for d in docs.values()), docs
    doc = expect(svc.req("GET", "/v1/smtp", svc.tok("q")), 200)
    assert doc["state"] == "connected", f"a quota reply disconnected the account: {doc}"
    # Still refusing: they stay held through another pause (longer: the back-off doubles),
    # and never fail.
    time.sleep(PAUSE_S + 2)
    docs = states(svc, "q", ids)
    assert all(d["state"] in ("held", "queued", "sending") for d in docs.values()), count_states(docs)
    assert not any(m for m in qsink.messages() if m["mail_from"] == svc.users["q"]["email"]
                   and any(a.endswith("@quota.example") for a in m["rcpt_tos"]))
    os.unlink(fail_file)
    t1 = time.time()
    docs = wait_counts(svc, "q", ids, {"sent": 3}, timeout=4 * PAUSE_S + 10)
    took = time.time() - t1
    print(f"     held {t1 - t0:.1f}s, sent {took:.1f}s after the sink accepted again", flush=True)
    doc = expect(svc.req("GET", "/v1/smtp", svc.tok("q")), 200)
    assert doc["state"] == "connected", doc


def case_minute_hour(svc, sink, qsink):
    me = svc.users["mn"]["email"]
    smtp_put(svc, "mn", sink, [{"limit": 20, "window": "minute"}, {"limit": 35, "window": "hour"}])
    t0 = time.time()
    ids = [post(svc, "mn", f"m{i}@minute.example", f"minute {i}")["id"] for i in range(60)]
    # The first minute: 19 (the confirmation took one slot); the second: 15 (the hour's 35).
    wait_counts(svc, "mn", ids, {"sent": 19, "held": 41}, timeout=30)
    docs = wait_counts(svc, "mn", ids, {"sent": 34, "held": 26}, timeout=90)
    second = time.time() - t0
    time.sleep(3)
    assert count_states(states(svc, "mn", ids)) == {"sent": 34, "held": 26}
    times = [t for t, _ in sink_rcpts(sink, sender=me)]
    assert len(times) == 35, f"{len(times)} recipients accepted, want 35"
    for i, t in enumerate(times):
        in_minute = sum(1 for u in times[i:] if u < t + 60)
        assert in_minute <= 20, f"{in_minute} recipients within 60 s of {t:.3f}"
    assert times[-1] - times[0] < 3600
    gap = times[20] - times[0]
    assert gap >= 60, f"the 21st recipient came {gap:.3f} s after the first"
    print(f"     34 sent after {second:.1f}s; 21st recipient {gap:.2f}s after the first", flush=True)
    del docs


def metric_values(text, name):
    out = []
    for line in text.splitlines():
        m = re.match(r"^" + re.escape(name) + r"(?:\{([^}]*)\})?\s+(\S+)", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
            out.append((labels, float(m.group(2))))
    return out


def case_metrics(svc, sink, qsink):
    text = svc.req("GET", "/metrics").text
    holds = {lab.get("window"): v for lab, v in metric_values(text, "mailtrail_governor_holds_total")}
    assert holds.get("hour", 0) >= 51 + 2 + 1, holds
    assert holds.get("minute", 0) >= 1, holds
    assert holds.get("pause", 0) >= 3, holds
    waits = {lab.get("window"): v
             for lab, v in metric_values(text, "mailtrail_governor_wait_seconds_total")}
    assert waits.get("hour", 0) > 0, waits
    for lab, _ in metric_values(text, "mailtrail_governor_holds_total"):
        assert set(lab) == {"window"}, f"a governor metric has more labels than the window: {lab}"


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
    t0 = time.monotonic()
    with rig.tempdir("mailtrail-governor-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        sink = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "sink"), user=SINK_USER,
                                                 password=SINK_PASSWORD, tls=False, plain=False))
        fail_file = os.path.join(tmp, "quota-fail")
        qsink = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "qsink"),
                                                  user=SINK_USER, password=SINK_PASSWORD,
                                                  tls=False, plain=False, fail_file=fail_file))
        pw = os.path.join(tmp, "relay-password")
        with open(pw, "w") as f:
            f.write(SINK_PASSWORD + "\n")
        os.chmod(pw, 0o600)
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_RELAY": f"smtp://{SINK_USER}@127.0.0.1:{sink.port_starttls}",
            "MAILTRAIL_RELAY_PASSWORD_FILE": pw,
            "MAILTRAIL_RELAY_FROM": RELAY_FROM,
            "MAILTRAIL_RELAY_USER_LIMITS": "3/hour",
            "MAILTRAIL_THROTTLE_PAUSE": f"{PAUSE_S}s",
            "MAILTRAIL_LOG_LEVEL": "info",
        })
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, sink, qsink)
        r.only = only
        if r.failed:
            print("setup failed; the other cases need it\n" + svc.log_tail())
            return r.exit_code()
        cases = [
            ("hour_100_of_150", case_hour),
            ("over_window_422", case_over_window),
            ("relay_user_limits", case_relay),
            ("quota_pauses", lambda s, k, q: case_quota(s, k, q, fail_file)),
            ("minute_20_hour_35", case_minute_hour),
            ("metrics", case_metrics),
        ]
        for name, fn in cases:
            r.run(name, fn, svc, sink, qsink)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        if a.keep:
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
