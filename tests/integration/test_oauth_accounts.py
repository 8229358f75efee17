#!/usr/bin/python3
"""OAuth grants used by both engines (issue 15; docs/oauth.md): SMTP and IMAP accounts with
auth xoauth2 on the user's grant, the broker refreshing before expiry and after a refused token,
and a revoked grant taking both accounts down with one notification.

  /usr/bin/python3 tests/integration/test_oauth_accounts.py --bin-dir BUILD [--only NAME]...

Peers, loopback only: the rig's token endpoint (tests/rig/token_endpoint.py, HTTPS with the
rig's CA, which the service trusts through ca_file) with introspection; an auth sink as the
recruiter's SMTP server whose accepted XOAUTH2 tokens are a file's lines (--token-file), another
as the platform relay; Dovecot with an oauth2 passdb (introspection_mode = post) against the
endpoint. "Accepting" a token = the sink's file and the endpoint's introspection both hold it.
The background refresh is off (MAILTRAIL_TEST_OAUTH_BACKGROUND_MS=-1) so that the endpoint's
refresh count is the engines' alone. Cases, in order:

  grant_saved      PUT /v1/smtp with refresh_token, client_id, client_secret and an access
                   token already expired: the save refreshes it (one refresh at the endpoint,
                   RFC 6749 form with the client secret), connected; PUT /v1/imap with auth
                   xoauth2 and no token uses the same grant (no refresh); GET shows
                   oauth {provider, expires_at, state} and no token
  static_token     the old form (access_token only) still works and has no grant view
  expired_refreshed the grant's token (303 s lifetime: within the 5 min margin a few seconds
                   later) is refreshed once for 5 messages sent at once and an IMAP re-save
                   running at the same time (single flight: one refresh request); the 5 are
                   sent through the custom server with the new token; the IMAP session logs in
                   with it and a message appended to INBOX becomes an activity
  refused_forced   the server stops accepting the stored (still valid) token: the sender's
                   login fails, one forced refresh, the retry sends; still connected, no
                   notification
  temporary        the token endpoint answers 503 to the forced refresh: the message is
                   retried (not failed), the account stays connected, no notification; once
                   the endpoint answers again (after the sender's 30 s cool-down) it is sent
  revoked          the endpoint forgets the refresh token (invalid_grant): the next login's
                   forced refresh revokes the grant, SMTP and IMAP are disconnected, exactly one
                   oauth_revoked notification (API) and one notice mail at the relay; the
                   pending message goes via the relay; more messages make no more notices
  signin_reconnects the authorisation-code flow (GET /v1/oauth/start, the provider's
                   redirect to /oauth/callback) after the revocation: the callback saves both
                   accounts on the new grant after their live checks (same servers and logins,
                   a confirmation mail), the page says so, mail goes out through the custom
                   server again and INBOX syncs; no second notification
  background       another service with the background refresh every 0.5 s: a grant whose
                   token has 303 s to live is refreshed once by the timer, no login asking;
                   the next message goes out with the new token without another refresh
  no_secrets       no token, refresh token or client secret in the service's log, in any API
                   reply of the test, or anywhere in the data dir (the database included)

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import contextlib
import email.policy
import os
import re
import sys
import threading
import time
import urllib.parse
from email.parser import BytesParser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import dovecot  # noqa: E402
import rig  # noqa: E402
import token_endpoint  # noqa: E402
from service import Service, expect  # noqa: E402
from token_endpoint import Grant  # noqa: E402

ORG_DOMAIN = "staffing.example"
ADMIN = "admin@" + ORG_DOMAIN
SINK_USER = "login@" + ORG_DOMAIN
MAILBOX_USER = "rita"
RELAY_USER = "relay-platform"
RELAY_PASSWORD = "relay-s3cret-pw"
RELAY_FROM = "bounces@platform.example"
CLIENT_ID = "client-42.apps.example"
CLIENT_SECRET = "cl1ent-s3cret-value"
NOTICE_SUBJECT = "Reconnect your mail account: access was revoked"
FINAL = ("sent", "partial", "failed", "cancelled")

# Every secret the test hands out: none may show up anywhere but the peers.
SECRETS = {CLIENT_SECRET}
REPLIES = []  # every API reply body of the test, checked by no_secrets


def secret(value):
    SECRETS.add(value)
    return value


TOKENS = {}


def T(name):
    """A token the test hands out, unique and long enough not to occur by chance."""
    return TOKENS.setdefault(name, secret(f"ya29.{name}.{os.urandom(6).hex()}"))


def req(svc, method, path, who=None, body=None):
    r = svc.req(method, path, svc.tok(who) if who else None, body)
    REPLIES.append(r.body)
    return r


def wait_until(what, fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def accept(ctx, *tokens):
    """The custom SMTP server and Dovecot accept exactly these access tokens from now on."""
    path = ctx["token_file"]
    with open(path + ".tmp", "w") as f:
        f.write("".join(t + "\n" for t in tokens))
    os.rename(path + ".tmp", path)
    ctx["ep"].active = {t: MAILBOX_USER for t in tokens}


def header_mid(raw):
    m = re.search(rb"^Message-ID:[ \t]*<?([^>\r\n]*)>?", raw, re.M | re.I)
    return m.group(1).decode().strip() if m else None


def send(svc, subject):
    doc = expect(req(svc, "POST", "/v1/messages", "admin",
                     {"to": ["jack@cand.example"], "subject": subject, "text": subject}), 202)
    return doc["id"]


def wait_final(svc, mid, timeout=40.0):
    def final():
        doc = expect(req(svc, "GET", f"/v1/messages/{mid}", "admin"), 200)
        return doc if doc["state"] in FINAL else None
    return wait_until(f"message {mid} final", final, timeout)


def notifications(svc):
    return expect(req(svc, "GET", "/v1/notifications", "admin"), 200)["notifications"]


def smtp_body(ctx, **extra):
    body = {"host": "127.0.0.1", "port": ctx["custom"].port_starttls, "security": "starttls",
            "auth": "xoauth2", "username": SINK_USER, "from": ADMIN, "accept_disclaimer": True}
    body.update(extra)
    return body


def imap_body(ctx, **extra):
    dc = ctx["dc"]
    body = {"host": dc.host, "port": dc.imap_port, "security": "starttls", "auth": "xoauth2",
            "username": MAILBOX_USER, "since": time.strftime("%Y-%m-%d",
                                                           time.gmtime(time.time() - 86400))}
    body.update(extra)
    return body


def grant_fields(ctx, refresh, access=None, expires_at=None):
    d = {"refresh_token": refresh, "token_url": ctx["ep"].url, "client_id": CLIENT_ID,
         "client_secret": CLIENT_SECRET}
    if access is not None:
        d["access_token"] = access
        d["expires_at"] = expires_at
    return d


def mail_from_jack(subject):
    return (f"From: Jack <jack@cand.example>\r\nTo: {ADMIN}\r\nSubject: {subject}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@cand.example>\r\n\r\nHello.\r\n").encode()


def imap_activities(svc, ctx):
    doc = expect(req(svc, "GET", f"/v1/profiles/{ctx['jack']}/activities?limit=100", "admin"),
                 200)
    return [a for a in doc["activities"] if a["source"] == "imap"]


# --- cases ----------------------------------------------------------------------------------

def case_setup(svc, ctx):
    a = svc.init("OAuth Org", ADMIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"], "email": ADMIN}
    svc.start()
    expect(req(svc, "PUT", "/v1/org", "admin",
               {"domains": [ORG_DOMAIN],
                "features": {"custom_smtp": True, "imap_sync": True}}), 200)
    doc = expect(req(svc, "POST", "/v1/profiles", "admin",
                     {"kind": "applicant", "name": "Jack", "emails": ["jack@cand.example"]}), 201)
    ctx["jack"] = doc["id"]


def case_grant_saved(svc, ctx):
    ep = ctx["ep"]
    ep.grants[T("rt-1")] = Grant(access_token=T("at-2"), expires_in=3599)
    accept(ctx, T("at-2"))
    before = len(ep.refreshes())
    body = smtp_body(ctx, **grant_fields(ctx, T("rt-1"), T("at-1-expired"), int(time.time()) - 60))
    doc = expect(req(svc, "PUT", "/v1/smtp", "admin", body), 200)
    assert doc["state"] == "connected", doc
    forms = ep.refreshes()[before:]
    assert len(forms) == 1, forms
    assert forms[0]["refresh_token"] == T("rt-1") and forms[0]["client_id"] == CLIENT_ID, forms
    assert forms[0]["client_secret"] == CLIENT_SECRET, "the client secret was not sent"
    # IMAP on the same grant: no token in the request, no refresh (at-2 is valid).
    doc = expect(req(svc, "PUT", "/v1/imap", "admin", imap_body(ctx)), 200)
    assert doc["state"] == "connected", doc
    assert len(ep.refreshes()) == before + 1, "the IMAP save refreshed a valid token"
    assert T("at-2") in ep.introspections, "Dovecot did not see the grant's token"
    for path in ("/v1/smtp", "/v1/imap"):
        view = expect(req(svc, "GET", path, "admin"), 200)
        assert view["auth"] == "xoauth2" and view["state"] == "connected", view
        o = view["oauth"]
        assert o is not None and set(o) == {"provider", "expires_at", "state"}, view
        assert o["provider"] == "custom" and o["state"] == "active" and o["expires_at"], o
        for key in ("access_token", "refresh_token", "client_secret", "password"):
            assert key not in view, (key, view)
    # A grant for a preset: token_url from the preset (checked by the error for a wrong
    # field, without reaching Google: a missing client_id is refused first).
    r = req(svc, "PUT", "/v1/smtp", "admin",
            smtp_body(ctx, preset="gmail", refresh_token=T("rt-preset")))
    expect(r, 400)
    assert "client_id" in r.body.decode(), r.show()


def case_static_token(svc, ctx):
    """The old form on IMAP: a static access token is the account's own (no grant view)."""
    accept(ctx, T("at-2"), T("static-at"))
    doc = expect(req(svc, "PUT", "/v1/imap", "admin",
                     imap_body(ctx, password=T("static-at"))), 200)
    assert doc["state"] == "connected", doc
    view = expect(req(svc, "GET", "/v1/imap", "admin"), 200)
    assert view["oauth"] is None, view
    # back on the grant for the next cases
    doc = expect(req(svc, "PUT", "/v1/imap", "admin",
                     imap_body(ctx, **grant_fields(ctx, T("rt-1"), T("at-2"),
                                                   int(time.time()) + 3599))), 200)
    assert expect(req(svc, "GET", "/v1/imap", "admin"), 200)["oauth"]["state"] == "active"
    accept(ctx, T("at-2"))


