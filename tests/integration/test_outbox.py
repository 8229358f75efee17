#!/usr/bin/python3
"""The outbox end to end (DESIGN.md §1 Message, Route; §2 POST /v1/messages,
GET/DELETE /v1/messages/{id}; docs/api.md).

  /usr/bin/python3 tests/integration/test_outbox.py --bin-dir BUILD [--only NAME]... [--count N]
                                                     [--keep]

One store, one server (no relay; MAILTRAIL_MAX_MESSAGE_BYTES=262144 so that 413 is cheap), the
rig's auth sink (STARTTLS + AUTH, one recipient refused) as the recruiter's custom SMTP, and a
scripted peer (tests/peer/peer.py, security none / auth none) for the "host down" user.
Cases, in order, sharing the setup:

  bulk_1000_exactly_once_mime   N (default 1,000) messages from 8 client threads over keep-alive
                                connections, to/cc/bcc mixes with non-ASCII names and subjects,
                                text / html / both, attachments: each arrives exactly once
                                (counted per Message-ID at the sink), envelope RCPTs = to+cc+bcc,
                                the MIME parsed with Python's email package (headers, no Bcc,
                                structure, attachment names and bytes, Message-ID and
                                X-Mailtrail-Id), and every GET ends "sent" with recipients sent
  partial_one_refused           one of three refused with 550 -> "partial", per-recipient replies
  idempotency_key               the same Idempotency-Key twice -> the same id, one message sent
  cancel_while_queued           the account's host is down: the first attempt fails (conn), the
                                message is queued for retry; DELETE -> 200 cancelled; the host
                                comes back and a later message goes out without it; DELETE of a
                                sent message -> 409
  no_route_409                  no custom SMTP and no relay -> 409
  outbox_activity               a profile for one recipient gets one email_sent activity with
                                source "outbox"
  bad_input_400_413             101 recipients -> 400; over max_message_bytes -> 413; bad base64
                                -> 400
  list_messages                 GET /v1/messages: own messages newest first in pages, by state,
                                another user's 403, an admin's org-wide and per-user views, bad
                                filters, limit and cursor 400
  claims_run_ahead_bounded      the "down" user's server stalls every DATA: of 1,500 messages
                                the sender claims (state "sending") what its two sessions hold
                                (2 x 100) and a look-ahead (MT_SENDER_CLAIM_AHEAD 500, plus a
                                claim of 250 in flight), not all of them; the rest stay queued
  claims_skip_unready_accounts  a new user's server never greets: all 800 of its messages are
                                claimed (an account without a ready session does not count
                                against the look-ahead) without their bodies (claims load those
                                of accounts with a ready session only: a third user's, whose
                                server sits on DATA; gauge mailtrail_sender_body_bytes), and 10
                                messages of another user (a working server) queued after them
                                are sent within 15 s

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed. Standard
library only (Debian's /usr/bin/python3; the rig's aiosmtpd).
"""

import argparse
import base64
import collections
import contextlib
import email.policy
import http.client
import json
import os
import random
import re
import sys
import threading
import time
from email.parser import BytesParser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
sys.path.insert(0, os.path.join(REPO, "tests", "peer"))
import rig  # noqa: E402
from service import Service, expect, expect_input  # noqa: E402
from peer import Peer, parse_script  # noqa: E402

MAX_MESSAGE_BYTES = 262144
REC = "rec@a.example"
REC_NAME = "Zoë Recruiter-Ñúñez"
PASSWORD = "s3cret-pw-outbox"
DOWN = "down@a.example"
REFUSED = "refused@cand.example"
FINAL = ("sent", "partial", "failed", "cancelled")
THREADS = 8

NAMES = ["Jürgen Groß", "Zoë Ñúñez", "王小明", "Łukasz Żółć", "Ольга Петрова", "Jack Jones",
         "Ann O'Neil", "Søren Kierkegaard", "José María", "محمد علي", "Ελένη", "Plain Name"]
SUBJECTS = ["Entretien — poste n°{i} ✓", "Interview {i}: 日本語の件名", "Re: Your application #{i}",
            "Привет {i}, следующий шаг", "Offer {i} 🎉 (confidential)", "plain ascii subject {i}",
            "Ça va? {i} — «quotes» and \"more\""]


def mailbox(name, addr):
    return f"{name} <{addr}>" if name else addr


# --- keep-alive client ----------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection (reconnects if the server closed it)."""

    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.conn = None
        self.reconnects = 0

    def req(self, method, path, body=None, headers=None):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
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
                if (r.getheader("Connection") or "").lower() == "close":
                    self.close()
                    self.reconnects += 1
                return r.status, (json.loads(raw) if raw else None), raw
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A keep-alive connection the server closed between two requests: once more.
                self.close()
                self.reconnects += 1
                if attempt or method != "GET":
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def parallel(items, fn, threads=THREADS):
    """fn(client_index, item) over items from `threads` threads; returns results in order and
    re-raises the first exception."""
    results = [None] * len(items)
    errors = []
    lock = threading.Lock()
    it = iter(range(len(items)))

    def worker(k):
        while True:
            with lock:
                if errors:
                    return
                i = next(it, None)
            if i is None:
                return
            try:
                results[i] = fn(k, items[i])
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


