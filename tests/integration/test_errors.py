#!/usr/bin/python3
"""Error codes and fields (issue 16 item 6; docs/api.md "Errors and their codes"): every error a
client can provoke without a mail server answers {"error": {class, code, message, field}} with
the documented code and the field or query parameter at fault.

  setup        an org with custom_smtp on and imap_sync off, an admin and a recruiter
  shape        every error body has exactly class, code, message, field (+ the live check's
               smtp_reply/fingerprint only on 422)
  body         invalid_json, unknown_field, missing_field, invalid_type, out_of_range, too_long,
               too_many_items, invalid_value, invalid_address, freemail_domain
  query        unknown_parameter, repeated_parameter, out_of_range (limit), invalid_cursor,
               invalid_value (state), missing_parameter (provider)
  smtp_form    disclaimer_required, unknown_preset, missing_field, invalid_combination,
               auth_required, password_required, host_private, from_not_own, plaintext_auth
  imap_form    feature_off (403), password_required, plaintext_auth, invalid_value
               (tls_fingerprint), invalid_combination (grant fields without xoauth2)
  access       unauthorized (401), forbidden (403), admin_only (403), not_found (404),
               method_not_allowed (405), self_lockout (409), no_route (409),
               not_configured (409)

Run: /usr/bin/python3 tests/integration/test_errors.py --bin-dir build
"""
import argparse
import contextlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

ADMIN = "admin@staffing.example"
REC = "rec@staffing.example"
SEEN = []


def check(r, status, code, field=None):
    """The error answer: status, the documented shape, the code and the field."""
    SEEN.append(code)
    assert r.status == status, f"want {status} {code}: {r.show()}"
    doc = r.json
    e = doc.get("error")
    assert isinstance(e, dict) and set(doc) == {"error"}, doc
    keys = {"class", "code", "message", "field"}
    assert keys <= set(e) <= keys | {"smtp_reply", "fingerprint"}, e
    assert e["code"] == code, f"want code {code}, got {e}"
    assert e["field"] == field, f"want field {field!r}, got {e}"
    assert isinstance(e["message"], str) and e["message"], e
    return e


def case_setup(svc, ctx):
    a = svc.init("Errors Org", ADMIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"),
                   {"domains": ["staffing.example"], "features": {"custom_smtp": True}}), 200)
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": REC, "name": "Rec", "role": "user"}), 201)
    svc.users["rec"] = {"id": doc["id"], "token": doc["token"]}


def case_body(svc, ctx):
    adm, rec = svc.tok("admin"), svc.tok("rec")
    check(svc.req("POST", "/v1/profiles", rec, raw=b'{"kind": "applicant",'), 400,
          "invalid_json")
    check(svc.req("POST", "/v1/profiles", rec, raw=b'[1, 2]'), 400, "invalid_json")
    ok = {"kind": "applicant", "name": "Jack", "emails": ["jack@cand.example"]}
    check(svc.req("POST", "/v1/profiles", rec, dict(ok, nickname="J")), 400, "unknown_field",
          "nickname")
    check(svc.req("POST", "/v1/users", adm, {"name": "No Address"}), 400, "missing_field",
          "email")
    check(svc.req("POST", "/v1/profiles", rec, dict(ok, name=42)), 400, "invalid_type", "name")
    check(svc.req("PUT", "/v1/smtp", rec,
                  {"host": "127.0.0.1", "port": 70000, "security": "tls", "username": "u",
                   "password": "p", "from": REC, "accept_disclaimer": True}), 400,
          "out_of_range", "port")
    check(svc.req("POST", "/v1/profiles", rec, dict(ok, name="x" * 100000)), 400, "too_long",
          "name")
    check(svc.req("POST", "/v1/profiles", rec,
                  dict(ok, emails=[f"a{i}@cand.example" for i in range(5000)])), 400,
          "too_many_items", "emails")
    check(svc.req("POST", "/v1/profiles", rec, dict(ok, kind="robot")), 400, "invalid_value",
          "kind")
    check(svc.req("POST", "/v1/profiles", rec, dict(ok, emails=["not an address"])), 400,
          "invalid_address", "emails")
    check(svc.req("PUT", "/v1/org", adm, {"domains": ["gmail.com"]}), 400, "freemail_domain",
          "domains")
    check(svc.req("PUT", "/v1/org/features", adm, {"bcc_sync": True}), 400, "not_available",
          "features")


