#!/usr/bin/python3
"""The platform relay end to end (DESIGN.md §1 Relay, Message route; §2 `relay`,
`relay_password_file`, `relay_from`; docs/sending.md "The relay route and DMARC").

  /usr/bin/python3 tests/integration/test_relay.py --bin-dir BUILD [--only NAME]... [--keep]

Setup: the rig's auth sink as the relay (STARTTLS and implicit-TLS listeners, AUTH required, user RELAY_USER),
trusted through MAILTRAIL_CA_FILE, configured with
  MAILTRAIL_RELAY=smtp://RELAY_USER@127.0.0.1:PORT, MAILTRAIL_RELAY_PASSWORD_FILE,
  MAILTRAIL_RELAY_FROM=bounces@platform.example;
a second auth sink as one recruiter's custom SMTP; org A with domains ["staffing.example"].
Every sunk message is parsed with Python's email package (policy.default). Cases, in order:

  relay_org_domain          rec@staffing.example (no custom SMTP) -> route relay; envelope MAIL
                            FROM bounces@platform.example, AUTH as the relay user, over TLS;
                            From = the user (name + address), Sender: bounces@platform.example,
                            no Reply-To; with reply_to in the request, Reply-To is that one
  relay_foreign_domain      jane@gmail.com (not an org domain) -> From: "Jane …"
                            <bounces@platform.example>, Reply-To: jane@gmail.com, no Sender;
                            an explicit reply_to wins over the user's address
  relay_activity_email_sent a relay message to a profile's address is "email_sent" from the
                            user, for the org-domain user and for the free-mail user (whose
                            From header is the relay's address)
  custom_then_relay         a user with a connected custom SMTP (second sink) -> route custom,
                            envelope and From = their address, nothing at the relay; after
                            DELETE /v1/smtp the next message goes through the relay
  relay_auth_refused        a second server (own data dir) whose relay password file holds a
                            wrong password: the message stays queued, last_class "auth",
                            next_attempt_at set, never sent; nothing arrives at the relay
  relay_smtps               a third server with MAILTRAIL_RELAY=smtps://… (implicit TLS port)
                            sends through the relay the same way
  metrics                   /metrics has mailtrail_sends_total{route="relay",class="ok"} and
                            mailtrail_outbox_messages{state="sent"} (gauge refreshed every 10 s)
  route_chosen_at_delivery  a message stored while the custom route was planned (its server
                            silent) goes through the relay once custom_smtp is switched off
                            (restarts the server: last)

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed. Standard
library only (Debian's /usr/bin/python3; the rig's aiosmtpd).
"""

import argparse
import contextlib
import email.policy
import os
import re
import shutil
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
REC = "rec@staffing.example"
REC_NAME = "Rita \"Rec\" O'Neil"
JANE = "jane@gmail.com"
JANE_NAME = "Jane Frée, Recruiting"
CUS = "cus@staffing.example"
CUS_NAME = "Carl Custom"
CUS_PASSWORD = "custom-s3cret-pw"
FINAL = ("sent", "partial", "failed", "cancelled")


# --- helpers --------------------------------------------------------------------------------

def parse(raw):
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def header_mid(raw):
    m = re.search(rb"^Message-ID:[ \t]*<?([^>\r\n]*)>?", raw, re.M | re.I)
    return m.group(1).decode().strip() if m else None


def wait_final(svc, token, mid, timeout=20.0, want=FINAL):
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        doc = expect(svc.req("GET", f"/v1/messages/{mid}", token), 200)
        if doc["state"] in want:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"message {mid} not in {want} after {timeout:g} s: {doc}")


