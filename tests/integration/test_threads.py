#!/usr/bin/python3
"""Conversations on activities end to end (docs/api.md "Threads"): outbox_id, in_reply_to and
thread_id on every activity, and GET /v1/profiles/{id}/activities?thread_id=.

  /usr/bin/python3 tests/integration/test_threads.py --bin-dir BUILD [--only NAME]... [--keep]

Setup: the rig's auth sink as the platform relay (STARTTLS, AUTH), org A with domains
["staffing.example"], the recruiter rec@staffing.example, org B for isolation. Cases, in order,
sharing the setup:

  sent_has_outbox_id        POST /v1/messages to Jack -> his email_sent activity (source outbox)
                            has outbox_id = the message's id, in_reply_to null, a thread_id;
                            the relay's copy logged again through the add-in (as a Sent copy
                            would be) changes nothing: one activity, the outbox id kept
  reply_chain_one_thread    Jack's reply (add-in, In-Reply-To and References = our Message-ID)
                            -> email_received with in_reply_to = our Message-ID, same
                            thread_id; our answer to it (References: ours, Jack's) too; the
                            thread filter gives the three newest first, an unrelated message
                            is not in it; a bad thread_id -> 400
  reverse_order_converges   a three-message chain logged newest first (the middle one with
                            In-Reply-To only, no References) on another profile: one thread,
                            the same as when the first message is logged alone; a message
                            whose References were cut by its client to the last id alone
                            starts a thread of its own (the documented limit)
  org_isolation             the same chain in org B has another thread_id; B cannot read A's
                            profile's thread

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed. Standard
library only (Debian's /usr/bin/python3; the rig's aiosmtpd).
"""

import argparse
import contextlib
import email.utils
import os
import re
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect, expect_input, urlquote  # noqa: E402

RELAY_USER = "relay-platform"
RELAY_PASSWORD = "relay-s3cret-pw"
RELAY_FROM = "bounces@platform.example"
ORG_DOMAIN = "staffing.example"
REC = "rec@staffing.example"
JACK = "jack@cand.example"
JILL = "jill@cand.example"
THREAD_RE = re.compile(r"^thr_[a-z2-7]{20}$")
FINAL = ("sent", "partial", "failed", "cancelled")
NOW = int(time.time())


def new_mid(tag):
    return f"{tag}.{uuid.uuid4().hex}@test.mailtrail.example"


def make_msg(frm, to, subject, mid, date, in_reply_to=None, references=()):
    h = [f"From: {frm}", f"To: {to}", f"Subject: {subject}",
         "Date: " + email.utils.formatdate(date, localtime=False, usegmt=True),
         f"Message-ID: <{mid}>"]
    if in_reply_to:
        h.append(f"In-Reply-To: <{in_reply_to}>")
    if references:
        # folded, as clients write long chains
        h.append("References: " + "\r\n ".join(f"<{r}>" for r in references))
    h += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(h) + "\r\n\r\nHello.\r\n").encode()


def addin(svc, who, raw):
    r = svc.req("POST", "/v1/addin/log", svc.tok(who), raw=raw, content_type="message/rfc822")
    doc = expect(r, 200)
    assert doc["outcome"] == "logged", r.show()
    return doc


def timeline(svc, who, pid, thread_id=None, status=200):
    path = f"/v1/profiles/{pid}/activities?limit=100"
    if thread_id is not None:
        path += "&thread_id=" + urlquote(thread_id)
    r = svc.req("GET", path, svc.tok(who))
    doc = expect(r, status)
    if status != 200:
        return r
    for a in doc["activities"]:
        for k in ("outbox_id", "in_reply_to", "thread_id"):
            assert k in a, f"activity lacks {k}" + r.show()
    return doc["activities"]


def by_mid(acts, mid):
    got = [a for a in acts if a["message_id"] == mid]
    assert len(got) == 1, f"{len(got)} activities of {mid}, want 1: {acts}"
    return got[0]


def make_profile(svc, who, address):
    r = svc.req("POST", "/v1/profiles", svc.tok(who),
                {"kind": "applicant", "name": address.split("@")[0].title(), "emails": [address]})
    return expect(r, 201)["id"]


def wait_final(svc, token, mid, timeout=20.0):
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        doc = expect(svc.req("GET", f"/v1/messages/{mid}", token), 200)
        if doc["state"] in FINAL:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"message {mid} not final after {timeout:g} s: {doc}")