# --- messages -------------------------------------------------------------------------------

def make_spec(i, rnd):
    """A message to send: the POST body plus what the receiver must see."""
    def people(kind, n):
        out = []
        for k in range(n):
            name = rnd.choice(NAMES) if rnd.random() < 0.8 else ""
            out.append((name, f"{kind}{i}.{k}@cand{rnd.randrange(5)}.example"))
        return out
    to = people("to", rnd.randint(1, 3))
    cc = people("cc", rnd.choice([0, 0, 1, 2, 3]))
    bcc = people("bcc", rnd.choice([0, 0, 1, 2, 3]))
    subject = rnd.choice(SUBJECTS).format(i=i)
    kind = rnd.choice(["text", "text", "html", "both", "both"])
    text = (f"Hello {to[0][0] or 'there'},\n\nmessage {i} — ünïcødé text.\n"
            + "A longer line to wrap " * rnd.randint(0, 30) + "\n.\n..leading dots\nBye\n")
    html = f"<p>Hello <b>{to[0][0] or 'there'}</b>, message {i} — <i>ünïcødé</i></p>\n<p>.</p>"
    body = {"to": [mailbox(*p) for p in to], "subject": subject}
    if cc:
        body["cc"] = [mailbox(*p) for p in cc]
    if bcc:
        body["bcc"] = [mailbox(*p) for p in bcc]
    if kind in ("text", "both"):
        body["text"] = text
    if kind in ("html", "both"):
        body["html"] = html
    atts = []
    if rnd.random() < 0.3:
        for k in range(rnd.randint(1, 2)):
            data = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 3000)))
            name, ctype = rnd.choice([(f"CV {NAMES[k]} {i}.pdf", "application/pdf"),
                                      (f"notes-{i}.txt", "text/plain"),
                                      (f"photo {i}.jpg", "image/jpeg"),
                                      (f"data-{i}.bin", None)])
            if ctype == "text/plain":
                data = f"plain attachment {i}\r\nline two ✓\r\n".encode()
            a = {"filename": name, "content_base64": base64.b64encode(data).decode()}
            if ctype:
                a["content_type"] = ctype
            atts.append(a)
            atts[-1]["_data"] = data
    if atts:
        body["attachments"] = [{k: v for k, v in a.items() if k != "_data"} for a in atts]
    return {"i": i, "body": body, "to": to, "cc": cc, "bcc": bcc, "subject": subject,
            "text": body.get("text"), "html": body.get("html"),
            "atts": [(a["filename"], a["_data"]) for a in atts]}


def norm_text(s):
    return s.replace("\r\n", "\n").rstrip("\n")


def header_mid(raw):
    m = re.search(rb"^Message-ID:[ \t]*<?([^>\r\n]*)>?", raw, re.M | re.I)
    return m.group(1).decode().strip() if m else None