def copies_of(sink, message_id, want=1, timeout=5.0):
    """The sink's copies of a Message-ID (waits until `want` arrived or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [m for m in sink.messages() if header_mid(m["data"]) == message_id]
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def send(svc, who, body, status=202, headers=None):
    r = svc.req("POST", "/v1/messages", svc.tok(who), body, headers=headers)
    return expect(r, status)


def send_and_sink(svc, who, body, sink):
    """POSTs, waits until sent, returns (GET doc, sink metadata, parsed message)."""
    doc = send(svc, who, body)
    doc = wait_final(svc, svc.tok(who), doc["id"])
    assert doc["state"] == "sent", f"not sent: {doc}"
    copies = copies_of(sink, doc["message_id"])
    assert len(copies) == 1, f"{len(copies)} copies of {doc['message_id']} at the sink, want 1"
    return doc, copies[0], parse(copies[0]["data"])


def single_addr(msg, field):
    h = msg[field]
    assert h is not None, f"no {field} header:\n{msg.as_string()[:1500]}"
    addrs = h.addresses
    assert len(addrs) == 1, f"{field}: {len(addrs)} addresses: {str(h)!r}"
    return addrs[0].display_name, addrs[0].addr_spec


def check_relay_envelope(where, stored, rcpts, port="starttls"):
    assert stored["mail_from"] == RELAY_FROM, f"{where}: MAIL FROM {stored['mail_from']!r}, want {RELAY_FROM}"
    assert stored["auth_user"] == RELAY_USER, f"{where}: AUTH user {stored['auth_user']!r}, want {RELAY_USER}"
    assert stored["tls"] is True and stored["port"] == port, f"{where}: not over {port}: {stored}"
    assert sorted(stored["rcpt_tos"]) == sorted(rcpts), f"{where}: RCPTs {stored['rcpt_tos']} != {rcpts}"


def common_headers(where, doc, msg, subject):
    assert str(msg["Subject"]) == subject, f"{where}: Subject {str(msg['Subject'])!r}"
    assert msg["Message-ID"] is not None and msg["Message-ID"].strip("<> ") == doc["message_id"], \
        f"{where}: Message-ID {msg['Message-ID']!r} != {doc['message_id']!r}"
    assert msg["X-Mailtrail-Id"] and msg["X-Mailtrail-Id"].strip(), f"{where}: no X-Mailtrail-Id"
    assert len(msg.get_all("From", [])) == 1, f"{where}: {len(msg.get_all('From', []))} From headers"
    assert len(msg.get_all("Sender", [])) <= 1 and len(msg.get_all("Reply-To", [])) <= 1, \
        f"{where}: repeated Sender/Reply-To"


# --- cases ----------------------------------------------------------------------------------

def case_setup(svc, relay, custom):
    a = svc.init("Relay Org A", "admin@" + ORG_DOMAIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    org = expect(svc.req("PUT", "/v1/org", svc.tok("admin"),
                         {"domains": [ORG_DOMAIN], "features": {"custom_smtp": True}}), 200)
    assert org["domains"] == [ORG_DOMAIN] and org["features"]["custom_smtp"] is True, org
    for name, addr, dn in (("rec", REC, REC_NAME), ("jane", JANE, JANE_NAME), ("cus", CUS, CUS_NAME)):
        doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                             {"email": addr, "name": dn, "role": "user"}), 201)
        assert doc["email"] == addr, doc
        svc.users[name] = {"id": doc["id"], "token": doc["token"], "email": addr}


def case_relay_org_domain(svc, relay, custom):
    subject = "Relay org domain ✓"
    rcpts = ["Cand One <cand1@cand.example>"]
    doc, stored, msg = send_and_sink(svc, "rec", {"to": rcpts, "cc": ["cc1@cand.example"],
                                                  "bcc": ["bcc1@cand.example"],
                                                  "subject": subject, "text": "Hello from the relay"},
                                     relay)
    where = f"org-domain message {doc['id']}"
    assert doc["route"] == "relay", f"{where}: route {doc['route']!r}, want relay: {doc}"
    assert doc["attempts"] == 1 and doc["sent_at"], f"{where}: {doc}"
    assert all(r["state"] == "sent" for r in doc["recipients"]), f"{where}: {doc['recipients']}"
    check_relay_envelope(where, stored, ["cand1@cand.example", "cc1@cand.example", "bcc1@cand.example"])
    common_headers(where, doc, msg, subject)
    assert single_addr(msg, "From") == (REC_NAME, REC), f"{where}: From {str(msg['From'])!r}"
    assert msg["Sender"] is not None, f"{where}: no Sender header on the relay"
    assert msg["Sender"].address.addr_spec == RELAY_FROM, f"{where}: Sender {str(msg['Sender'])!r}"
    assert msg["Reply-To"] is None, f"{where}: a Reply-To although none was asked: {str(msg['Reply-To'])!r}"
    assert msg["Bcc"] is None, f"{where}: Bcc in the headers"
    assert doc["message_id"].endswith("@" + ORG_DOMAIN), f"{where}: Message-ID {doc['message_id']}"
    # With an explicit reply_to: that one, From and Sender unchanged.
    subject = "Relay org domain with reply_to"
    doc, stored, msg = send_and_sink(svc, "rec", {"to": ["cand2@cand.example"], "subject": subject,
                                                  "text": "x", "reply_to": "Team Desk <desk@staffing.example>"},
                                     relay)
    where = f"org-domain message {doc['id']} with reply_to"
    assert doc["route"] == "relay", f"{where}: {doc}"
    check_relay_envelope(where, stored, ["cand2@cand.example"])
    common_headers(where, doc, msg, subject)
    assert single_addr(msg, "From") == (REC_NAME, REC), f"{where}: From {str(msg['From'])!r}"
    assert msg["Sender"] is not None and msg["Sender"].address.addr_spec == RELAY_FROM, \
        f"{where}: Sender {msg['Sender']!r}"
    assert single_addr(msg, "Reply-To")[1] == "desk@staffing.example", \
        f"{where}: Reply-To {str(msg['Reply-To'])!r}"


def case_relay_foreign_domain(svc, relay, custom):
    subject = "Relay free-mail user"
    doc, stored, msg = send_and_sink(svc, "jane", {"to": ["Cand Three <cand3@cand.example>"],
                                                   "subject": subject, "text": "Hi from Jane",
                                                   "html": "<p>Hi from Jane</p>"}, relay)
    where = f"free-mail message {doc['id']}"
    assert doc["route"] == "relay", f"{where}: route {doc['route']!r}: {doc}"
    check_relay_envelope(where, stored, ["cand3@cand.example"])
    common_headers(where, doc, msg, subject)
    assert single_addr(msg, "From") == (JANE_NAME, RELAY_FROM), \
        f"{where}: From {str(msg['From'])!r}, want \"{JANE_NAME}\" <{RELAY_FROM}>"
    assert single_addr(msg, "Reply-To")[1] == JANE, f"{where}: Reply-To {str(msg['Reply-To'])!r}, want {JANE}"
    assert msg["Sender"] is None, f"{where}: a Sender header although From is the relay: {str(msg['Sender'])!r}"
    assert JANE.encode() not in stored["mail_from"].encode(), stored
    # An explicit reply_to wins over the user's own address.
    subject = "Relay free-mail user, explicit reply_to"
    doc, stored, msg = send_and_sink(svc, "jane", {"to": ["cand4@cand.example"], "subject": subject,
                                                   "text": "x", "reply_to": "Hiring <hiring@agency.example>"},
                                     relay)
    where = f"free-mail message {doc['id']} with reply_to"
    check_relay_envelope(where, stored, ["cand4@cand.example"])
    common_headers(where, doc, msg, subject)
    assert single_addr(msg, "From") == (JANE_NAME, RELAY_FROM), f"{where}: From {str(msg['From'])!r}"
    rt = single_addr(msg, "Reply-To")
    assert rt == ("Hiring", "hiring@agency.example"), f"{where}: Reply-To {str(msg['Reply-To'])!r}"


def case_relay_activity(svc, relay, custom):
    """A relay message is the user's own mail: on the recipient's profile it is "email_sent"
    (DESIGN.md §1 Activity), also when the From header had to be the relay's address."""
    cand = "cand-act@cand.example"
    r = svc.req("POST", "/v1/profiles", svc.tok("rec"),
                {"kind": "applicant", "name": "Activity Candidate", "emails": [cand]})
    pid = expect(r, 201)["id"]
    sent = {}
    for who in ("rec", "jane"):
        doc = send(svc, who, {"to": [f"Activity Candidate <{cand}>"], "subject": f"Activity via relay ({who})",
                              "text": f"hello from {who}"})
        doc = wait_final(svc, svc.tok(who), doc["id"])
        assert doc["state"] == "sent" and doc["route"] == "relay", doc
        sent[who] = doc
    deadline = time.monotonic() + 5
    while True:
        r = svc.req("GET", f"/v1/profiles/{pid}/activities", svc.tok("rec"))
        acts = expect(r, 200)["activities"]
        if len(acts) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    by_mid = {a["message_id"].strip("<>"): a for a in acts}
    problems = []
    for who, addr in (("rec", REC), ("jane", JANE)):
        a = by_mid.get(sent[who]["message_id"])
        if a is None:
            problems.append(f"{who}: no activity for {sent[who]['message_id']}")
            continue
        if a["source"] != "outbox":
            problems.append(f"{who}: source {a['source']!r}, want outbox")
        if a["type"] != "email_sent":
            problems.append(f"{who}: type {a['type']!r}, want email_sent (the user's own mail "
                            f"sent through the relay; activity from = {a['from']})")
        if a["from"]["address"] != addr:
            problems.append(f"{who}: activity from {a['from']}, want the user {addr}")
        if not any(u["id"] == svc.users[who]["id"] for u in a.get("users", [])):
            problems.append(f"{who}: users {a.get('users')} lacks the sender")
    assert not problems, "; ".join(problems) + r.show()


