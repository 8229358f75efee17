#!/usr/bin/python3
"""Live responses against docs/openapi.yaml (issue 16 acceptance): one service is driven through
every operation of the spec at least once, successes and errors, and every answer (status,
content type, body) is checked by tests/node/validate-responses.mjs: the status documented for
the operation, the content type documented for the status, a JSON body valid against the
response's schema (JSON Schema 2020-12 by ajv); an operation with no sample fails the run.

Peers: Postfix's smtp-sink as the recruiter's mailbox (auth none on 127.0.0.1, which the test's
no_auth_hosts allows). Run: /usr/bin/python3 tests/integration/test_openapi_live.py --bin-dir build
"""
import argparse
import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service  # noqa: E402

ADMIN = "admin@staffing.example"
REC = "rec@staffing.example"
SAMPLES = []


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver that takes everything."""
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


class Driver:
    def __init__(self, svc):
        self.svc = svc

    def call(self, who, method, template, args=None, query=None, body=None, raw=None,
             ctype=None, want=None):
        path = template
        for k, v in (args or {}).items():
            path = path.replace("{" + k + "}", urllib.parse.quote(v, safe=""))
        if query:
            path += "?" + urllib.parse.urlencode(query)
        tok = self.svc.tok(who) if who else None
        r = self.svc.req(method, path, tok, body, raw=raw, content_type=ctype)
        headers = {k.lower(): v for k, v in r.headers}
        SAMPLES.append({"method": method, "path": template, "status": r.status,
                        "content_type": headers.get("content-type", ""),
                        "body": r.body.decode("utf-8", "replace")})
        if want is not None:
            assert r.status == want, f"{method} {path}: want {want}{r.show()}"
        return r


def drive(d, svc, sink, receiver):
    a, r_ = "admin", "rec"
    d.call(None, "GET", "/healthz", want=200)
    d.call(None, "GET", "/metrics", want=200)
    d.call(None, "GET", "/v1/profiles", want=401)
    # org
    d.call(a, "GET", "/v1/org", want=200)
    d.call(a, "PUT", "/v1/org", body={"domains": ["staffing.example"],
                                      "features": {"custom_smtp": True}}, want=200)
    d.call(a, "PUT", "/v1/org", body={"domains": ["gmail.com"]}, want=400)
    d.call(a, "PUT", "/v1/org/features", body={"imap_sync": True}, want=200)
    # users and their tokens
    rec = d.call(a, "POST", "/v1/users", body={"email": REC, "name": "Rec", "role": "user"},
                 want=201).json
    svc.users["rec"] = {"id": rec["id"], "token": rec["token"]}
    d.call(a, "POST", "/v1/users", body={"email": REC, "name": "Again"}, want=409)
    d.call(r_, "GET", "/v1/org", want=403)
    other = d.call(a, "POST", "/v1/users", body={"email": "gone@staffing.example",
                                                 "name": "Gone"}, want=201).json
    d.call(a, "GET", "/v1/users", query={"limit": 10}, want=200)
    d.call(a, "GET", "/v1/users/{id}", {"id": rec["id"]}, want=200)
    d.call(a, "GET", "/v1/users/{id}", {"id": "usr_nobody"}, want=404)
    d.call(a, "PATCH", "/v1/users/{id}", {"id": rec["id"]}, body={"name": "Rec R."}, want=200)
    minted = d.call(a, "POST", "/v1/users/{id}/tokens", {"id": rec["id"]}, want=201).json
    d.call(a, "GET", "/v1/users/{id}/tokens", {"id": rec["id"]}, want=200)
    d.call(a, "DELETE", "/v1/users/{id}/tokens/{token_id}",
           {"id": rec["id"], "token_id": minted["id"]}, want=204)
    d.call(a, "DELETE", "/v1/users/{id}", {"id": other["id"]}, want=204)
    own = d.call(r_, "POST", "/v1/tokens", want=201).json
    d.call(r_, "DELETE", "/v1/tokens/{id}", {"id": own["id"]}, want=204)
    d.call(r_, "DELETE", "/v1/tokens/{id}", {"id": "tok_nothing"}, want=404)
    # API keys
    key = d.call(a, "POST", "/v1/api-keys", body={"name": "crm", "scopes": ["read"]},
                 want=201).json
    d.call(a, "POST", "/v1/api-keys", body={"name": "crm", "scopes": ["everything"]}, want=400)
    d.call(a, "GET", "/v1/api-keys", want=200)
    d.call(a, "DELETE", "/v1/api-keys/{id}", {"id": key["id"]}, want=204)
    # profiles
    jack = d.call(r_, "POST", "/v1/profiles", body={
        "kind": "applicant", "name": "Jack", "emails": ["jack@cand.example"]}, want=201).json
    d.call(r_, "POST", "/v1/profiles", body={"kind": "robot", "name": "R", "emails": []},
           want=400)
    d.call(r_, "GET", "/v1/profiles", query={"q": "ja"}, want=200)
    d.call(r_, "GET", "/v1/profiles", query={"limit": 0}, want=400)
    csv = b"kind,name,emails\napplicant,Ann,ann@cand.example\nrobot,X,x@cand.example\n"
    d.call(r_, "POST", "/v1/profiles/import", raw=csv, ctype="text/csv", want=200)
    d.call(r_, "POST", "/v1/profiles/import", raw=b"wrong,header\n", ctype="text/csv", want=400)
    ext = {"id": "crm-7"}
    body = {"kind": "contact", "name": "Hiring Manager", "emails": ["hm@client.example"]}
    d.call(r_, "PUT", "/v1/profiles/by-external-id/{id}", ext, body=body, want=201)
    d.call(r_, "PUT", "/v1/profiles/by-external-id/{id}", ext, body=dict(body, name="HM"),
           want=200)
    d.call(r_, "GET", "/v1/profiles/by-external-id/{id}", ext, want=200)
    d.call(r_, "GET", "/v1/profiles/by-external-id/{id}", {"id": "nope"}, want=404)
    d.call(r_, "GET", "/v1/profiles/{id}", {"id": jack["id"]}, want=200)
    d.call(r_, "GET", "/v1/profiles/{id}", {"id": "prf_nothing"}, want=404)
    d.call(r_, "PATCH", "/v1/profiles/{id}", {"id": jack["id"]}, body={"name": "Jack J."},
           want=200)
    ann = d.call(r_, "POST", "/v1/profiles", body={
        "kind": "applicant", "name": "Ann", "emails": ["ann2@cand.example"]}, want=201).json
    d.call(r_, "DELETE", "/v1/profiles/{id}", {"id": ann["id"]}, want=204)
    # custom SMTP through smtp-sink, then mail
    d.call(r_, "GET", "/v1/smtp/presets", want=200)
    d.call(r_, "GET", "/v1/smtp", want=200)
    smtp = {"host": "127.0.0.1", "port": sink.port, "security": "none", "auth": "none",
            "from": REC, "accept_disclaimer": True}
    d.call(r_, "PUT", "/v1/smtp", body=dict(smtp, accept_disclaimer=False), want=400)
    d.call(r_, "PUT", "/v1/smtp", body=smtp, want=200)
    d.call(r_, "PATCH", "/v1/smtp", body={"limit": 500, "window": "day"}, want=200)
    d.call(r_, "PATCH", "/v1/smtp", body={}, want=400)
    d.call(r_, "GET", "/v1/smtp", want=200)
    msg = d.call(r_, "POST", "/v1/messages", body={
        "to": ["jack@cand.example"], "subject": "Hello", "text": "Hi Jack"}, want=202).json
    d.call(r_, "POST", "/v1/messages", body={"to": [], "subject": "x"}, want=400)
    deadline = time.monotonic() + 20
    while d.call(r_, "GET", "/v1/messages/{id}", {"id": msg["id"]}, want=200).json["state"] \
            not in ("sent", "failed"):
        assert time.monotonic() < deadline, "the message was not sent"
        time.sleep(0.2)
    d.call(r_, "DELETE", "/v1/messages/{id}", {"id": msg["id"]}, want=409)
    d.call(r_, "GET", "/v1/messages/{id}", {"id": "msg_nothing"}, want=404)
    d.call(r_, "GET", "/v1/messages", query={"state": "sent"}, want=200)
    d.call(r_, "GET", "/v1/messages", query={"state": "lost"}, want=400)
    reply = (b"From: Jack <jack@cand.example>\r\nTo: " + REC.encode() +
             b"\r\nSubject: Re: Hello\r\nMessage-ID: <r1@cand.example>\r\n"
             b"In-Reply-To: <" + d.call(r_, "GET", "/v1/messages/{id}", {"id": msg["id"]})
             .json["message_id"].encode() + b">\r\n\r\nThanks\r\n")
    d.call(r_, "POST", "/v1/addin/log", raw=reply, ctype="message/rfc822", want=200)
    d.call(r_, "POST", "/v1/addin/log", raw=b"not a message", ctype="message/rfc822", want=400)
    d.call(r_, "GET", "/v1/activities", query={"since": 0}, want=200)
    d.call(r_, "GET", "/v1/activities", query={"since": "garbage"}, want=400)
    d.call(r_, "GET", "/v1/profiles/{id}/activities", {"id": jack["id"]}, want=200)
    d.call(r_, "GET", "/v1/profiles/{id}/activities", {"id": jack["id"]},
           query={"limit": 0}, want=400)
    d.call(r_, "GET", "/v1/never-log", query={"scope": "user"}, want=200)
    d.call(r_, "PUT", "/v1/never-log", body={"scope": "user", "entries": ["hr@private.example"]},
           want=200)
    d.call(r_, "GET", "/v1/never-log", query={"scope": "org"}, want=403)
    # campaigns
    camp = d.call(r_, "POST", "/v1/campaigns", body={
        "recipients": [{"email": f"c{i}@cand.example"} for i in range(3)],
        "subject": "Openings", "text": "New roles"}, want=202).json
    d.call(r_, "POST", "/v1/campaigns", body={"recipients": [], "subject": "x"}, want=400)
    d.call(r_, "GET", "/v1/campaigns/{id}", {"id": camp["id"]}, want=200)
    d.call(r_, "GET", "/v1/campaigns/{id}", {"id": "cmp_nothing"}, want=404)
    for action in ("pause", "resume", "cancel"):
        d.call(r_, "POST", "/v1/campaigns/{id}/" + action, {"id": camp["id"]}, want=200)
    d.call(r_, "POST", "/v1/campaigns/{id}/pause", {"id": "cmp_nothing"}, want=404)
    d.call(None, "GET", "/u/{token}", {"token": "not-a-token"}, want=404)
    d.call(None, "POST", "/u/{token}", {"token": "not-a-token"}, want=404)
    # IMAP: a closed port fails the live check; sync without an account
    d.call(r_, "GET", "/v1/imap", want=200)
    d.call(r_, "PUT", "/v1/imap", body={"host": "127.0.0.1", "port": rig.free_port(),
                                        "security": "tls", "username": "rec",
                                        "password": "pw"}, want=422)
    d.call(r_, "PUT", "/v1/imap", body={"host": "127.0.0.1"}, want=400)
    d.call(r_, "POST", "/v1/imap/sync", want=409)
    d.call(r_, "DELETE", "/v1/imap", want=204)
    # OAuth without a configured provider; a callback with no flow behind it
    d.call(r_, "GET", "/v1/oauth/start", query={"provider": "google", "for": "smtp"}, want=409)
    d.call(r_, "GET", "/v1/oauth/start", query={"provider": "yahoo", "for": "smtp"}, want=400)
    d.call(None, "GET", "/oauth/callback", query={"state": "x" * 43, "code": "c"}, want=400)
    d.call(r_, "GET", "/v1/notifications", want=200)
    d.call(r_, "GET", "/v1/notifications", query={"cursor": "bogus"}, want=400)
    # webhooks: a receiver on loopback (the operator's webhook_http_hosts allows http there)
    hook = d.call(a, "POST", "/v1/webhooks", body={"url": receiver, "events": ["activity.*",
                                                                             "message.*"]},
                  want=201).json
    d.call(a, "POST", "/v1/webhooks", body={"url": "http://crm.example/hook",
                                            "events": ["activity.*"]}, want=400)
    d.call(a, "GET", "/v1/webhooks", want=200)
    # A webhook gets what the feed holds after its creation: one more activity.
    d.call(r_, "POST", "/v1/addin/log", raw=reply.replace(b"<r1@", b"<r2@"),
           ctype="message/rfc822", want=200)
    d.call(a, "GET", "/v1/webhooks/{id}", {"id": hook["id"]}, want=200)
    d.call(a, "GET", "/v1/webhooks/{id}", {"id": "whk_nothing"}, want=404)
    deadline = time.monotonic() + 20
    while not d.call(a, "GET", "/v1/webhooks/{id}/deliveries", {"id": hook["id"]},
                     want=200).json.get("deliveries"):
        assert time.monotonic() < deadline, "no webhook delivery logged"
        time.sleep(0.3)
    d.call(a, "POST", "/v1/webhooks/{id}/replay", {"id": hook["id"]}, body={}, want=200)
    d.call(a, "DELETE", "/v1/webhooks/{id}", {"id": hook["id"]}, want=204)
    d.call(r_, "DELETE", "/v1/smtp", want=204)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.parse_args()
    a = ap.parse_args()
    rig.install_signal_cleanup()
    node = os.path.join(REPO, "tests", "node")
    if not os.path.isdir(os.path.join(node, "node_modules", "ajv")):
        print("FAIL setup: tests/node is not installed (scripts/install-deps)\n0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-openapi-") as tmp, contextlib.ExitStack() as stack:
        sink = stack.enter_context(rig.smtp_sink(backlog=100))
        recv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=recv.serve_forever, daemon=True).start()
        stack.callback(recv.shutdown)
        svc = Service(a.bin_dir, tmp, env={"MAILTRAIL_NO_AUTH_HOSTS": "127.0.0.1",
                                           "MAILTRAIL_WEBHOOK_HTTP_HOSTS": "127.0.0.1",
                                           "MAILTRAIL_PUBLIC_URL": "https://crm.example/mt/"})
        stack.callback(svc.stop)
        init = svc.init("OpenAPI Org", ADMIN)
        svc.users["admin"] = {"id": init["user_id"], "token": init["token"]}
        svc.start()
        try:
            drive(Driver(svc), svc, sink, f"http://127.0.0.1:{recv.server_port}/hook")
        except AssertionError as e:
            print(f"FAIL drive: {e}\n{svc.log_tail(30)}\n0 passed, 1 failed")
            return 1
        # The spec goes to node as YAML (1.2: `off` stays a string, as clients read it).
        spec_path = os.path.join(REPO, "docs", "openapi.yaml")
        samples = os.path.join(tmp, "samples.json")
        with open(samples, "w") as f:
            json.dump(SAMPLES, f)
        r = subprocess.run(["node", os.path.join(node, "validate-responses.mjs"), spec_path,
                            samples], capture_output=True, timeout=120)
        sys.stdout.write(r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace"))
        return r.returncode


if __name__ == "__main__":
    sys.exit(main())