def check_mime(spec, doc, stored):
    """The message as the sink got it against what was posted."""
    where = f"message {spec['i']} ({doc['id']})"
    raw = stored["data"]
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    assert str(msg["Subject"]) == spec["subject"], \
        f"{where}: Subject {str(msg['Subject'])!r} != {spec['subject']!r}"
    frm = msg["From"].addresses
    assert len(frm) == 1 and frm[0].addr_spec == REC and frm[0].display_name == REC_NAME, \
        f"{where}: From {msg['From']!r}"
    for field, people in (("To", spec["to"]), ("Cc", spec["cc"])):
        if not people:
            assert msg[field] is None, f"{where}: a {field} header although none was given"
            continue
        got = [(a.display_name, a.addr_spec) for a in msg[field].addresses]
        assert got == people, f"{where}: {field} {got} != {people}"
    assert msg["Bcc"] is None, f"{where}: Bcc in the headers"
    for _, addr in spec["bcc"]:
        assert addr.encode() not in raw.split(b"\r\n\r\n", 1)[0], f"{where}: Bcc address {addr} in the header"
    assert msg["Message-ID"] is not None and msg["Message-ID"].strip("<> ") == doc["message_id"], \
        f"{where}: Message-ID {msg['Message-ID']!r} != {doc['message_id']!r}"
    assert msg["X-Mailtrail-Id"] and msg["X-Mailtrail-Id"].strip(), f"{where}: no X-Mailtrail-Id"
    assert msg["Date"] is not None, f"{where}: no Date"
    # Structure
    ctype = msg.get_content_type()
    if spec["atts"]:
        assert ctype == "multipart/mixed", f"{where}: {ctype} with attachments"
    elif spec["text"] is not None and spec["html"] is not None:
        assert ctype == "multipart/alternative", f"{where}: {ctype} for text + html"
    elif spec["text"] is not None:
        assert ctype == "text/plain", f"{where}: {ctype} for text only"
    else:
        assert ctype == "text/html", f"{where}: {ctype} for html only"
    if spec["text"] is not None:
        part = msg.get_body(preferencelist=("plain",))
        assert part is not None and part.get_content_type() == "text/plain", f"{where}: no text part"
        assert norm_text(part.get_content()) == norm_text(spec["text"]), \
            f"{where}: the text differs:\n{part.get_content()!r}\n{spec['text']!r}"
    if spec["html"] is not None:
        part = msg.get_body(preferencelist=("html",))
        assert part is not None and part.get_content_type() == "text/html", f"{where}: no html part"
        assert norm_text(part.get_content()) == norm_text(spec["html"]), f"{where}: the html differs"
    if spec["text"] is not None and spec["html"] is not None:
        alt = [p for p in msg.walk() if p.get_content_type() == "multipart/alternative"]
        assert len(alt) == 1, f"{where}: text + html without one multipart/alternative"
        kinds = [p.get_content_type() for p in alt[0].iter_parts()]
        assert kinds == ["text/plain", "text/html"], f"{where}: alternative parts {kinds}"
    atts = [(p.get_filename(), p.get_payload(decode=True)) for p in msg.iter_attachments()]
    assert [a[0] for a in atts] == [a[0] for a in spec["atts"]], \
        f"{where}: attachment names {[a[0] for a in atts]} != {[a[0] for a in spec['atts']]}"
    for (name, got), (_, want) in zip(atts, spec["atts"]):
        if name.endswith(".txt"):  # text/plain: line ends may be normalised
            got, want = got.replace(b"\r\n", b"\n"), want.replace(b"\r\n", b"\n")
        assert got == want, f"{where}: attachment {name!r}: {len(got)} bytes differ from the {len(want)} sent"
    # Envelope
    want_rcpts = sorted(a for _, a in spec["to"] + spec["cc"] + spec["bcc"])
    assert sorted(stored["rcpt_tos"]) == want_rcpts, \
        f"{where}: envelope RCPTs {sorted(stored['rcpt_tos'])} != {want_rcpts}"
    assert stored["mail_from"] == REC, f"{where}: MAIL FROM {stored['mail_from']!r}"
    assert stored["auth_user"] == REC and stored["tls"], f"{where}: not authenticated/TLS: {stored}"


# --- helpers --------------------------------------------------------------------------------

def wait_final(svc, token, mid, timeout=30.0, want=FINAL):
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        doc = expect(svc.req("GET", f"/v1/messages/{mid}", token), 200)
        if doc["state"] in want:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"message {mid} not in {want} after {timeout:g} s: {doc}")


def sink_by_mid(sink):
    out = collections.defaultdict(list)
    for m in sink.messages():
        out[header_mid(m["data"])].append(m)
    return out


def live_check_block(addr):
    """The peer's side of PUT /v1/smtp's live check with security none / auth none."""
    return f"""
S: 220 peer.test ESMTP
C: EHLO *
S: 250-peer.test
S: 250 8BITMIME
C: MAIL FROM:<{addr}>*
S: 250 2.1.0 Ok
C: RCPT TO:<{addr}>*
S: 250 2.1.5 Ok
C: DATA
S: 354 go ahead
C*: .
S: 250 2.0.0 Ok: queued as check
!expect-quit
"""


# --- cases ----------------------------------------------------------------------------------

def case_setup(svc, certs, sink):
    a = svc.init("Outbox Org", "admin@a.example")
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    for name, addr, dn in (("rec", REC, REC_NAME), ("down", DOWN, "Down User"),
                           ("noroute", "noroute@a.example", "No Route")):
        doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                             {"email": addr, "name": dn, "role": "user"}), 201)
        svc.users[name] = {"id": doc["id"], "token": doc["token"], "email": addr}
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": True}), 200)
    r = svc.req("PUT", "/v1/smtp", svc.tok("rec"),
                {"host": "127.0.0.1", "port": sink.port_starttls, "security": "starttls",
                 "username": REC, "password": PASSWORD, "from": REC, "accept_disclaimer": True})
    doc = expect(r, 200)
    assert doc["state"] == "connected", r.show()
    svc.confirmation_mid = doc.get("confirmation_message_id", "").strip("<>")


