#!/usr/bin/python3
"""The disconnect story end to end (DESIGN.md §1 SMTP account states, Notification; §2
GET /v1/notifications; docs/sending.md "When a custom SMTP account breaks").

  /usr/bin/python3 tests/integration/test_disconnect.py --bin-dir BUILD [--only NAME]... [--keep]

Setup: the rig's auth sink as the platform relay (STARTTLS, AUTH required); a second auth sink
as the recruiters' custom SMTP whose accepted password is read from a file on every AUTH
(--password-file), so a test changes it while the sink runs; MAILTRAIL_SMTP_CONFIRM_DELAY=2s.
Org with domains ["staffing.example"] and custom_smtp on; the admin (ADMIN) and a second user
(PIN) are the recruiters. Cases, in order:

  transient        the sink refuses the password once (the file changed), then accepts it again
                   before the confirming attempt: the message goes through custom SMTP, the
                   account stays connected, no notification, nothing at the relay
  password_changed the password changed at the sink: after the confirming attempt the account is
                   disconnected (last_error class auth), exactly one notification (kind
                   smtp_disconnected, naming the address and host), exactly one notice mail to
                   ADMIN at the relay sink, the pending message delivered via the relay, a
                   campaign of 3 created meanwhile waits held (nothing at either sink); nine
                   more messages go via the relay and make no further notification (API and
                   relay sink); metrics count one auth disconnect and one notification
  reconnect        the working settings saved again (PUT /v1/smtp) -> connected; the next
                   message goes through custom SMTP again, and the held campaign goes there too
                   (3 sent, none at the relay)
  pin_mismatch     PIN's account pins the sink's certificate; the sink restarts on the same port
                   with another certificate -> disconnected with a tls reason, one notification
                   (PIN's; ADMIN's list unchanged), one notice mail to PIN

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed.
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
ADMIN = "admin@" + ORG_DOMAIN
PIN = "pia@" + ORG_DOMAIN
SINK_USER = "login@" + ORG_DOMAIN
GOOD_PW = "custom-s3cret-pw"
NOTICE_SUBJECT = "Your Custom SMTP account was disconnected"
FINAL = ("sent", "partial", "failed", "cancelled")

CAMPAIGN_SUBJECT = "Campaign while disconnected"


def parse(raw):
    return BytesParser(policy=email.policy.default).parsebytes(raw)


def header_mid(raw):
    m = re.search(rb"^Message-ID:[ \t]*<?([^>\r\n]*)>?", raw, re.M | re.I)
    return m.group(1).decode().strip() if m else None


def wait_until(what, fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def wait_final(svc, token, mid, timeout=40.0):
    doc = {}

    def final():
        nonlocal doc
        doc = expect(svc.req("GET", f"/v1/messages/{mid}", token), 200)
        return doc if doc["state"] in FINAL else None
    try:
        return wait_until(f"message {mid} final", final, timeout)
    except AssertionError:
        raise AssertionError(f"message {mid} not final after {timeout:g} s: {doc}")


def send(svc, who, subject):
    doc = expect(svc.req("POST", "/v1/messages", svc.tok(who),
                         {"to": ["cand@cand.example"], "subject": subject, "text": subject}), 202)
    return doc["id"]


def copies(sink, message_id):
    return [m for m in sink.messages() if header_mid(m["data"]) == message_id]


def notices(relay, to):
    return [m for m in relay.messages()
            if m["rcpt_tos"] == [to] and str(parse(m["data"])["Subject"]) == NOTICE_SUBJECT]


def notifications(svc, who):
    doc = expect(svc.req("GET", "/v1/notifications", svc.tok(who)), 200)
    assert set(doc) == {"notifications", "next_cursor"}, doc
    for n in doc["notifications"]:
        assert set(n) == {"id", "kind", "text", "created_at"}, n
    return doc["notifications"]


def set_password(path, pw):
    with open(path + ".tmp", "w") as f:
        f.write(pw + "\n")
    os.rename(path + ".tmp", path)


def log_lines(svc, *needles):
    text = svc.log_text().decode(errors="replace")
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def put_smtp(svc, who, port, fingerprint=None):
    body = {"host": "127.0.0.1", "port": port, "security": "starttls", "username": SINK_USER,
            "password": GOOD_PW, "from": svc.users[who]["email"], "accept_disclaimer": True}
    if fingerprint:
        body["tls_fingerprint"] = fingerprint
    doc = expect(svc.req("PUT", "/v1/smtp", svc.tok(who), body), 200)
    assert doc["state"] == "connected", doc


def metric(svc, name, labels):
    text = svc.req("GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- cases ----------------------------------------------------------------------------------

def case_setup(svc, ctx):
    a = svc.init("Disconnect Org", ADMIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"], "email": ADMIN}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"),
                   {"domains": [ORG_DOMAIN], "features": {"custom_smtp": True}}), 200)
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": PIN, "name": "Pia Pin", "role": "user"}), 201)
    svc.users["pin"] = {"id": doc["id"], "token": doc["token"], "email": PIN}
    put_smtp(svc, "admin", ctx["custom"].port_starttls)
    assert notifications(svc, "admin") == []


def case_transient(svc, ctx):
    custom, relay, pwfile = ctx["custom"], ctx["relay"], ctx["pwfile"]
    relay_before = len(relay.messages())
    broken_before = len(log_lines(svc, "sender.account_broken", "verdict=confirm"))
    set_password(pwfile, "changed-for-a-moment")
    mid = send(svc, "admin", "Transient failure")
    wait_until("the first auth failure", lambda: len(log_lines(
        svc, "sender.account_broken", "verdict=confirm")) > broken_before, 20)
    set_password(pwfile, GOOD_PW)  # before the confirming attempt (2 s after the failure)
    doc = wait_final(svc, svc.tok("admin"), mid)
    assert doc["state"] == "sent" and doc["route"] == "custom", doc
    assert len(copies(custom, doc["message_id"])) == 1, "not at the custom sink once"
    smtp = expect(svc.req("GET", "/v1/smtp", svc.tok("admin")), 200)
    assert smtp["state"] == "connected", smtp
    assert notifications(svc, "admin") == []
    assert len(relay.messages()) == relay_before, "something reached the relay"
    assert log_lines(svc, "sender.confirm_cleared"), "the confirming attempt was not logged"


def case_password_changed(svc, ctx):
    custom, relay, pwfile = ctx["custom"], ctx["relay"], ctx["pwfile"]
    set_password(pwfile, "the-user-changed-it")
    mid = send(svc, "admin", "Pending while the password changes")
    t0 = time.monotonic()
    smtp = wait_until("disconnected", lambda: (lambda d: d if d["state"] == "disconnected" else None)(
        expect(svc.req("GET", "/v1/smtp", svc.tok("admin")), 200)), 40)
    # One confirming attempt after the 2 s pause, not at once.
    assert time.monotonic() - t0 >= 1.5, "disconnected without the pause"
    assert smtp["last_error"].startswith("auth"), smtp
    assert smtp["host"] == "127.0.0.1", smtp
    assert smtp["route"] == "relay", smtp
    # A campaign while disconnected waits held: it never spills onto the relay (nor is it
    # capped as a relay campaign).
    camp = expect(svc.req("POST", "/v1/campaigns", svc.tok("admin"),
                          {"recipients": [{"email": f"c{i}@cand.example"} for i in range(3)],
                           "subject": CAMPAIGN_SUBJECT, "text": "bulk"}), 202)
    ctx["campaign"] = camp["id"]
    doc = wait_final(svc, svc.tok("admin"), mid)
    assert doc["state"] == "sent" and doc["route"] == "relay", doc
    assert len(copies(relay, doc["message_id"])) == 1, "the pending message is not at the relay"
    c = wait_until("the campaign held", lambda: (lambda d: d if d["counts"]["held"] == 3 else None)(
        expect(svc.req("GET", f"/v1/campaigns/{camp['id']}", svc.tok("admin")), 200)), 20)
    assert c["counts"]["sent"] == 0, c
    assert copies(custom, doc["message_id"]) == [], "the custom sink got it"
    ns = notifications(svc, "admin")
    assert len(ns) == 1, ns
    n = ns[0]
    assert n["kind"] == "smtp_disconnected", n
    assert ADMIN in n["text"] and "127.0.0.1" in n["text"] and "auth" in n["text"], n
    assert GOOD_PW not in n["text"] and "the-user-changed-it" not in n["text"], n
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", n["created_at"]), n
    mails = wait_until("the notice mail", lambda: notices(relay, ADMIN), 20)
    assert len(mails) == 1, f"{len(mails)} notice mails"
    msg = parse(mails[0]["data"])
    assert mails[0]["mail_from"] == RELAY_FROM and mails[0]["auth_user"] == RELAY_USER, mails[0]
    assert ADMIN in msg.get_body(("plain",)).get_content(), msg.as_string()[:2000]
    assert str(msg["Auto-Submitted"]) == "auto-generated", msg.as_string()[:2000]
    # Nine more: through the relay, no further notice (API, relay sink).
    ids = [send(svc, "admin", f"While disconnected {i}") for i in range(9)]
    for i in ids:
        d = wait_final(svc, svc.tok("admin"), i)
        assert d["state"] == "sent" and d["route"] == "relay", d
    time.sleep(3)  # a late second notice would have arrived by now
    assert len(notifications(svc, "admin")) == 1, notifications(svc, "admin")
    assert len(notices(relay, ADMIN)) == 1, "a second notice mail"
    assert metric(svc, "mailtrail_smtp_disconnects_total", 'class="auth"') == 1
    assert metric(svc, "mailtrail_notifications_total", 'kind="smtp_disconnected"') == 1
    for line in svc.req("GET", "/metrics").body.decode().splitlines():
        if line.startswith(("mailtrail_smtp_disconnects_total{", "mailtrail_notifications_total{")):
            assert re.match(r'^\w+\{(class|kind)="\w+"\} \d+$', line), f"labels: {line}"


def case_reconnect(svc, ctx):
    custom, relay, pwfile = ctx["custom"], ctx["relay"], ctx["pwfile"]
    set_password(pwfile, GOOD_PW)
    put_smtp(svc, "admin", custom.port_starttls)
    smtp = expect(svc.req("GET", "/v1/smtp", svc.tok("admin")), 200)
    assert smtp["state"] == "connected" and smtp["route"] == "custom", smtp
    mid = send(svc, "admin", "Reconnected")
    doc = wait_final(svc, svc.tok("admin"), mid)
    assert doc["state"] == "sent" and doc["route"] == "custom", doc
    assert len(copies(custom, doc["message_id"])) == 1
    assert copies(relay, doc["message_id"]) == []
    assert len(notifications(svc, "admin")) == 1
    # The campaign held for the reconnect goes on, through the custom SMTP.
    cid = ctx["campaign"]
    wait_until("the campaign sent", lambda: (lambda d: d if d["counts"]["sent"] == 3 else None)(
        expect(svc.req("GET", f"/v1/campaigns/{cid}", svc.tok("admin")), 200)), 30)
    at_custom = [m for m in custom.messages() if CAMPAIGN_SUBJECT.encode() in m["data"]]
    at_relay = [m for m in relay.messages() if CAMPAIGN_SUBJECT.encode() in m["data"]]
    assert len(at_custom) == 3 and at_relay == [], (len(at_custom), len(at_relay))


def case_pin_mismatch(svc, ctx):
    certs, relay = ctx["certs"], ctx["relay"]
    custom = ctx["custom"]
    put_smtp(svc, "pin", custom.port_starttls, fingerprint=rig.cert_sha256(certs.server_cert))
    # The server comes back on the same port with another certificate.
    ctx["restart_custom"](certs.selfsigned_cert, certs.selfsigned_key)
    mid = send(svc, "pin", "Pinned, certificate replaced")
    smtp = wait_until("disconnected", lambda: (lambda d: d if d["state"] == "disconnected" else None)(
        expect(svc.req("GET", "/v1/smtp", svc.tok("pin")), 200)), 40)
    assert smtp["last_error"].startswith("tls"), smtp
    assert "pin" in smtp["last_error"], smtp
    ns = notifications(svc, "pin")
    assert len(ns) == 1 and ns[0]["kind"] == "smtp_disconnected", ns
    assert PIN in ns[0]["text"] and "tls" in ns[0]["text"], ns
    assert len(notifications(svc, "admin")) == 1, "another user's notice in the admin's list"
    mails = wait_until("the notice mail", lambda: notices(relay, PIN), 20)
    assert len(mails) == 1, f"{len(mails)} notice mails to {PIN}"
    doc = wait_final(svc, svc.tok("pin"), mid)
    assert doc["state"] == "sent" and doc["route"] == "relay", doc
    assert metric(svc, "mailtrail_smtp_disconnects_total", 'class="tls"') == 1


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
    with rig.tempdir("mailtrail-disconnect-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        relay = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "relay-sink"),
                                                  user=RELAY_USER, password=RELAY_PASSWORD,
                                                  tls=False, plain=False, require_auth=True))
        pwfile = os.path.join(tmp, "custom-password")
        set_password(pwfile, GOOD_PW)
        custom_store = os.path.join(tmp, "custom-sink")
        custom_cm = rig.auth_sink(certs, custom_store, user=SINK_USER, password_file=pwfile,
                                  tls=False, plain=False, require_auth=True)
        ctx = {"certs": certs, "relay": relay, "pwfile": pwfile,
               "custom": custom_cm.__enter__(), "custom_cm": custom_cm}

        def restart_custom(cert, key):
            port = ctx["custom"].port_starttls
            ctx["custom_cm"].__exit__(None, None, None)
            ctx["custom_cm"] = rig.auth_sink(certs, custom_store, user=SINK_USER,
                                             password_file=pwfile, tls=False, plain=False,
                                             require_auth=True, cert=cert, key=key,
                                             ports={"starttls": port})
            ctx["custom"] = ctx["custom_cm"].__enter__()
        ctx["restart_custom"] = restart_custom
        stack.callback(lambda: ctx["custom_cm"].__exit__(None, None, None))
        relay_pw = os.path.join(tmp, "relay-password")
        with open(relay_pw, "w") as f:
            f.write(RELAY_PASSWORD + "\n")
        os.chmod(relay_pw, 0o600)
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_RELAY": f"smtp://{RELAY_USER}@127.0.0.1:{relay.port_starttls}",
            "MAILTRAIL_RELAY_PASSWORD_FILE": relay_pw,
            "MAILTRAIL_RELAY_FROM": RELAY_FROM,
            "MAILTRAIL_SMTP_CONFIRM_DELAY": "2s",
            "MAILTRAIL_PUBLIC_URL": "https://crm.example/",
            "MAILTRAIL_LOG_LEVEL": "info",
        })
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("transient", case_transient),
                         ("password_changed", case_password_changed),
                         ("reconnect", case_reconnect),
                         ("pin_mismatch", case_pin_mismatch)):
            r.run(name, fn, svc, ctx)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(60), flush=True)
        if a.keep:
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