def case_expired_refreshed(svc, ctx):
    ep, custom, dc = ctx["ep"], ctx["custom"], ctx["dc"]
    # A new grant whose token has 303 s to live: within the broker's 5 min margin in 3 s.
    ep.grants[T("rt-2")] = Grant(access_token=T("at-3"), expires_in=303)
    accept(ctx, T("at-2"), T("at-3"))
    expect(req(svc, "PUT", "/v1/smtp", "admin", smtp_body(ctx, **grant_fields(ctx, T("rt-2")))),
           200)
    time.sleep(3.5)
    ep.grants[T("rt-2")] = Grant(access_token=T("at-4"), expires_in=3599, delay=0.5)
    accept(ctx, T("at-4"))  # the old ones no longer work anywhere
    before = len(ep.refreshes())
    mids, results = [], []

    def resave_imap():
        results.append(req(svc, "PUT", "/v1/imap", "admin", imap_body(ctx)))
    t = threading.Thread(target=resave_imap)
    t.start()
    for i in range(5):
        mids.append(send(svc, f"After expiry {i}"))
    t.join(30)
    expect(results[0], 200)
    docs = [wait_final(svc, mid) for mid in mids]
    for doc in docs:
        assert doc["state"] == "sent" and doc["route"] == "custom", doc
        assert len([m for m in custom.messages()
                    if header_mid(m["data"]) == doc["message_id"]]) == 1, doc
    forms = ep.refreshes()[before:]
    assert len(forms) == 1, f"{len(forms)} refreshes for 5 messages and an IMAP save"
    # The IMAP session (restarted by the save) logs in with the new token and syncs.
    dc.append(MAILBOX_USER, "INBOX", mail_from_jack("after refresh"))
    wait_until("the appended message as an activity", lambda: imap_activities(svc, ctx), 30)
    assert expect(req(svc, "GET", "/v1/imap", "admin"), 200)["state"] == "connected"
    # Sent is watched by a second connection, which logs in with its own token from the
    # broker: a message put in Sent arrives by push, well before Sent's 60 s poll.
    sent = (f"From: {ADMIN}\r\nTo: Jack <jack@cand.example>\r\nSubject: pushed to sent\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <pushed-to-sent@mt.example>\r\n\r\nHi Jack.\r\n").encode()
    wait_until("the Sent connection idling",
               lambda: svc.log_lines("imap.sync_watch_idle") or None, 15)
    dc.append(MAILBOX_USER, "Sent", sent)
    wait_until("the Sent message pushed as an activity",
               lambda: [a for a in imap_activities(svc, ctx) if a["subject"] == "pushed to sent"],
               12)
    assert not svc.log_lines("imap.sync_watch_failed"), svc.log_lines("imap.sync_watch_failed")


