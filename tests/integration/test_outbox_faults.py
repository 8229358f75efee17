#!/usr/bin/python3
"""The outbox against a faulty SMTP server: the "fault peer" acceptance (DESIGN.md §1 Message:
temporary failures retried, a temporarily refused recipient retried alone, permanent ones failed
at once with the reply; retry_expiry).

  /usr/bin/python3 tests/integration/test_outbox_faults.py --bin-dir BUILD [--only NAME]...

Each case is one recruiter whose custom SMTP (security none, auth none; MAILTRAIL_NO_AUTH_HOSTS=
127.0.0.1) is a scripted peer (tests/peer/peer.py) of its own: the script's first connection
block answers the live check of PUT /v1/smtp, the next blocks are the send attempts. The cases
run at the same time (one account each, so one account's 30 s cool-down after a failed session
does not add up), with MAILTRAIL_TEST_RETRY_BASE_S=1 (retries 1, 4, 9... s after an attempt, plus
the second the sender adds so that a retry is never early: with whole seconds and no such margin,
a 1 s retry came at once when the attempt ended late in its second, and the watcher missed the
queued state between) and
MAILTRAIL_RETRY_EXPIRY=1m (the minimum). A watcher polls GET /v1/messages/{id} every 50 ms and
records every state it sees.

  banner_421        421 at the banner -> held (a throttle pauses the account, throttle_pause
                    = 1s here), attempts >= 1, last_class throttle; after the pause the next
                    session delivers -> sent
  rcpt_452_one      452 for one of two recipients -> the other is sent; the next attempt
                    carries only the refused one (the script allows no other RCPT) -> sent
  data_451          451 "try again later" after the dot (a throttle: held for the pause) ->
                    queued, then sent
  drop_after_dot    the connection dropped after the dot -> queued (never "sent" from that
                    attempt), then sent
  rcpt_554          554 at RCPT -> failed at once, class resp, the reply kept
  data_554          554 after the dot -> failed at once, class resp, the reply kept
  retry_expiry      451 at RCPT every time -> failed "retry time ran out" about 60 s after the
                    first attempt
  stall_timeout     no reply after the dot -> the reply timeout (MAILTRAIL_TEST_REPLY_TIMEOUT_MS=
                    2000 instead of RFC 5321's 10 minutes) ends the attempt: queued (never
                    "sent" from it), then sent

Every message must end final; "sending" must never last longer than the cool-down (+ slack).
Prints one PASS/FAIL/SKIP line per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import contextlib
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
sys.path.insert(0, os.path.join(REPO, "tests", "peer"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402
from peer import Peer, parse_script  # noqa: E402

FINAL = ("sent", "partial", "failed", "cancelled")
COOLDOWN_S = 30  # sender.c SESSION_COOLDOWN_S
SENDING_MAX_S = COOLDOWN_S + 10


# --- scripts --------------------------------------------------------------------------------

def hello():
    return "S: 220 peer.test ESMTP\nC: EHLO *\nS: 250-peer.test\nS: 250 8BITMIME\n"


def session(sender, rcpts, data_reply="250 2.0.0 Ok: queued", after_dot=None):
    """One lock-step session: rcpts = [(address, reply)]; DATA only if one was accepted."""
    s = hello() + f"C: MAIL FROM:<{sender}>*\nS: 250 2.1.0 Ok\n"
    for addr, reply in rcpts:
        s += f"C: RCPT TO:<{addr}>*\nS: {reply}\n"
    if any(reply.startswith("2") for _, reply in rcpts):
        s += "C: DATA\nS: 354 go ahead\nC*: .\n"
        if after_dot == "close":
            return s + "!close\n"
        if after_dot == "stall":
            # No reply to the dot: the client's reply timeout (MAILTRAIL_TEST_REPLY_TIMEOUT_MS)
            # must end the attempt; the peer then sees the connection go.
            return s + "!drain-close\n"
        s += f"S: {data_reply}\n"
    return s + "!expect-quit\n"


def live_check(addr):
    return session(addr, [(addr, "250 2.1.5 Ok")])


def script(*blocks):
    return "\n---\n".join(blocks)


class Case:
    def __init__(self, name, rcpts, blocks, check, expiry=False):
        self.name = name
        self.addr = f"{name.replace('_', '-')}@a.example"
        self.rcpts = rcpts
        self.blocks = blocks(self)
        self.check = check
        self.expiry = expiry  # the script has more blocks than needed: not all are played
        self.peer = None
        self.token = None
        self.id = None
        self.seen = []  # (t, state, attempts, last_class, last_error, recipients)
        self.error = None
        self.t_first = None


def ok(addr):
    return (addr, "250 2.1.5 Ok")


# --- the cases ------------------------------------------------------------------------------

def states(case):
    return [s[1] for s in case.seen]


def first(case, pred):
    for s in case.seen:
        if pred(s):
            return s
    return None


def final(case):
    return case.seen[-1]


def assert_retried_then_sent(case, cls=None):
    # A failed attempt shows as queued (or, when the retry is due within the same second and
    # the 50 ms poll missed that, as sending again) with attempts >= 1 and its error; after a
    # throttle reply, as held for the account's pause.
    q = first(case, lambda s: s[1] in ("queued", "sending", "held") and s[2] >= 1)
    assert q is not None, f"never seen an attempt that failed: {compact(case)}"
    if cls is not None:
        assert q[3] == cls, f"last_class {q[3]!r} after the first attempt, want {cls!r}: {compact(case)}"
    assert q[4], f"no last_error after the failed attempt: {compact(case)}"
    sent = first(case, lambda s: s[1] == "sent")
    assert sent is not None and sent[2] >= 2, f"not sent by a later attempt: {compact(case)}"
    f = final(case)
    assert f[1] == "sent" and all(r["state"] == "sent" for r in f[5]), compact(case)
    return q


def check_banner_421(case):
    assert_retried_then_sent(case, "throttle")


def check_rcpt_452(case):
    q = first(case, lambda s: s[1] == "queued" and s[2] >= 1)
    assert q is not None, compact(case)
    by = {r["address"]: r for r in q[5]}
    r1, r2 = case.rcpts
    assert by[r1]["state"] == "sent", f"the accepted recipient is not sent after attempt 1: {q[5]}"
    assert by[r2]["state"] == "pending" and by[r2]["reply"].startswith("452"), \
        f"the 452 recipient after attempt 1: {by[r2]}"
    assert_retried_then_sent(case)


def check_data_451(case):
    q = assert_retried_then_sent(case)
    assert q[4].startswith("451"), f"last_error {q[4]!r}"


def check_drop(case):
    q = assert_retried_then_sent(case)
    before = case.seen[:case.seen.index(q) + 1]
    assert "sent" not in [s[1] for s in before], "sent from the attempt that was dropped"


def check_permanent(reply):
    def check(case):
        f = final(case)
        assert f[1] == "failed", f"state {f[1]}, want failed: {compact(case)}"
        assert f[2] == 1, f"{f[2]} attempts for a permanent failure"
        assert f[3] == "resp", f"last_class {f[3]!r}, want resp"
        assert f[4] and f[4].startswith(reply), f"last_error {f[4]!r}, want the {reply} reply"
        for r in f[5]:
            assert r["state"] == "failed" and r["reply"] and r["reply"].startswith(reply), r
        assert "queued" not in states(case)[1:] or all(
            s[2] == 0 for s in case.seen if s[1] == "queued"), f"retried: {compact(case)}"
    return check


def check_expiry(case):
    f = final(case)
    assert f[1] == "failed", f"state {f[1]}: {compact(case)}"
    assert "retry time ran out" in (f[4] or ""), f"last_error {f[4]!r}"
    # Attempts at 0, b, 5b, 14b, 30b, 55b s (b = the retry base) while they fit in 60 s.
    want = 2 if case.retry_base >= 60 else 4
    assert f[2] >= want, f"only {f[2]} attempts before expiry (retry base {case.retry_base} s)"
    took = f[0] - case.t_first
    assert 45 <= took <= 75, f"failed {took:.0f} s after the first attempt; retry_expiry is 60 s"
    r = f[5][0]
    assert r["state"] == "failed" and r["reply"] and "451" in r["reply"], r


def make_cases():
    def c(name):
        return f"{name.replace('_', '-')}@a.example"
    return [
        Case("banner_421", ["b1@cand.example"], lambda k: [
            live_check(k.addr),
            "S: 421 4.3.2 Service not available, closing channel\n!drain-close\n",
            session(k.addr, [ok("b1@cand.example")])], check_banner_421),
        Case("rcpt_452", ["r1@cand.example", "r2@cand.example"], lambda k: [
            live_check(k.addr),
            session(k.addr, [ok("r1@cand.example"),
                             ("r2@cand.example", "452 4.5.3 Too many recipients")]),
            session(k.addr, [ok("r2@cand.example")])], check_rcpt_452),
        Case("data_451", ["d1@cand.example"], lambda k: [
            live_check(k.addr),
            session(k.addr, [ok("d1@cand.example")], data_reply="451 4.3.0 Try again later"),
            session(k.addr, [ok("d1@cand.example")])], check_data_451),
        Case("drop_after_dot", ["x1@cand.example"], lambda k: [
            live_check(k.addr),
            session(k.addr, [ok("x1@cand.example")], after_dot="close"),
            session(k.addr, [ok("x1@cand.example")])], check_drop),
        Case("stall_timeout", ["s1@cand.example"], lambda k: [
            live_check(k.addr),
            session(k.addr, [ok("s1@cand.example")], after_dot="stall"),
            session(k.addr, [ok("s1@cand.example")])], check_drop),
        Case("rcpt_554", ["p1@cand.example"], lambda k: [
            live_check(k.addr),
            session(k.addr, [("p1@cand.example", "554 5.7.1 Relay access denied")])],
            check_permanent("554")),
        Case("data_554", ["q1@cand.example"], lambda k: [
            live_check(k.addr),
            session(k.addr, [ok("q1@cand.example")], data_reply="554 5.6.0 Message rejected")],
            check_permanent("554")),
        Case("retry_expiry", ["e1@cand.example"], lambda k: [live_check(k.addr)] + [
            # Not a throttle class (4.7.x would pause the account and hold the message, which
            # never expires): a plain temporary refusal.
            session(k.addr, [("e1@cand.example", "451 4.3.0 Local error in processing")])] * 7,
            check_expiry, expiry=True),
    ]


def compact(case):
    out = []
    for t, st, att, cls, err, rc in case.seen:
        out.append(f"{t - case.seen[0][0]:.1f}s {st} a={att} {cls or ''} {(err or '')[:60]!r}")
    return "\n        " + "\n        ".join(out)


# --- running --------------------------------------------------------------------------------

def setup_case(svc, case):
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": case.addr, "name": case.name, "role": "user"}), 201)
    case.token = doc["token"]
    case.peer = Peer(parse_script(script(*case.blocks)), accept_timeout=90)
    port = case.peer.start()
    r = svc.req("PUT", "/v1/smtp", case.token,
                {"host": "127.0.0.1", "port": port, "security": "none", "auth": "none",
                 "from": case.addr, "accept_disclaimer": True})
    expect(r, 200)


def watch(svc, case, deadline):
    """Sends the case's message and polls it until final (or the deadline)."""
    try:
        r = svc.req("POST", "/v1/messages", case.token,
                    {"to": case.rcpts, "subject": f"fault {case.name}", "text": "hello"})
        case.id = expect(r, 202)["id"]
        last = None
        while time.monotonic() < deadline:
            d = expect(svc.req("GET", f"/v1/messages/{case.id}", case.token), 200)
            now = time.monotonic()
            key = (d["state"], d["attempts"], d["last_class"], d["last_error"],
                   tuple((x["state"], x["reply"]) for x in d["recipients"]))
            if key != last:
                case.seen.append((now, d["state"], d["attempts"], d["last_class"],
                                  d["last_error"], d["recipients"]))
                last = key
                if case.t_first is None and d["attempts"] >= 1:
                    case.t_first = now
            if d["state"] in FINAL:
                return
            time.sleep(0.05)
    except BaseException as e:  # noqa: BLE001 (reported by the case)
        case.error = e