def case_query(svc, ctx):
    rec = svc.tok("rec")
    check(svc.req("GET", "/v1/profiles?limt=5", rec), 400, "unknown_parameter", "limt")
    check(svc.req("GET", "/v1/smtp?verbose=1", rec), 400, "unknown_parameter", "verbose")
    check(svc.req("GET", "/v1/profiles?q=a&q=b", rec), 400, "repeated_parameter", "q")
    check(svc.req("GET", "/v1/profiles?limit=0", rec), 400, "out_of_range", "limit")
    check(svc.req("GET", "/v1/notifications?cursor=bogus", rec), 400, "invalid_cursor",
          "cursor")
    check(svc.req("GET", "/v1/messages?state=lost", rec), 400, "invalid_value", "state")
    check(svc.req("GET", "/v1/oauth/start", rec), 400, "missing_parameter", "provider")
    check(svc.req("GET", "/v1/oauth/start?provider=yahoo", rec), 400, "invalid_value",
          "provider")


def smtp(**kw):
    body = {"host": "127.0.0.1", "port": 2525, "security": "starttls", "username": REC,
            "password": "pw", "from": REC, "accept_disclaimer": True}
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


def case_smtp_form(svc, ctx):
    rec = svc.tok("rec")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(accept_disclaimer=False)), 400,
          "disclaimer_required", "accept_disclaimer")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(preset="carrier-pigeon")), 400,
          "unknown_preset", "preset")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(host=None)), 400, "missing_field", "host")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(username=None)), 400, "missing_field",
          "username")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(auth="none")), 400, "invalid_combination",
          "auth")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(auth="none", username=None, password=None)),
          400, "auth_required", "auth")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(security="none")), 400, "plaintext_auth",
          "security")
    # 127.0.0.2 is the operator's no_auth_hosts: auth none passes, the pin does not.
    check(svc.req("PUT", "/v1/smtp", rec, smtp(host="127.0.0.2", security="none",
                                               tls_fingerprint="sha256:" + "ab" * 32,
                                               password=None, auth="none", username=None)),
          400, "invalid_combination", "tls_fingerprint")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(password=None)), 400, "password_required",
          "password")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(host="10.20.30.40")), 400, "host_private",
          "host")
    check(svc.req("PUT", "/v1/smtp", rec, smtp(**{"from": "someone@else.example"})), 400,
          "from_not_own", "from")


def case_imap_form(svc, ctx):
    rec = svc.tok("rec")
    body = {"host": "127.0.0.1", "port": 1143, "security": "starttls", "username": "rec",
            "password": "pw"}
    check(svc.req("PUT", "/v1/imap", rec, body), 403, "feature_off")
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"imap_sync": True}), 200)
    check(svc.req("PUT", "/v1/imap", rec, {k: v for k, v in body.items() if k != "password"}),
          400, "password_required", "password")
    # The request rules IMAP shares with SMTP (engine/account_save.c) answer with the same codes.
    check(svc.req("PUT", "/v1/imap", rec, {**body, "security": "none"}), 400, "plaintext_auth",
          "security")
    check(svc.req("PUT", "/v1/imap", rec, {**body, "tls_fingerprint": "sha256:12"}), 400,
          "invalid_value", "tls_fingerprint")
    check(svc.req("PUT", "/v1/imap", rec, {**body, "auth": "password", "refresh_token": "r"}),
          400, "invalid_combination", "auth")


def case_access(svc, ctx):
    adm, rec = svc.tok("admin"), svc.tok("rec")
    check(svc.req("GET", "/v1/profiles"), 401, "unauthorized")
    check(svc.req("GET", "/v1/profiles", "mt_not-a-token"), 401, "unauthorized")
    check(svc.req("GET", "/v1/org", rec), 403, "forbidden")
    check(svc.req("GET", "/v1/never-log?scope=org", rec), 403, "admin_only", "scope")
    check(svc.req("GET", f"/v1/messages?user={svc.users['admin']['id']}", rec), 403,
          "admin_only", "user")
    check(svc.req("GET", "/v1/profiles/prf_doesnotexist", rec), 404, "not_found")
    check(svc.req("GET", "/v1/nothing-here", rec), 404, "not_found")
    check(svc.req("DELETE", "/v1/org", adm), 405, "method_not_allowed")
    check(svc.req("DELETE", f"/v1/users/{svc.users['admin']['id']}", adm), 409, "self_lockout")
    check(svc.req("POST", "/v1/messages", rec,
                  {"to": ["jack@cand.example"], "subject": "Hi", "text": "Hi"}), 409,
          "no_route")
    check(svc.req("GET", "/v1/oauth/start?provider=google&for=smtp", rec), 409,
          "not_configured", "provider")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    with rig.tempdir("mailtrail-errors-") as tmp, contextlib.ExitStack() as stack:
        svc = Service(a.bin_dir, tmp, env={"MAILTRAIL_NO_AUTH_HOSTS": "127.0.0.2"})
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, {})
        r.only = only
        if r.failed:
            print(svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("body", case_body), ("query", case_query),
                         ("smtp_form", case_smtp_form), ("imap_form", case_imap_form),
                         ("access", case_access)):
            r.run(name, fn, svc, {})
        if r.failed:
            print(svc.log_tail(40))
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