def case_refused_forced(svc, ctx):
    ep = ctx["ep"]
    ep.grants[T("rt-2")] = Grant(access_token=T("at-5"), expires_in=3599)
    accept(ctx, T("at-5"))  # at-4 is still valid by its expiry, but refused by the servers
    before = len(ep.refreshes())
    forced_before = len(svc.log_lines("sender.session_failed", "class=auth"))
    doc = wait_final(svc, send(svc, "After a refused token"))
    assert doc["state"] == "sent" and doc["route"] == "custom", doc
    assert len(ep.refreshes()) == before + 1, "not exactly one forced refresh"
    assert len(svc.log_lines("sender.session_failed", "class=auth")) == forced_before + 1
    assert expect(req(svc, "GET", "/v1/smtp", "admin"), 200)["state"] == "connected"
    assert notifications(svc) == []


def case_temporary(svc, ctx):
    ep = ctx["ep"]
    ep.grants[T("rt-2")] = Grant(status=503, body="<html>busy</html>",
                                 content_type="text/html")
    accept(ctx, T("at-6"))  # at-5 refused: a forced refresh, which fails for now
    before = len(ep.refreshes())
    mid = send(svc, "While the endpoint is down")
    wait_until("the refresh attempt", lambda: len(ep.refreshes()) > before, 20)

    def retried():
        doc = expect(req(svc, "GET", f"/v1/messages/{mid}", "admin"), 200)
        return doc if doc["attempts"] >= 1 and doc["state"] not in FINAL else None
    doc = wait_until("the message back for a retry", retried, 20)
    assert doc["last_class"] == "conn" and "token endpoint" in doc["last_error"], doc
    smtp = expect(req(svc, "GET", "/v1/smtp", "admin"), 200)
    assert smtp["state"] == "connected" and smtp["oauth"]["state"] == "active", smtp
    assert notifications(svc) == []
    ep.grants[T("rt-2")] = Grant(access_token=T("at-6"), expires_in=3599)
    doc = wait_final(svc, mid, timeout=60)
    assert doc["state"] == "sent" and doc["route"] == "custom", doc
    assert notifications(svc) == []