def case_custom_then_relay(svc, relay, custom):
    r = svc.req("PUT", "/v1/smtp", svc.tok("cus"),
                {"host": "127.0.0.1", "port": custom.port_starttls, "security": "starttls",
                 "username": CUS, "password": CUS_PASSWORD, "from": CUS, "accept_disclaimer": True})
    assert expect(r, 200)["state"] == "connected", r.show()
    relay_before = len(relay.messages())
    subject = "Custom route"
    doc, stored, msg = send_and_sink(svc, "cus", {"to": ["cand5@cand.example"], "subject": subject,
                                                  "text": "via my own SMTP"}, custom)
    where = f"custom message {doc['id']}"
    assert doc["route"] == "custom", f"{where}: route {doc['route']!r}: {doc}"
    assert stored["mail_from"] == CUS and stored["auth_user"] == CUS and stored["tls"], f"{where}: {stored}"
    assert stored["rcpt_tos"] == ["cand5@cand.example"], f"{where}: {stored}"
    common_headers(where, doc, msg, subject)
    assert single_addr(msg, "From") == (CUS_NAME, CUS), f"{where}: From {str(msg['From'])!r}"
    assert msg["Sender"] is None and msg["Reply-To"] is None, \
        f"{where}: Sender/Reply-To on the custom route: {msg['Sender']!r} {msg['Reply-To']!r}"
    assert len(relay.messages()) == relay_before, f"{where}: something reached the relay"
    # Custom SMTP off: the next message takes the relay.
    expect(svc.req("DELETE", "/v1/smtp", svc.tok("cus")), 204)
    assert expect(svc.req("GET", "/v1/smtp", svc.tok("cus")), 200)["state"] == "off"
    custom_before = len(custom.messages())
    subject = "After DELETE /v1/smtp"
    doc, stored, msg = send_and_sink(svc, "cus", {"to": ["cand6@cand.example"], "subject": subject,
                                                  "text": "via the relay now"}, relay)
    where = f"message {doc['id']} after DELETE /v1/smtp"
    assert doc["route"] == "relay", f"{where}: route {doc['route']!r}: {doc}"
    check_relay_envelope(where, stored, ["cand6@cand.example"])
    common_headers(where, doc, msg, subject)
    assert single_addr(msg, "From") == (CUS_NAME, CUS), f"{where}: From {str(msg['From'])!r}"
    assert msg["Sender"] is not None and msg["Sender"].address.addr_spec == RELAY_FROM, \
        f"{where}: Sender {msg['Sender']!r}"
    assert len(custom.messages()) == custom_before, f"{where}: the custom SMTP got it too"