def longest_sending(case):
    longest, since = 0.0, None
    for t, st, *_ in case.seen + [(time.monotonic(), "end")]:
        if st == "sending" and since is None:
            since = t
        elif st != "sending" and since is not None:
            longest = max(longest, t - since)
            since = None
    return longest


def judge(case):
    if case.error is not None:
        raise case.error
    assert case.seen, "no state seen"
    f = final(case)
    assert f[1] in FINAL, f"not final: {compact(case)}"
    longest = longest_sending(case)
    assert longest <= SENDING_MAX_S, f"'sending' for {longest:.0f} s: {compact(case)}"
    case.check(case)
    if not case.expiry:
        assert case.peer.wait(10), f"the peer script did not finish: at {case.peer.where}"
        assert case.peer.finished and not case.peer.errors, \
            f"peer: {case.peer.errors}\n" + "\n".join(case.peer.lines[-25:])
        assert case.peer.check_extra() is None, "a connection beyond the script"
    else:
        played = [e for e in case.peer.errors if "never came" not in e and "stopped" not in e]
        assert not played, f"peer: {played}\n" + "\n".join(case.peer.lines[-25:])
    print(f"     {case.name}: " + " -> ".join(
        f"{s[1]}({s[2]}{',' + s[3] if s[3] else ''})@{s[0] - case.seen[0][0]:.0f}s"
        for s in case.seen), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    if not os.access(os.path.join(a.bin_dir, "mailtrail"), os.X_OK):
        print(f"FAIL setup: {a.bin_dir}/mailtrail is not built\n0 passed, 1 failed")
        return 1
    t0 = time.monotonic()
    cases = [c for c in make_cases() if not a.only or any(o in c.name for o in a.only)]
    with rig.tempdir("mailtrail-faults-") as tmp, contextlib.ExitStack() as stack:
        svc = Service(a.bin_dir, tmp, env={
            "MAILTRAIL_NO_AUTH_HOSTS": "127.0.0.1",
            "MAILTRAIL_TEST_RETRY_BASE_S": "1",
            "MAILTRAIL_TEST_REPLY_TIMEOUT_MS": "2000",
            "MAILTRAIL_RETRY_EXPIRY": "1m",
            # A throttle reply (the 421 and "try again later" cases) pauses the account
            # (docs/sending.md, "Send limits"): a second here, not a minute.
            "MAILTRAIL_THROTTLE_PAUSE": "1s",
            "MAILTRAIL_LOG_LEVEL": "info",
        })
        stack.callback(svc.stop)
        for c in cases:
            stack.callback(lambda c=c: c.peer is not None and c.peer.stop())

        doc = svc.init("Faults Org", "admin@a.example")
        svc.users["admin"] = {"id": doc["user_id"], "token": doc["token"]}
        svc.retry_base = 1

        def knob():
            """MAILTRAIL_TEST_RETRY_BASE_S must be accepted by serve (src/cli/serve.c reads it
            with getenv). If serve refuses it, this case fails and the others go on with the
            default 60 s base (slower, fewer retries in the expiry case)."""
            try:
                svc.start()
            except AssertionError as e:
                svc.proc = None
                del svc.extra_env["MAILTRAIL_TEST_RETRY_BASE_S"]
                svc.retry_base = 60
                raise AssertionError("serve refused MAILTRAIL_TEST_RETRY_BASE_S (going on "
                                     f"with the default 60 s retry base): {e}")

        def setup():
            if svc.proc is None or svc.proc.poll() is not None:
                svc.start()
            expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": True}), 200)
            for c in cases:
                setup_case(svc, c)

        only, r.only = r.only, None
        r.run("test_retry_base_knob", knob)
        r.run("setup", setup)
        r.only = only
        if "setup" in r.failed:
            print("setup failed\n" + svc.log_tail())
            return r.exit_code()
        deadline = time.monotonic() + (80 if svc.retry_base > 1 else 70)
        for c in cases:
            c.retry_base = svc.retry_base
        threads = [threading.Thread(target=watch, args=(svc, c, deadline), daemon=True)
                   for c in cases]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in cases:
            r.run(c.name, judge, c)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