def case_revoked(svc, ctx):
    ep, relay = ctx["ep"], ctx["relay"]
    del ep.grants[T("rt-2")]  # unknown refresh token: invalid_grant
    accept(ctx)  # and at-6 is refused too: the next login forces a refresh
    relay_before = len(relay.messages())
    mid = send(svc, "After revocation")

    def both_down():
        s = expect(req(svc, "GET", "/v1/smtp", "admin"), 200)
        i = expect(req(svc, "GET", "/v1/imap", "admin"), 200)
        return (s, i) if s["state"] == i["state"] == "disconnected" else None
    s, i = wait_until("both accounts disconnected", both_down, 40)
    assert s["oauth"]["state"] == "revoked" and i["oauth"]["state"] == "revoked", (s, i)
    assert "revoked" in s["last_error"] and "revoked" in i["last_error"], (s, i)
    doc = wait_final(svc, mid)
    assert doc["state"] == "sent" and doc["route"] == "relay", doc
    for i in range(3):
        wait_final(svc, send(svc, f"Still revoked {i}"))
    ns = notifications(svc)
    assert [n["kind"] for n in ns] == ["oauth_revoked"], ns
    notices = wait_until("the notice mail", lambda: [
        m for m in relay.messages()[relay_before:]
        if str(BytesParser(policy=email.policy.default).parsebytes(m["data"])["Subject"]) ==
        NOTICE_SUBJECT], 20)
    time.sleep(1)
    assert len(notices) == 1 and notices[0]["rcpt_tos"] == [ADMIN], notices