def header_mid(raw):
    m = re.search(rb"^Message-ID:[ \t]*<?([^>\r\n]*)>?", raw, re.M | re.I)
    return m.group(1).decode().strip() if m else None


# --- cases ----------------------------------------------------------------------------------

def case_setup(svc, relay):
    a = svc.init("Threads Org A", "admin@" + ORG_DOMAIN)
    b = svc.init("Threads Org B", "admin@orgb.example")
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.users["adminB"] = {"id": b["user_id"], "token": b["token"]}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"), {"domains": [ORG_DOMAIN]}), 200)
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": REC, "name": "Rita Rec", "role": "user"}), 201)
    svc.users["rec"] = {"id": doc["id"], "token": doc["token"], "email": REC}
    svc.jack = make_profile(svc, "rec", JACK)
    svc.jill = make_profile(svc, "rec", JILL)
    svc.jack_b = make_profile(svc, "adminB", JILL)


def case_sent_has_outbox_id(svc, relay):
    r = svc.req("POST", "/v1/messages", svc.tok("rec"),
                {"to": [f"Jack <{JACK}>"], "subject": "The role", "text": "Interested?"})
    doc = expect(r, 202)
    doc = wait_final(svc, svc.tok("rec"), doc["id"])
    assert doc["state"] == "sent", doc
    svc.sent_id, svc.sent_mid = doc["id"], doc["message_id"].strip("<>")
    deadline = time.monotonic() + 5
    acts = []
    while not acts and time.monotonic() < deadline:
        acts = timeline(svc, "rec", svc.jack)
        time.sleep(0.1)
    assert len(acts) == 1, acts
    a = acts[0]
    assert a["type"] == "email_sent" and a["source"] == "outbox", a
    assert a["message_id"] == svc.sent_mid, a
    assert a["outbox_id"] == svc.sent_id, f"outbox_id {a['outbox_id']!r}, want {svc.sent_id}"
    assert a["in_reply_to"] is None, a
    assert THREAD_RE.match(a["thread_id"] or ""), a
    svc.thread = a["thread_id"]
    # The copy the relay got (our Message-ID and X-Mailtrail-Id), logged as a mailbox copy
    # would be: the one activity, still ours.
    copies = [m for m in relay.wait_messages(1) if header_mid(m["data"]) == svc.sent_mid]
    assert len(copies) == 1, f"{len(copies)} copies at the relay"
    d = addin(svc, "rec", copies[0]["data"])
    assert d["created"] == 0, d
    acts = timeline(svc, "rec", svc.jack)
    assert len(acts) == 1 and acts[0]["outbox_id"] == svc.sent_id, acts
    assert acts[0]["source"] == "outbox" and acts[0]["thread_id"] == svc.thread, acts
    # the feed carries the fields too
    feed = expect(svc.req("GET", "/v1/activities?limit=100", svc.tok("rec")), 200)["activities"]
    mine = [x for x in feed if x["message_id"] == svc.sent_mid]
    assert mine and mine[-1]["outbox_id"] == svc.sent_id and mine[-1]["thread_id"] == svc.thread, \
        feed


def case_reply_chain(svc, relay):
    ours = svc.sent_mid
    now = int(time.time())  # after our message, which is dated when it was sent
    reply = new_mid("jack-reply")
    d = addin(svc, "rec", make_msg(f"Jack <{JACK}>", REC, "Re: The role", reply, now + 60,
                                   in_reply_to=ours, references=[ours]))
    assert d["created"] == 1, d
    a = d["activities"][0]
    assert a["type"] == "email_received" and a["in_reply_to"] == ours, a
    assert a["thread_id"] == svc.thread and a["outbox_id"] is None, a
    answer = new_mid("rec-answer")
    d = addin(svc, "rec", make_msg(REC, JACK, "Re: Re: The role", answer, now + 120,
                                   in_reply_to=reply, references=[ours, reply]))
    a = d["activities"][0]
    assert a["type"] == "email_sent" and a["in_reply_to"] == reply, a
    assert a["thread_id"] == svc.thread and a["outbox_id"] is None, a
    other = new_mid("other")
    d = addin(svc, "rec", make_msg(REC, JACK, "Something else", other, now + 180))
    assert d["activities"][0]["thread_id"] != svc.thread, d
    acts = timeline(svc, "rec", svc.jack, thread_id=svc.thread)
    assert [x["message_id"] for x in acts] == [answer, reply, ours], acts
    assert len(timeline(svc, "rec", svc.jack)) == 4
    # a thread with nothing on this profile: an empty page; a malformed one: 400
    assert timeline(svc, "rec", svc.jill, thread_id=svc.thread) == []
    for bad in ("thr_", "nope", "thr_" + "A" * 20, "thr_" + "a" * 21):
        expect_input(timeline(svc, "rec", svc.jack, thread_id=bad, status=400), "thread_id")