def case_bulk(svc, sink, count):
    rnd = random.Random(20261126)
    specs = [make_spec(i, rnd) for i in range(count)]
    clients = [Client(svc.port, svc.tok("rec")) for _ in range(THREADS)]
    t0 = time.monotonic()

    def post(k, spec):
        st, doc, raw = clients[k].req("POST", "/v1/messages", spec["body"])
        assert st == 202, f"POST message {spec['i']} -> {st}: {raw[:500]!r}"
        assert doc["state"] == "queued" and doc["id"], doc
        return doc["id"]

    ids = parallel(specs, post)
    t_post = time.monotonic() - t0
    assert len(set(ids)) == count, "duplicate ids from POST"
    # Wait until every message is final.
    deadline = time.monotonic() + 60
    docs = {}
    pending = list(range(count))
    while pending and time.monotonic() < deadline:
        got = parallel(pending, lambda k, i: clients[k].req("GET", f"/v1/messages/{ids[i]}")[1])
        still = []
        for i, doc in zip(pending, got):
            assert doc is not None and doc["id"] == ids[i], doc
            if doc["state"] in FINAL:
                docs[i] = doc
            else:
                still.append(i)
        pending = still
        if pending:
            time.sleep(0.5)
    t_final = time.monotonic() - t0
    assert not pending, f"{len(pending)} messages not final after 60 s, e.g. {ids[pending[0]]}"
    reconnects = sum(c.reconnects for c in clients)
    for c in clients:
        c.close()
    by_mid = sink_by_mid(sink)
    problems = []
    for i, spec in enumerate(specs):
        doc = docs[i]
        if doc["state"] != "sent":
            problems.append(f"message {i} {ids[i]}: state {doc['state']} ({doc.get('last_error')})")
            continue
        want = [("to", a) for _, a in spec["to"]] + [("cc", a) for _, a in spec["cc"]] + \
               [("bcc", a) for _, a in spec["bcc"]]
        got = [(r["kind"], r["address"]) for r in doc["recipients"]]
        if got != want or any(r["state"] != "sent" for r in doc["recipients"]):
            problems.append(f"message {i}: recipients {doc['recipients']} want {want}")
            continue
        if doc["route"] != "custom" or doc["attempts"] != 1 or not doc["sent_at"]:
            problems.append(f"message {i}: route/attempts/sent_at {doc}")
        copies = by_mid.get(doc["message_id"], [])
        if len(copies) != 1:
            problems.append(f"message {i} ({doc['message_id']}): {len(copies)} copies at the sink")
            continue
        try:
            check_mime(spec, doc, copies[0])
        except AssertionError as e:
            problems.append(str(e))
    extra = set(by_mid) - {d["message_id"] for d in docs.values()} - {svc.confirmation_mid}
    assert not extra, f"{len(extra)} unexpected messages at the sink, e.g. {sorted(extra)[:3]}"
    assert not problems, f"{len(problems)} of {count} messages wrong:\n      " + \
        "\n      ".join(problems[:10])
    print(f"     {count} messages: POSTed in {t_post:.1f}s ({count / t_post:.0f}/s), all final after "
          f"{t_final:.1f}s; {reconnects} HTTP reconnects", flush=True)


def post_msg(svc, who, body, status=202, headers=None):
    r = svc.req("POST", "/v1/messages", svc.tok(who), body, headers=headers)
    return expect(r, status), r


def case_partial(svc, sink):
    body = {"to": ["Ok One <ok1@cand.example>", f"Refused <{REFUSED}>"],
            "cc": ["Ok Two <ok2@cand.example>"], "subject": "partial", "text": "hi"}
    doc, _ = post_msg(svc, "rec", body)
    doc = wait_final(svc, svc.tok("rec"), doc["id"])
    assert doc["state"] == "partial", f"state {doc['state']}, want partial: {doc}"
    by = {r["address"]: r for r in doc["recipients"]}
    assert by[REFUSED]["state"] == "failed", doc
    assert by[REFUSED]["reply"] and by[REFUSED]["reply"].startswith("550"), \
        f"the refused recipient's reply is not the 550: {by[REFUSED]}"
    for a in ("ok1@cand.example", "ok2@cand.example"):
        assert by[a]["state"] == "sent", doc
        assert by[a]["reply"] is None or by[a]["reply"].startswith("2"), by[a]
    assert doc["last_error"] and "550" in doc["last_error"], f"last_error: {doc}"
    assert doc["last_class"] == "resp", f"last_class: {doc}"
    copies = sink_by_mid(sink).get(doc["message_id"], [])
    assert len(copies) == 1, f"{len(copies)} copies at the sink"
    assert sorted(copies[0]["rcpt_tos"]) == ["ok1@cand.example", "ok2@cand.example"], copies[0]