def case_signin_reconnects(svc, ctx):
    """The authorisation-code flow saves both accounts on the new grant (the granted hook):
    after the revocation, one sign-in with Google reconnects SMTP and IMAP, keeping their
    servers and logins, without the user saving them again."""
    ep, custom, dc = ctx["ep"], ctx["custom"], ctx["dc"]
    r = req(svc, "GET", "/v1/oauth/start?provider=google&for=smtp%2Cimap", "admin")
    url = urllib.parse.urlsplit(expect(r, 200)["url"])
    p = dict(urllib.parse.parse_qsl(url.query))
    code = T("code-7")
    ep.codes[code] = (p["code_challenge"], p["redirect_uri"],
                      Grant(access_token=T("at-7"), refresh_token=T("rt-7"), expires_in=3599))
    accept(ctx, T("at-7"))
    confirmations = len(custom.messages())
    r = req(svc, "GET", "/oauth/callback?" + urllib.parse.urlencode(
        {"state": p["state"], "code": code}))
    text = r.body.decode()
    assert r.status == 200, r.show()
    assert "Sending: connected." in text and "Syncing: connected." in text, text
    for path in ("/v1/smtp", "/v1/imap"):
        view = expect(req(svc, "GET", path, "admin"), 200)
        assert view["state"] == "connected" and view["auth"] == "xoauth2", view
        assert view["oauth"]["provider"] == "google" and view["oauth"]["state"] == "active", view
    smtp = expect(req(svc, "GET", "/v1/smtp", "admin"), 200)
    assert smtp["port"] == custom.port_starttls and smtp["username"] == SINK_USER, smtp
    assert len(custom.messages()) == confirmations + 1, "no confirmation mail on the grant"
    doc = wait_final(svc, send(svc, "After signing in again"))
    assert doc["state"] == "sent" and doc["route"] == "custom", doc
    dc.append(MAILBOX_USER, "INBOX", mail_from_jack("after sign in"))
    wait_until("the INBOX message as an activity", lambda: [
        a for a in imap_activities(svc, ctx) if a["subject"] == "after sign in"], 30)
    assert [n["kind"] for n in notifications(svc)] == ["oauth_revoked"]


def case_background(svc, ctx):
    ep, custom = ctx["ep"], ctx["custom"]
    bg = ctx["make_service"]("bg", {"MAILTRAIL_TEST_OAUTH_BACKGROUND_MS": "500"})
    ctx["services"].append(bg)
    a = bg.init("Background Org", ADMIN)
    bg.users["admin"] = {"id": a["user_id"], "token": a["token"], "email": ADMIN}
    bg.start()
    expect(req(bg, "PUT", "/v1/org", "admin",
               {"domains": [ORG_DOMAIN], "features": {"custom_smtp": True}}), 200)
    ep.grants[T("rt-bg")] = Grant(access_token=T("at-bg1"), expires_in=303)
    accept(ctx, T("at-bg1"), T("at-bg2"))
    before = len(ep.refreshes())
    expect(req(bg, "PUT", "/v1/smtp", "admin", smtp_body(ctx, **grant_fields(ctx, T("rt-bg")))),
           200)
    assert len(ep.refreshes()) == before + 1  # the save's
    first = expect(req(bg, "GET", "/v1/smtp", "admin"), 200)["oauth"]["expires_at"]
    ep.grants[T("rt-bg")] = Grant(access_token=T("at-bg2"), expires_in=3599)
    wait_until("the background refresh", lambda: len(ep.refreshes()) == before + 2, 15)
    later = wait_until("the new expiry", lambda: (lambda e: e if e != first else None)(
        expect(req(bg, "GET", "/v1/smtp", "admin"), 200)["oauth"]["expires_at"]), 10)
    assert later > first, (first, later)
    accept(ctx, T("at-bg2"))
    mid = expect(req(bg, "POST", "/v1/messages", "admin",
                     {"to": ["jack@cand.example"], "subject": "bg", "text": "bg"}), 202)["id"]
    doc = wait_until("sent", lambda: (lambda d: d if d["state"] in FINAL else None)(
        expect(req(bg, "GET", f"/v1/messages/{mid}", "admin"), 200)), 40)
    assert doc["state"] == "sent" and doc["route"] == "custom", doc
    assert [m for m in custom.messages() if header_mid(m["data"]) == doc["message_id"]]
    time.sleep(1.5)  # three more ticks: nothing left to refresh
    assert len(ep.refreshes()) == before + 2, ep.refreshes()[before:]