def case_route_at_delivery(svc, relay, custom):
    """The route is chosen for each attempt, not when the message was stored: a message queued
    for the custom route while its server was silent goes through the relay once the org's
    custom_smtp switch is off, with the relay's fields (From the user, Sender the relay)."""
    import signal
    r = svc.req("PUT", "/v1/smtp", svc.tok("cus"),
                {"host": "127.0.0.1", "port": custom.port_starttls, "security": "starttls",
                 "username": CUS, "password": CUS_PASSWORD, "from": CUS, "accept_disclaimer": True})
    assert expect(r, 200)["state"] == "connected", r.show()
    custom_before = len(custom.messages())
    os.kill(custom.proc.pid, signal.SIGSTOP)  # connections wait for a greeting that never comes
    try:
        doc = send(svc, "cus", {"to": ["cand8@cand.example"], "subject": "Chosen at delivery",
                                "text": "planned for the custom route"})
        mid = doc["id"]
        got = expect(svc.req("GET", f"/v1/messages/{mid}", svc.tok("cus")), 200)
        assert got["route"] == "custom" and got["state"] in ("queued", "sending"), got
        expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": False}), 200)
        svc.stop()  # the sender gives its lease back: the message is queued again
        svc.start()
    finally:
        os.kill(custom.proc.pid, signal.SIGCONT)
    try:
        doc = wait_final(svc, svc.tok("cus"), mid)
        where = f"message {mid} after custom_smtp was switched off"
        assert doc["state"] == "sent" and doc["route"] == "relay", f"{where}: {doc}"
        copies = copies_of(relay, doc["message_id"])
        assert len(copies) == 1, f"{where}: {len(copies)} copies at the relay"
        check_relay_envelope(where, copies[0], ["cand8@cand.example"])
        msg = parse(copies[0]["data"])
        common_headers(where, doc, msg, "Chosen at delivery")
        assert single_addr(msg, "From") == (CUS_NAME, CUS), f"{where}: From {str(msg['From'])!r}"
        assert msg["Sender"] is not None and msg["Sender"].address.addr_spec == RELAY_FROM, \
            f"{where}: Sender {msg['Sender']!r}"
        time.sleep(0.3)
        assert len(custom.messages()) == custom_before, f"{where}: the custom SMTP got it too"
    finally:
        expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": True}), 200)