def case_idempotency(svc, sink):
    body = {"to": ["idem@cand.example"], "subject": "idempotent", "text": "once"}
    key = {"Idempotency-Key": "idem-" + os.urandom(6).hex()}
    first, _ = post_msg(svc, "rec", body, headers=key)
    second, _ = post_msg(svc, "rec", body, headers=key)
    assert first["id"] == second["id"], f"two ids for one key: {first} {second}"
    doc = wait_final(svc, svc.tok("rec"), first["id"])
    assert doc["state"] == "sent", doc
    third, _ = post_msg(svc, "rec", body, headers=key)  # after sending: still the same
    assert third["id"] == first["id"] and third["state"] == "sent", third
    time.sleep(1.0)
    copies = [m for m in sink.messages() if b"Subject: idempotent" in m["data"]]
    assert len(copies) == 1, f"{len(copies)} messages at the sink for one Idempotency-Key"
    # Another key is another message; a bad key is 400.
    other, _ = post_msg(svc, "rec", body, headers={"Idempotency-Key": key["Idempotency-Key"] + "x"})
    assert other["id"] != first["id"]
    wait_final(svc, svc.tok("rec"), other["id"])
    expect_input(svc.req("POST", "/v1/messages", svc.tok("rec"), body,
                         headers={"Idempotency-Key": "x" * 200}))
    # The same key from 8 clients at once: one message, one id.
    body = {"to": ["idem2@cand.example"], "subject": "idempotent-race", "text": "once"}
    key = {"Idempotency-Key": "race-" + os.urandom(6).hex()}
    clients = [Client(svc.port, svc.tok("rec")) for _ in range(THREADS)]
    got = parallel(list(range(THREADS)), lambda k, _: clients[k].req("POST", "/v1/messages", body,
                                                                     headers=key))
    for c in clients:
        c.close()
    assert all(st == 202 for st, _, _ in got), [st for st, _, _ in got]
    ids = {doc["id"] for _, doc, _ in got}
    assert len(ids) == 1, f"{len(ids)} ids for one Idempotency-Key sent concurrently"
    wait_final(svc, svc.tok("rec"), ids.pop())
    time.sleep(1.0)
    copies = [m for m in sink.messages() if b"Subject: idempotent-race" in m["data"]]
    assert len(copies) == 1, f"{len(copies)} messages at the sink for one concurrent key"


def case_cancel(svc, sink):
    # The "down" user's account: a scripted host that answers the live check, then goes away.
    port = rig.free_port()
    peer = Peer(parse_script(live_check_block(DOWN)))
    peer.start(port)
    try:
        r = svc.req("PUT", "/v1/smtp", svc.tok("down"),
                    {"host": "127.0.0.1", "port": port, "security": "none", "auth": "none",
                     "from": DOWN, "accept_disclaimer": True})
        expect(r, 200)
        assert peer.wait(10) and peer.finished, f"live check script: {peer.errors}"
    finally:
        peer.stop()
    doc, _ = post_msg(svc, "down", {"to": ["never@cand.example"], "subject": "never", "text": "x"})
    mid = doc["id"]
    deadline = time.monotonic() + 20
    while True:
        doc = expect(svc.req("GET", f"/v1/messages/{mid}", svc.tok("down")), 200)
        if doc["state"] == "queued" and doc["attempts"] >= 1:
            break
        assert doc["state"] in ("queued", "sending"), f"not retried: {doc}"
        assert time.monotonic() < deadline, f"the first attempt never ended: {doc}"
        time.sleep(0.05)
    assert doc["last_class"] == "conn" and doc["last_error"], f"first attempt: {doc}"
    assert doc["recipients"][0]["state"] == "pending", doc
    r = svc.req("DELETE", f"/v1/messages/{mid}", svc.tok("down"))
    doc = expect(r, 200)
    assert doc["state"] == "cancelled", r.show()
    again = svc.req("DELETE", f"/v1/messages/{mid}", svc.tok("down"))
    expect(again, 409)
    # Another user cannot see or cancel it.
    expect(svc.req("GET", f"/v1/messages/{mid}", svc.tok("rec")), 404)
    expect(svc.req("DELETE", f"/v1/messages/{mid}", svc.tok("rec")), 404)
    # The host comes back (same port): whatever connects must carry only the later message.
    later_block = f"""
S: 220 peer.test ESMTP
C: EHLO *
S: 250-peer.test
S: 250 8BITMIME
C: MAIL FROM:<{DOWN}>*
S: 250 2.1.0 Ok
C: RCPT TO:<later@cand.example>*
S: 250 2.1.5 Ok
C: DATA
S: 354 go ahead
C*: .
S: 250 2.0.0 Ok: queued as later
!expect-quit
"""
    peer = Peer(parse_script(later_block), accept_timeout=60)
    peer.start(port)
    try:
        later, _ = post_msg(svc, "down", {"to": ["later@cand.example"], "subject": "later", "text": "y"})
        # The account cools down after a session that sent nothing (30 s), then sends.
        ldoc = wait_final(svc, svc.tok("down"), later["id"], timeout=60)
        assert ldoc["state"] == "sent", ldoc
        assert peer.wait(10) and peer.finished and not peer.errors, \
            f"the session after the cancel: {peer.errors}\n" + "\n".join(peer.lines[-20:])
        time.sleep(1.0)
        assert peer.check_extra() is None, "another connection: the cancelled message went out?"
    finally:
        peer.stop()
    doc = expect(svc.req("GET", f"/v1/messages/{mid}", svc.tok("down")), 200)
    assert doc["state"] == "cancelled" and doc["recipients"][0]["state"] == "pending", doc
    # DELETE of a sent message: 409.
    r = svc.req("DELETE", f"/v1/messages/{later['id']}", svc.tok("down"))
    expect(r, 409)
    assert expect(svc.req("GET", f"/v1/messages/{later['id']}", svc.tok("down")), 200)["state"] == "sent"
    expect(svc.req("DELETE", "/v1/messages/msg_nosuch", svc.tok("down")), 404)


