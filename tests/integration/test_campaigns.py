#!/usr/bin/python3
"""Campaigns end to end (DESIGN.md §1 Campaign, Relay; §2 POST/GET /v1/campaigns, pause /
resume / cancel; docs/sending.md "Campaigns").

  /usr/bin/python3 tests/integration/test_campaigns.py --bin-dir BUILD [--only NAME]... [--keep]

Setup: the rig's auth sink as the platform relay, a second auth sink as one recruiter's custom
SMTP, public_url https://crm.example/mail/ (the links' base; the test follows a link by posting
its path to the service). Cases, in order:

  relay_cap          a user without custom SMTP: 51 recipients -> 422 naming the cap and how
                     to lift it, nothing stored or sent; 3 recipients -> 202, three messages
                     through the relay, one recipient each
  custom_lifts_cap   with custom SMTP connected: 51 recipients (one twice) -> 202 and 51
                     messages; each at the custom sink alone in RCPT and To (with its name),
                     List-Unsubscribe <https://crm.example/mail/u/TOKEN> (a token of its own)
                     and List-Unsubscribe-Post: List-Unsubscribe=One-Click, distinct
                     Message-IDs; GET shows total 51, sent 51
  idempotency        the same Idempotency-Key again -> the same campaign, nothing more sent
  unsubscribe        GET /u/TOKEN: a page naming the address with a button, nothing changed;
                     POST /u/TOKEN with the RFC 8058 body -> unsubscribed; an unknown or
                     malformed token -> 404; the next campaign to that address and another
                     -> messages 1, counts.suppressed 1, only the other mailed
  pause_resume       the custom sink stopped (SIGSTOP), a campaign of 6, paused at once:
                     counts held 6 (nothing had reached a server); the sink resumed -> nothing
                     arrives; resume -> all 6 arrive
  cancel             the same with cancel: counts cancelled 6, nothing arrives; resume -> 409
  validation         no recipients, a bad address, no text/html, 10,001 recipients -> 400
  bytes_cap          80 recipients of a 3.4 MiB text: over the 256 MiB one campaign may build
                     -> 413, nothing sent; the same text to 3 recipients goes

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import contextlib
import email.policy
import os
import re
import signal
import sys
import time
from email.parser import BytesParser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

RELAY_USER = "relay-platform"
RELAY_PASSWORD = "relay-s3cret-pw"
RELAY_FROM = "bounces@platform.example"
ORG_DOMAIN = "staffing.example"
REL = "rel@staffing.example"
CUS = "cus@staffing.example"
CUS_PASSWORD = "custom-s3cret-pw"
PUBLIC_URL = "https://crm.example/mail/"
LINK_RE = re.compile(r"^<https://crm\.example/mail/u/([0-9a-f]{32})>$")


def parse(raw):
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def with_subject(sink, subject):
    out = []
    for m in sink.messages():
        msg = parse(m["data"])
        if str(msg["Subject"]) == subject:
            out.append((m, msg))
    return out


def wait_count(sink, subject, want, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = with_subject(sink, subject)
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def campaign(svc, who, id_):
    return expect(svc.req("GET", f"/v1/campaigns/{id_}", svc.tok(who)), 200)


def wait_campaign(svc, who, id_, pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        doc = campaign(svc, who, id_)
        if pred(doc):
            return doc
        time.sleep(0.1)
    raise AssertionError(f"campaign {id_} never got there in {timeout:g} s: {doc}")


def rcpts(prefix, n):
    return [{"email": f"{prefix}{i}@cand.example", "name": f"Cand {prefix.upper()} {i}"}
            for i in range(n)]


def connect_custom(svc, custom):
    r = svc.req("PUT", "/v1/smtp", svc.tok("cus"),
                {"host": "127.0.0.1", "port": custom.port_starttls, "security": "starttls",
                 "username": CUS, "password": CUS_PASSWORD, "from": CUS,
                 "accept_disclaimer": True})
    assert expect(r, 200)["state"] == "connected", r.show()


# --- cases ----------------------------------------------------------------------------------

def case_setup(svc, relay, custom):
    a = svc.init("Campaign Org", "admin@" + ORG_DOMAIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"),
                   {"domains": [ORG_DOMAIN], "features": {"custom_smtp": True}}), 200)
    for name, addr in (("rel", REL), ("cus", CUS)):
        doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                             {"email": addr, "name": name.title(), "role": "user"}), 201)
        svc.users[name] = {"id": doc["id"], "token": doc["token"], "email": addr}
    connect_custom(svc, custom)


def case_relay_cap(svc, relay, custom):
    before = len(relay.messages())
    r = svc.req("POST", "/v1/campaigns", svc.tok("rel"),
                {"recipients": rcpts("cap", 51), "subject": "Over the cap", "text": "x"})
    err = expect(r, 422, "input")
    msg = err["error"]["message"]
    assert "51" in msg and "50" in msg and "PUT /v1/smtp" in msg, f"reason {msg!r}"
    subject = "Within the relay cap"
    doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("rel"),
                         {"recipients": rcpts("rc", 3), "subject": subject, "text": "hello"}), 202)
    assert doc["messages"] == 3 and doc["id"].startswith("cmp"), doc
    got = wait_count(relay, subject, 3)
    assert len(got) == 3, f"{len(got)} at the relay, want 3"
    for stored, msg in got:
        assert len(stored["rcpt_tos"]) == 1 and stored["auth_user"] == RELAY_USER, stored
        assert msg["To"].addresses[0].addr_spec == stored["rcpt_tos"][0], (str(msg["To"]), stored)
    time.sleep(0.3)
    assert not with_subject(relay, "Over the cap"), "the refused campaign reached the relay"
    assert len(relay.messages()) == before + 3, "something else reached the relay"


def case_custom_lifts_cap(svc, relay, custom):
    subject = "Campaign through my own SMTP"
    recipients = rcpts("big", 51) + [{"email": "BIG7@Cand.Example", "name": "Again"}]
    doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"),
                         {"recipients": recipients, "subject": subject,
                          "text": "Dear candidate", "html": "<p>Dear candidate</p>"}), 202)
    assert doc["messages"] == 51 and doc["suppressed"] == 0, doc
    svc.users["cus"]["big"] = doc["id"]
    got = wait_count(custom, subject, 51)
    assert len(got) == 51, f"{len(got)} at the custom sink, want 51"
    tokens, mids, seen = set(), set(), set()
    names = {r["email"]: r["name"] for r in recipients[:51]}
    for stored, msg in got:
        assert stored["mail_from"] == CUS and stored["auth_user"] == CUS, stored
        assert len(stored["rcpt_tos"]) == 1, stored
        to = msg["To"].addresses
        assert len(to) == 1 and to[0].addr_spec == stored["rcpt_tos"][0], (str(msg["To"]), stored)
        assert to[0].display_name == names[to[0].addr_spec], str(msg["To"])
        assert msg["Cc"] is None, str(msg["Cc"])
        lu = str(msg["List-Unsubscribe"])
        m = LINK_RE.match(lu)
        assert m, f"List-Unsubscribe {lu!r}"
        assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click", \
            str(msg["List-Unsubscribe-Post"])
        tokens.add(m.group(1))
        mids.add(str(msg["Message-ID"]))
        seen.add(to[0].addr_spec)
        svc.users["cus"].setdefault("tokens", {})[to[0].addr_spec] = m.group(1)
    assert len(tokens) == 51 and len(mids) == 51 and len(seen) == 51, (len(tokens), len(mids), len(seen))
    final = wait_campaign(svc, "cus", doc["id"], lambda d: d["counts"]["sent"] == 51)
    assert final["total"] == 51 and final["state"] == "running", final
    assert final["subject"] == subject, final


def case_idempotency(svc, relay, custom):
    subject = "Idempotent campaign"
    body = {"recipients": rcpts("idem", 2), "subject": subject, "text": "once"}
    h = {"Idempotency-Key": "campaign-key-1"}
    first = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"), body, headers=h), 202)
    second = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"), body, headers=h), 202)
    assert first["id"] == second["id"] and second["messages"] == 2, (first, second)
    got = wait_count(custom, subject, 2)
    time.sleep(0.5)
    assert len(with_subject(custom, subject)) == 2, f"{len(got)} copies, want 2"


def case_unsubscribe(svc, relay, custom):
    gone = "big3@cand.example"
    token = svc.users["cus"]["tokens"][gone]
    r = svc.req("GET", f"/u/{token}")
    assert r.status == 200 and gone in r.text and "<form" in r.text, r.show()
    ctype = {k.lower(): v for k, v in r.headers}.get("content-type", "")
    assert ctype.startswith("text/html"), r.headers
    # A GET changes nothing: link scanners follow links.
    subject = "After a GET of the link"
    doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"),
                         {"recipients": [{"email": gone}], "subject": subject, "text": "x"}), 202)
    assert doc["messages"] == 1 and doc["suppressed"] == 0, doc
    assert len(wait_count(custom, subject, 1)) == 1
    # RFC 8058: the provider POSTs "List-Unsubscribe=One-Click" as a form.
    r = svc.req("POST", f"/u/{token}", raw="List-Unsubscribe=One-Click",
                content_type="application/x-www-form-urlencoded")
    assert r.status == 200 and "Unsubscribed" in r.text and gone in r.text, r.show()
    r = svc.req("POST", f"/u/{token}", raw="List-Unsubscribe=One-Click",
                content_type="application/x-www-form-urlencoded")
    assert r.status == 200, "a second one-click POST: " + r.show()
    for bad in ("0" * 32, "nottoken", token.upper()):
        r = svc.req("POST", f"/u/{bad}", raw="List-Unsubscribe=One-Click",
                    content_type="application/x-www-form-urlencoded")
        assert r.status == 404, f"token {bad!r}: " + r.show()
    subject = "After the unsubscribe"
    doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"),
                         {"recipients": [{"email": gone}, {"email": "fresh@cand.example"}],
                          "subject": subject, "text": "x"}), 202)
    assert doc["messages"] == 1 and doc["suppressed"] == 1, doc
    got = wait_count(custom, subject, 1)
    time.sleep(0.5)
    got = with_subject(custom, subject)
    assert [s["rcpt_tos"] for s, _ in got] == [["fresh@cand.example"]], [s["rcpt_tos"] for s, _ in got]
    c = wait_campaign(svc, "cus", doc["id"], lambda d: d["counts"]["sent"] == 1)
    assert c["counts"]["suppressed"] == 1 and c["total"] == 2, c
    # The org's list, whoever sends: the relay user's campaign skips it too.
    doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("rel"),
                         {"recipients": [{"email": gone}], "subject": "Relay after unsub",
                          "text": "x"}), 202)
    assert doc["messages"] == 0 and doc["suppressed"] == 1, doc


def case_pause_resume(svc, relay, custom):
    subject = "Paused campaign"
    os.kill(custom.proc.pid, signal.SIGSTOP)  # sessions wait for a greeting that never comes
    try:
        doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"),
                             {"recipients": rcpts("pause", 6), "subject": subject, "text": "x"}), 202)
        cid = doc["id"]
        time.sleep(0.5)  # the sender has claimed them by now
        p = expect(svc.req("POST", f"/v1/campaigns/{cid}/pause", svc.tok("cus")), 200)
        assert p["state"] == "paused", p
        c = wait_campaign(svc, "cus", cid, lambda d: d["counts"]["held"] == 6, timeout=5)
        assert c["counts"]["sending"] == 0, c
    finally:
        os.kill(custom.proc.pid, signal.SIGCONT)
    time.sleep(2.0)
    assert not with_subject(custom, subject), "a paused campaign's message arrived"
    c = campaign(svc, "cus", cid)
    assert c["counts"]["held"] == 6 and c["state"] == "paused", c
    r = expect(svc.req("POST", f"/v1/campaigns/{cid}/resume", svc.tok("cus")), 200)
    assert r["state"] == "running", r
    got = wait_count(custom, subject, 6)
    assert len(got) == 6, f"{len(got)} after resume, want 6"
    wait_campaign(svc, "cus", cid, lambda d: d["counts"]["sent"] == 6)


def case_cancel(svc, relay, custom):
    subject = "Cancelled campaign"
    os.kill(custom.proc.pid, signal.SIGSTOP)
    try:
        doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"),
                             {"recipients": rcpts("cancel", 6), "subject": subject, "text": "x"}), 202)
        cid = doc["id"]
        time.sleep(0.5)
        c = expect(svc.req("POST", f"/v1/campaigns/{cid}/cancel", svc.tok("cus")), 200)
        assert c["state"] == "cancelled", c
        wait_campaign(svc, "cus", cid, lambda d: d["counts"]["cancelled"] == 6, timeout=5)
    finally:
        os.kill(custom.proc.pid, signal.SIGCONT)
    time.sleep(2.0)
    assert not with_subject(custom, subject), "a cancelled campaign's message arrived"
    r = svc.req("POST", f"/v1/campaigns/{cid}/resume", svc.tok("cus"))
    expect(r, 409, "input")
    expect(svc.req("POST", f"/v1/campaigns/{cid}/cancel", svc.tok("cus")), 200)
    # Another user's campaign is not found.
    expect(svc.req("GET", f"/v1/campaigns/{cid}", svc.tok("rel")), 404, "input")


def case_validation(svc, relay, custom):
    tok = svc.tok("cus")
    cases = [
        ({"recipients": [], "subject": "s", "text": "x"}, "recipients"),
        ({"recipients": [{"email": "not an address"}], "subject": "s", "text": "x"}, "recipients[0].email"),
        ({"recipients": [{"email": "a@b.example"}], "subject": "s"}, "text or html"),
        ({"recipients": [{"email": "a@b.example", "extra": 1}], "subject": "s", "text": "x"}, "recipients[0]"),
        ({"recipients": [{"email": f"r{i}@b.example"} for i in range(10001)], "subject": "s", "text": "x"},
         "recipients"),
    ]
    for body, mention in cases:
        r = svc.req("POST", "/v1/campaigns", tok, body)
        err = expect(r, 400, "input")
        assert mention in err["error"]["message"], f"{mention!r} not in {err}"


def case_bytes_cap(svc, relay, custom):
    # Every message is built before the 202: 80 recipients of a ~3.4 MiB text come to more
    # than the 256 MiB one campaign may build (MT_CAMPAIGN_BYTES_MAX), though each message and
    # the request body are within their own caps.
    line = ("Dear candidate, here is the long description of the role you asked about. " * 1)[:70]
    text = "\n".join([line] * (3_400_000 // 71))
    subject = "Too many bytes together"
    r = svc.req("POST", "/v1/campaigns", svc.tok("cus"),
                {"recipients": rcpts("bytes", 80), "subject": subject, "text": text})
    err = expect(r, 413, "input")
    msg = err["error"]["message"]
    assert "256 MiB" in msg and "80 recipients" in msg, f"reason {msg!r}"
    # the same text to fewer recipients is within the cap
    fewer = "The same text to three"
    doc = expect(svc.req("POST", "/v1/campaigns", svc.tok("cus"),
                         {"recipients": rcpts("bytes", 3), "subject": fewer, "text": text}), 202)
    assert doc["messages"] == 3, doc
    got = wait_count(custom, fewer, 3)
    assert len(got) == 3, f"{len(got)} at the custom sink, want 3"
    assert not with_subject(custom, subject), "the refused campaign reached the sink"


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
    with rig.tempdir("mailtrail-campaigns-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        relay = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "relay-sink"),
                                                  user=RELAY_USER, password=RELAY_PASSWORD,
                                                  tls=False, plain=False, require_auth=True))
        custom = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "custom-sink"),
                                                   user=CUS, password=CUS_PASSWORD,
                                                   tls=False, plain=False, require_auth=True))
        pw = os.path.join(tmp, "relay-password")
        with open(pw, "w") as f:
            f.write(RELAY_PASSWORD + "\n")
        os.chmod(pw, 0o600)
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_RELAY": f"smtp://{RELAY_USER}@127.0.0.1:{relay.port_starttls}",
            "MAILTRAIL_RELAY_FROM": RELAY_FROM,
            "MAILTRAIL_RELAY_PASSWORD_FILE": pw,
            "MAILTRAIL_PUBLIC_URL": PUBLIC_URL,
            "MAILTRAIL_LOG_LEVEL": "info",
        })
        stack.callback(svc.stop)
        r.run("setup", case_setup, svc, relay, custom)
        if r.failed:
            print(svc.log_tail())
            return r.exit_code()
        for name, fn in (("relay_cap", case_relay_cap), ("custom_lifts_cap", case_custom_lifts_cap),
                         ("idempotency", case_idempotency), ("unsubscribe", case_unsubscribe),
                         ("pause_resume", case_pause_resume), ("cancel", case_cancel),
                         ("validation", case_validation), ("bytes_cap", case_bytes_cap)):
            r.run(name, fn, svc, relay, custom)
        if r.failed:
            print(svc.log_tail(40))
        if a.keep:
            print(f"kept {tmp}")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