def case_relay_auth_refused(bad, relay):
    before = len(relay.messages())
    doc = send(bad, "admin", {"to": ["cand7@cand.example"], "subject": "Relay auth refused",
                              "text": "never delivered"})
    mid = doc["id"]
    deadline = time.monotonic() + 20
    while True:
        doc = expect(bad.req("GET", f"/v1/messages/{mid}", bad.tok("admin")), 200)
        if doc["state"] == "queued" and doc["attempts"] >= 1:
            break
        assert doc["state"] in ("queued", "sending"), f"not kept for a retry: {doc}"
        assert time.monotonic() < deadline, f"the first attempt never ended: {doc}"
        time.sleep(0.05)
    assert doc["route"] == "relay", doc
    assert doc["last_class"] == "auth", f"last_class {doc['last_class']!r}, want auth: {doc}"
    assert doc["last_error"], f"no last_error: {doc}"
    assert doc["next_attempt_at"], f"queued without a next attempt: {doc}"
    assert doc["sent_at"] is None and all(r["state"] == "pending" for r in doc["recipients"]), doc
    time.sleep(1.0)
    doc = expect(bad.req("GET", f"/v1/messages/{mid}", bad.tok("admin")), 200)
    assert doc["state"] == "queued", f"changed state after the refused AUTH: {doc}"
    msgs = relay.messages()
    assert len(msgs) == before and not any(b"Relay auth refused" in m["data"] for m in msgs), \
        "a message reached the relay although AUTH was refused"
    # Clean up: the message must not be retried against the relay after the test.
    expect(bad.req("DELETE", f"/v1/messages/{mid}", bad.tok("admin")), 200)


def case_relay_smtps(tls_svc, relay):
    """smtps:// = implicit TLS on the relay's TLS port, same headers."""
    doc, stored, msg = send_and_sink(tls_svc, "admin", {"to": ["cand8@cand.example"],
                                                        "subject": "Relay over smtps", "text": "x"},
                                     relay)
    where = f"smtps message {doc['id']}"
    assert doc["route"] == "relay", f"{where}: {doc}"
    check_relay_envelope(where, stored, ["cand8@cand.example"], port="tls")
    common_headers(where, doc, msg, "Relay over smtps")
    assert single_addr(msg, "From")[1] == "admin@" + ORG_DOMAIN, f"{where}: From {str(msg['From'])!r}"
    assert msg["Sender"] is not None and msg["Sender"].address.addr_spec == RELAY_FROM, \
        f"{where}: Sender {msg['Sender']!r}"