def case_no_route(svc, sink):
    r = svc.req("POST", "/v1/messages", svc.tok("noroute"),
                {"to": ["x@cand.example"], "subject": "no route", "text": "x"})
    expect(r, 409)


def case_activity(svc, sink):
    r = svc.req("POST", "/v1/profiles", svc.tok("rec"),
                {"kind": "applicant", "name": "Ünal Candidate", "emails": ["unal@cand.example"]})
    pid = expect(r, 201)["id"]
    doc, _ = post_msg(svc, "rec", {"to": ["Ünal Candidate <unal@cand.example>"],
                                   "cc": ["other@cand.example"], "subject": "Activity ✓",
                                   "text": "Hello Ünal", "attachments": [
                                       {"filename": "cv.pdf", "content_type": "application/pdf",
                                        "content_base64": base64.b64encode(b"%PDF-1.4 x").decode()}]})
    doc = wait_final(svc, svc.tok("rec"), doc["id"])
    assert doc["state"] == "sent", doc
    deadline = time.monotonic() + 5
    while True:
        r = svc.req("GET", f"/v1/profiles/{pid}/activities", svc.tok("rec"))
        acts = expect(r, 200)["activities"]
        if acts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(acts) == 1, f"{len(acts)} activities on the recipient's profile, want 1" + r.show()
    a = acts[0]
    assert a["type"] == "email_sent" and a["source"] == "outbox", r.show()
    assert a["subject"] == "Activity ✓" and a["message_id"].strip("<>") == doc["message_id"], r.show()
    assert [x["name"] for x in a.get("attachments", [])] == ["cv.pdf"], r.show()
    assert any(u["id"] == svc.users["rec"]["id"] for u in a.get("users", [])), r.show()


def case_usage(svc, sink, count):
    """GET /v1/smtp's usage counts accepted recipients per rolling window from the outbox."""
    expect(svc.req("PATCH", "/v1/smtp", svc.tok("rec"),
                   {"limits": [{"limit": 1000000, "window": "day"},
                               {"limit": 10, "window": "minute"}]}), 200)
    doc = expect(svc.req("GET", "/v1/smtp", svc.tok("rec")), 200)
    usage = {u["window"]: u for u in doc["usage"]}
    day, minute = usage["day"], usage["minute"]
    assert day["limit"] == 1000000 and minute["limit"] == 10, doc["usage"]
    # The bulk case alone had `count` messages of 1-3 accepted recipients each.
    assert day["used"] >= count, f"day used {day['used']} < {count}: {doc['usage']}"
    assert day["next_slot_at"] is None, doc["usage"]
    assert 0 <= minute["used"] <= day["used"], doc["usage"]
    if minute["used"] >= 10:
        assert isinstance(minute["next_slot_at"], str), doc["usage"]
    # Another user's sends are not counted for rec, and the relay route is not rec's account.
    other = expect(svc.req("GET", "/v1/smtp", svc.tok("noroute")), 200)
    assert other["usage"] == [], other


def case_bad_input(svc, sink):
    many = [f"r{i}@cand.example" for i in range(101)]
    expect_input(svc.req("POST", "/v1/messages", svc.tok("rec"),
                         {"to": many[:50], "cc": many[50:], "subject": "too many", "text": "x"}))
    expect_input(svc.req("POST", "/v1/messages", svc.tok("rec"),
                         {"to": many, "subject": "too many", "text": "x"}))
    big = base64.b64encode(os.urandom(MAX_MESSAGE_BYTES)).decode()
    r = svc.req("POST", "/v1/messages", svc.tok("rec"),
                {"to": ["big@cand.example"], "subject": "big", "text": "x",
                 "attachments": [{"filename": "big.bin", "content_base64": big}]})
    expect(r, 413)
    expect_input(svc.req("POST", "/v1/messages", svc.tok("rec"),
                         {"to": ["b64@cand.example"], "subject": "b64", "text": "x",
                          "attachments": [{"filename": "a.bin", "content_base64": "@@not base64!"}]}),
                 "base64")
    expect_input(svc.req("POST", "/v1/messages", svc.tok("rec"),
                         {"to": ["x@cand.example"], "subject": "no body"}))
    expect_input(svc.req("POST", "/v1/messages", svc.tok("rec"),
                         {"to": ["x@cand.example"], "subject": "a\r\nBcc: evil@x.example", "text": "x"}))
    time.sleep(0.5)
    for m in sink.messages():
        assert b"big@cand.example" not in m["data"] and b"b64@cand.example" not in m["data"], \
            "a refused message was sent"