def case_no_secrets(svc, ctx):
    blobs = [("reply", b) for b in REPLIES]
    for s in ctx["services"]:
        blobs.append(("log", s.log_text()))
        for root, _dirs, files in os.walk(s.data):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    blobs.append((os.path.join(root, name), f.read()))
    assert len(SECRETS) >= 8 and len(blobs) > len(REPLIES) + 4, (SECRETS, len(blobs))
    for where, blob in blobs:
        for s in SECRETS:
            assert s.encode() not in blob, f"{s!r} in {where}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    t0 = time.monotonic()
    with rig.tempdir("mailtrail-oauth-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        ep = stack.enter_context(token_endpoint.serve(certs))
        ep.client_id, ep.client_secret = CLIENT_ID, CLIENT_SECRET
        token_file = os.path.join(tmp, "tokens")
        ctx = {"certs": certs, "ep": ep, "token_file": token_file}
        accept(ctx)
        ctx["relay"] = stack.enter_context(rig.auth_sink(
            certs, os.path.join(tmp, "relay-sink"), user=RELAY_USER, password=RELAY_PASSWORD,
            tls=False, plain=False, require_auth=True))
        ctx["custom"] = stack.enter_context(rig.auth_sink(
            certs, os.path.join(tmp, "custom-sink"), user=SINK_USER, token_file=token_file,
            tls=False, plain=False, require_auth=True))
        oauth_conf = os.path.join(tmp, "dovecot-oauth2.conf.ext")
        with open(oauth_conf, "w") as f:
            f.write(f"introspection_mode = post\nintrospection_url = {ep.introspection_url}\n"
                    f"username_attribute = username\nactive_attribute = active\n"
                    f"active_value = true\ntls_ca_cert_file = {certs.ca_cert}\n")
        os.chmod(tmp, 0o711)
        os.chmod(oauth_conf, 0o644)
        extra = ("auth_mechanisms = plain login xoauth2\n"
                 f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n"
                 f"  args = {oauth_conf}\n}}\n")
        ctx["dc"] = stack.enter_context(dovecot.dovecot(
            certs, os.path.join(tmp, "dovecot"), users={MAILBOX_USER: "unused-imap-pw"},
            extra_conf=extra))
        relay_pw = os.path.join(tmp, "relay-password")
        with open(relay_pw, "w") as f:
            f.write(RELAY_PASSWORD + "\n")
        os.chmod(relay_pw, 0o600)
        client_secret_file = os.path.join(tmp, "google-client-secret")
        with open(client_secret_file, "w") as f:
            f.write(CLIENT_SECRET + "\n")

        def make_service(name, extra_env):
            env = {
                "MAILTRAIL_RELAY":
                    f"smtp://{RELAY_USER}@127.0.0.1:{ctx['relay'].port_starttls}",
                "MAILTRAIL_RELAY_PASSWORD_FILE": relay_pw,
                "MAILTRAIL_RELAY_FROM": RELAY_FROM,
                "MAILTRAIL_SMTP_CONFIRM_DELAY": "2s",
                "MAILTRAIL_SMTP_SESSIONS_PER_ACCOUNT": "3",
                "MAILTRAIL_TEST_OAUTH_BACKGROUND_MS": "-1",
                "MAILTRAIL_TEST_RETRY_BASE_S": "1",
                "MAILTRAIL_LOG_LEVEL": "info",
                "MAILTRAIL_PUBLIC_URL": "https://crm.example/mailtrail/",
                "MAILTRAIL_OAUTH_GOOGLE_CLIENT_ID": CLIENT_ID,
                "MAILTRAIL_OAUTH_GOOGLE_CLIENT_SECRET_FILE": client_secret_file,
                "MAILTRAIL_OAUTH_GOOGLE_AUTH_URL":
                    f"https://{urllib.parse.urlsplit(ep.url).netloc}/authorize",
                "MAILTRAIL_OAUTH_GOOGLE_TOKEN_URL": ep.url,
            }
            env.update(extra_env)
            d = os.path.join(tmp, name)
            os.makedirs(d, exist_ok=True)
            s = Service(a.bin_dir, d, certs=certs, env=env)
            stack.callback(s.stop)
            return s
        ctx["make_service"] = make_service
        svc = make_service("main", {})
        ctx["services"] = [svc]
        svc.log_lines = lambda *needles: [
            line for line in svc.log_text().decode(errors="replace").splitlines()
            if all(n in line for n in needles)]
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("grant_saved", case_grant_saved),
                         ("static_token", case_static_token),
                         ("expired_refreshed", case_expired_refreshed),
                         ("refused_forced", case_refused_forced),
                         ("temporary", case_temporary),
                         ("revoked", case_revoked),
                         ("signin_reconnects", case_signin_reconnects),
                         ("background", case_background),
                         ("no_secrets", case_no_secrets)):
            r.run(name, fn, svc, ctx)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(60), flush=True)
            print("--- dovecot log (tail)\n" + ctx["dc"].log()[-3000:], flush=True)
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