def case_reverse_order(svc, relay):
    m1, m2, m3 = new_mid("r1"), new_mid("r2"), new_mid("r3")
    chain = [
        (m3, make_msg(REC, JILL, "Re: Re: Hi", m3, NOW - 100, in_reply_to=m2,
                      references=[m1, m2])),
        # the middle one from a client that writes In-Reply-To alone
        (m2, make_msg(f"Jill <{JILL}>", REC, "Re: Hi", m2, NOW - 200, in_reply_to=m1)),
        (m1, make_msg(REC, JILL, "Hi", m1, NOW - 300)),
    ]
    threads = set()
    for mid, raw in chain:
        d = addin(svc, "rec", raw)
        assert d["created"] == 1, d
        threads.add(d["activities"][0]["thread_id"])
    assert len(threads) == 1, f"three threads for one chain: {threads}"
    thread = threads.pop()
    assert THREAD_RE.match(thread) and thread != svc.thread, thread
    acts = timeline(svc, "rec", svc.jill, thread_id=thread)
    assert [x["message_id"] for x in acts] == [m3, m2, m1], acts
    assert [x["in_reply_to"] for x in acts] == [m2, m1, None], acts
    # logging them again (any order) changes nothing
    for mid, raw in reversed(chain):
        assert addin(svc, "rec", raw)["created"] == 0
    assert [x["thread_id"] for x in timeline(svc, "rec", svc.jill, thread_id=thread)] == [thread] * 3
    # The documented limit: a client that cut References down to the parent alone makes its
    # message the start of a thread rooted at that parent, not at the conversation's first.
    m4 = new_mid("r4")
    d = addin(svc, "rec", make_msg(f"Jill <{JILL}>", REC, "Re: Re: Re: Hi", m4, NOW - 50,
                                   in_reply_to=m3, references=[m3]))
    assert d["activities"][0]["in_reply_to"] == m3
    assert d["activities"][0]["thread_id"] != thread, d
    svc.jill_chain = chain
    svc.jill_thread = thread


def case_org_isolation(svc, relay):
    for mid, raw in svc.jill_chain:
        d = addin(svc, "adminB", raw)
        assert d["created"] == 1, d
        t = d["activities"][0]["thread_id"]
        assert THREAD_RE.match(t) and t != svc.jill_thread, (t, svc.jill_thread)
    r = svc.req("GET", f"/v1/profiles/{svc.jill}/activities?thread_id={svc.jill_thread}",
                svc.tok("adminB"))
    expect(r, 404)


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
    with rig.tempdir("mailtrail-threads-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        relay = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "relay-sink"),
                                                  user=RELAY_USER, password=RELAY_PASSWORD,
                                                  tls=False, plain=False, require_auth=True))
        pw = os.path.join(tmp, "relay-password")
        with open(pw, "w") as f:
            f.write(RELAY_PASSWORD + "\n")
        os.chmod(pw, 0o600)
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_RELAY": f"smtp://{RELAY_USER}@127.0.0.1:{relay.port_starttls}",
            "MAILTRAIL_RELAY_FROM": RELAY_FROM,
            "MAILTRAIL_RELAY_PASSWORD_FILE": pw,
            "MAILTRAIL_LOG_LEVEL": "info",
        })
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, relay)
        r.only = only
        if r.failed:
            print("setup failed; the other cases need it\n" + svc.log_tail())
            return r.exit_code()
        for name, fn in (("sent_has_outbox_id", case_sent_has_outbox_id),
                         ("reply_chain_one_thread", case_reply_chain),
                         ("reverse_order_converges", case_reverse_order),
                         ("org_isolation", case_org_isolation)):
            r.run(name, fn, svc, relay)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        if a.keep:
            import shutil
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