def db_count(svc, where, args):
    import sqlite3
    db = sqlite3.connect(f"file:{os.path.join(svc.data, 'mailtrail.db')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM outbox_messages WHERE " + where, args).fetchone()[0]
    finally:
        db.close()


def list_all(svc, who, query=""):
    out, cursor, pages = [], None, 0
    while True:
        q = f"/v1/messages?limit=200{query}" + (f"&cursor={cursor}" if cursor else "")
        doc = expect(svc.req("GET", q, svc.tok(who)), 200)
        out.extend(doc["messages"])
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            return out, pages
        assert pages < 1000


def case_list(svc, sink):
    """GET /v1/messages: a user's own, newest first, paged; by state; an admin's view of the org
    and of one user; the filters and the limit checked."""
    states = {"queued": 0, "held": 1, "sending": 2, "sent": 3, "partial": 4, "failed": 5,
              "cancelled": 6}
    rec = svc.users["rec"]["id"]
    mine, pages = list_all(svc, "rec")
    assert len(mine) == db_count(svc, "user_id = ?", (rec,)) and pages > 1, (len(mine), pages)
    ids = [m["id"] for m in mine]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids), "not newest first"
    assert all(m["user_id"] == rec for m in mine)
    m = mine[-1]  # the oldest: the confirmation mail of the account's save
    assert set(m) == {"id", "state", "route", "attempts", "last_error", "last_class",
                      "message_id", "sent_at", "created_at", "next_attempt_at", "user_id",
                      "campaign_id", "subject"}, m
    assert m["campaign_id"] is None
    for state in ("sent", "partial"):
        got, _ = list_all(svc, "rec", "&state=" + state)
        assert got and all(x["state"] == state for x in got), state
        assert len(got) == db_count(svc, "user_id = ? AND state = ?", (rec, states[state]))
    # a user may name themselves, not another
    got, _ = list_all(svc, "rec", "&user=" + rec)
    assert len(got) == len(mine)
    expect(svc.req("GET", "/v1/messages?user=" + svc.users["down"]["id"], svc.tok("rec")), 403)
    # the admin: the whole org, or one user
    org, _ = list_all(svc, "admin")
    assert len(org) == db_count(svc, "org_id = (SELECT org_id FROM users WHERE id = ?)", (rec,))
    assert {x["user_id"] for x in org} >= {rec, svc.users["down"]["id"]}
    down, _ = list_all(svc, "admin", "&user=" + svc.users["down"]["id"] + "&state=cancelled")
    assert down and all(x["state"] == "cancelled" and x["user_id"] == svc.users["down"]["id"]
                        for x in down), down
    for q, words in (("state=done", "state: must be"), ("limit=201", "limit must be 1..200"),
                     ("cursor=msg_NOPE", "invalid cursor"), ("cursor=ntf_abc", "invalid cursor")):
        doc = expect(svc.req("GET", "/v1/messages?" + q, svc.tok("rec")), 400)
        assert words in doc["error"]["message"], (q, doc)


def post_many(svc, who, count, subject):
    """POSTs `count` one-recipient messages for `who` over THREADS keep-alive connections."""
    clients = [Client(svc.port, svc.tok(who)) for _ in range(THREADS)]

    def post(k, i):
        st, doc, raw = clients[k].req("POST", "/v1/messages",
                                      {"to": [f"c{i}@cand.example"], "subject": f"{subject} {i}",
                                       "text": "x"})
        assert st == 202, f"POST {i} -> {st}: {raw[:300]!r}"
        return doc["id"]

    try:
        return parallel(list(range(count)), post)
    finally:
        for c in clients:
            c.close()


def claims_settled(svc, where, user_id):
    """The count of a user's claimed messages once it has not moved for 2 s."""
    last, still_since, deadline = -1, time.monotonic(), time.monotonic() + 30
    while time.monotonic() < deadline:
        n = db_count(svc, where, (user_id, 2))  # STORE_OUTBOX_SENDING
        if n != last:
            last, still_since = n, time.monotonic()
        elif time.monotonic() - still_since >= 2.0:
            break
        time.sleep(0.1)
    return last


def case_claims_ahead(svc, sink):
    count, sessions, inflight, ahead, claim_max = 1500, 2, 100, 500, 250
    server = rig.StallingSmtp()
    try:
        r = svc.req("PUT", "/v1/smtp", svc.tok("down"),
                    {"host": "127.0.0.1", "port": server.port, "security": "none",
                     "auth": "none", "from": DOWN, "accept_disclaimer": True})
        expect(r, 200)
        server.mode = "data"
        post_many(svc, "down", count, "ahead")
        where = "user_id = ? AND state = ?"
        last = claims_settled(svc, where, svc.users["down"]["id"])
        queued = db_count(svc, where, (svc.users["down"]["id"], 0))  # STORE_OUTBOX_QUEUED
        bound = sessions * inflight + ahead + claim_max
        print(f"     {last} of {count} claimed with the server stalled (bound {bound}), "
              f"{queued} queued", flush=True)
        assert sessions * inflight <= last <= bound, f"{last} claimed, bound {bound}"
        assert queued == count - last, f"{queued} queued + {last} claimed != {count}"
    finally:
        server.close()