def metric_values(text, name):
    """[(labels dict, value)] of a metric in Prometheus text."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = re.match(r"^" + re.escape(name) + r"(?:\{([^}]*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        out.append((labels, float(m.group(2))))
    return out


def case_metrics(svc, relay, custom):
    # Relay messages sent by the earlier cases: 2 (rec) + 2 (jane) + 2 (activity) + 1 (cus).
    relay_sent = 7
    deadline = time.monotonic() + 15
    while True:
        r = svc.req("GET", "/metrics")
        assert r.status == 200, r.show()
        sends = [v for lab, v in metric_values(r.text, "mailtrail_sends_total")
                 if lab.get("route") == "relay" and lab.get("class") == "ok"]
        gauge = [v for lab, v in metric_values(r.text, "mailtrail_outbox_messages")
                 if lab.get("state") == "sent"]
        if sends and gauge and gauge[0] >= relay_sent + 1:
            break
        if time.monotonic() > deadline:
            lines = [ln for ln in r.text.splitlines()
                     if ln.startswith(("mailtrail_sends_total", "mailtrail_outbox_messages"))]
            raise AssertionError(f"metrics after 15 s: sends(relay,ok)={sends} outbox(sent)={gauge}\n      "
                                 + "\n      ".join(lines))
        time.sleep(0.5)
    assert sends[0] >= relay_sent, f"mailtrail_sends_total{{route=relay,class=ok}} = {sends[0]}, want >= {relay_sent}"
    custom_sends = [v for lab, v in metric_values(r.text, "mailtrail_sends_total")
                    if lab.get("route") == "custom" and lab.get("class") == "ok"]
    assert custom_sends and custom_sends[0] >= 1, f"no custom sends counted: {custom_sends}"
    print(f"     sends_total relay/ok={sends[0]:g} custom/ok={custom_sends[0]:g}; "
          f"outbox_messages sent={gauge[0]:g}", flush=True)


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
    with rig.tempdir("mailtrail-relay-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        relay = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "relay-sink"),
                                                  user=RELAY_USER, password=RELAY_PASSWORD,
                                                  tls=True, plain=False, require_auth=True))
        custom = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "custom-sink"),
                                                   user=CUS, password=CUS_PASSWORD,
                                                   tls=False, plain=False, require_auth=True))
        good_pw = os.path.join(tmp, "relay-password")
        bad_pw = os.path.join(tmp, "relay-password-wrong")
        for path, pw in ((good_pw, RELAY_PASSWORD), (bad_pw, "not-the-password")):
            with open(path, "w") as f:
                f.write(pw + "\n")
            os.chmod(path, 0o600)
        relay_env = {
            "MAILTRAIL_RELAY": f"smtp://{RELAY_USER}@127.0.0.1:{relay.port_starttls}",
            "MAILTRAIL_RELAY_FROM": RELAY_FROM,
            "MAILTRAIL_LOG_LEVEL": "info",
        }
        svc = Service(a.bin_dir, tmp, certs=certs,
                      env=dict(relay_env, MAILTRAIL_RELAY_PASSWORD_FILE=good_pw))
        stack.callback(svc.stop)
        bad_tmp = os.path.join(tmp, "bad")
        os.makedirs(bad_tmp)
        bad = Service(a.bin_dir, bad_tmp, certs=certs,
                      env=dict(relay_env, MAILTRAIL_RELAY_PASSWORD_FILE=bad_pw))
        stack.callback(bad.stop)

        tls_tmp = os.path.join(tmp, "smtps")
        os.makedirs(tls_tmp)
        tls_svc = Service(a.bin_dir, tls_tmp, certs=certs, env=dict(
            relay_env, MAILTRAIL_RELAY=f"smtps://{RELAY_USER}@127.0.0.1:{relay.port_tls}",
            MAILTRAIL_RELAY_PASSWORD_FILE=good_pw))
        stack.callback(tls_svc.stop)

        def setup_other(other, name):
            o = other.init(name, "admin@" + ORG_DOMAIN)
            other.users["admin"] = {"id": o["user_id"], "token": o["token"]}
            other.start()
            expect(other.req("PUT", "/v1/org", other.tok("admin"), {"domains": [ORG_DOMAIN]}), 200)

        only, r.only = r.only, None
        r.run("setup", case_setup, svc, relay, custom)
        r.only = only
        if r.failed:
            print("setup failed; the other cases need it\n" + svc.log_tail() + "\n" + relay.log()[-2000:])
            return r.exit_code()
        cases = [
            ("relay_org_domain", case_relay_org_domain),
            ("relay_foreign_domain", case_relay_foreign_domain),
            ("relay_activity_email_sent", case_relay_activity),
            ("custom_then_relay", case_custom_then_relay),
        ]
        for name, fn in cases:
            r.run(name, fn, svc, relay, custom)
        if not r.only or any(o in "relay_auth_refused" for o in r.only):
            r.run("relay_auth_refused",
                  lambda: (setup_other(bad, "Relay Org Bad"), case_relay_auth_refused(bad, relay)))
            bad.stop()
        if not r.only or any(o in "relay_smtps" for o in r.only):
            r.run("relay_smtps",
                  lambda: (setup_other(tls_svc, "Relay Org TLS"), case_relay_smtps(tls_svc, relay)))
            tls_svc.stop()
        r.run("metrics", case_metrics, svc, relay, custom)
        # Last: it restarts the server (the metrics above count since the start).
        r.run("route_chosen_at_delivery", case_route_at_delivery, svc, relay, custom)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
            for other in (bad, tls_svc):
                if other.proc is not None:
                    print(f"--- {other.tmp} server log (tail)\n" + other.log_tail(20), flush=True)
        if a.keep:
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