def case_claims_skip_unready(svc, sink):
    """Mail of an account whose server never greets does not count against the look-ahead:
    claims go on past it, and mail queued after it for a working account is sent."""
    def new_user(name, server):
        addr = f"{name}@a.example"
        doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                             {"email": addr, "name": name, "role": "user"}), 201)
        svc.users[name] = {"id": doc["id"], "token": doc["token"], "email": addr}
        expect(svc.req("PUT", "/v1/smtp", svc.tok(name),
                       {"host": "127.0.0.1", "port": server.port, "security": "none",
                        "auth": "none", "from": addr, "accept_disclaimer": True}), 200)
        return doc["id"]

    silent, working, busy = rig.StallingSmtp(), rig.StallingSmtp(), rig.StallingSmtp()
    try:
        unready = new_user("unready", silent)
        new_user("working", working)
        new_user("busy", busy)
        silent.mode = "greeting"
        busy.mode = "data"
        # A session of "busy" is up while the unready mail is claimed (its server never answers
        # the DATA): claims bring the bodies of its mail, and must not bring the others'.
        post_many(svc, "busy", 3, "busy")
        deadline = time.monotonic() + 10
        while busy.bytes == 0 and not busy.conns and time.monotonic() < deadline:
            time.sleep(0.05)
        assert busy.conns, "the busy user's session never connected"
        time.sleep(0.5)
        count = 800  # more than MT_SENDER_CLAIM_AHEAD (500)
        post_many(svc, "unready", count, "unready")
        claimed = claims_settled(svc, "user_id = ? AND state = ?", unready)
        assert claimed == count, f"{claimed} of {count} claimed: the look-ahead stopped at them"
        text = svc.req("GET", "/metrics").text
        held = [float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("mailtrail_sender_body_bytes")]
        assert held, "no mailtrail_sender_body_bytes in /metrics"
        # Three bodies of "busy" (~200 bytes each), not 800 of a server that never greeted.
        assert held[0] < 50_000, \
            f"the sender holds {held[0]:.0f} bytes of bodies with {count} messages claimed " \
            "for an account without a ready session"
        # Due after all of them: claimed only if the unready account holds back nothing.
        ids = [post_msg(svc, "working", {"to": [f"after{i}@cand.example"],
                                         "subject": f"after {i}", "text": "x"})[0]["id"]
               for i in range(10)]
        for mid in ids:
            got = wait_final(svc, svc.tok("working"), mid, timeout=15)
            assert got["state"] == "sent", got
    finally:
        silent.close()
        working.close()
        busy.close()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    ap.add_argument("--count", type=int, default=1000, help="messages in the bulk case")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed)")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    if not os.access(os.path.join(a.bin_dir, "mailtrail"), os.X_OK):
        print(f"FAIL setup: {a.bin_dir}/mailtrail is not built\n0 passed, 1 failed")
        return 1
    t0 = time.monotonic()
    with rig.tempdir("mailtrail-outbox-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        sink = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "sink"), user=REC,
                                                 password=PASSWORD, tls=False, plain=False,
                                                 refuse=[REFUSED]))
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
            "MAILTRAIL_NO_AUTH_HOSTS": "127.0.0.1",
            "MAILTRAIL_SMTP_SESSIONS_PER_ACCOUNT": "2",
            "MAILTRAIL_SMTP_MAX_INFLIGHT": "100",
            "MAILTRAIL_LOG_LEVEL": "info",
        })
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, certs, sink)
        r.only = only
        if r.failed:
            print("setup failed; the other cases need it\n" + svc.log_tail() + "\n" + sink.log()[-2000:])
            return r.exit_code()
        cases = [
            ("bulk_exactly_once_mime", lambda s, k: case_bulk(s, k, a.count)),
            ("partial_one_refused", case_partial),
            ("idempotency_key", case_idempotency),
            ("cancel_while_queued", case_cancel),
            ("no_route_409", case_no_route),
            ("outbox_activity", case_activity),
            ("bad_input_400_413", case_bad_input),
            ("usage_counts_sent_recipients", lambda s, k: case_usage(s, k, a.count)),
            ("list_messages", case_list),
            ("claims_run_ahead_bounded", case_claims_ahead),
            ("claims_skip_unready_accounts", case_claims_skip_unready),
        ]
        for name, fn in cases:
            r.run(name, fn, svc, sink)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        if a.keep:
            import shutil
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
