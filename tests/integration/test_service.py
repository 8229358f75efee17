#!/usr/bin/python3
"""`mailtrail init` + `mailtrail serve` and the HTTP API (DESIGN.md §1-2), end to end, against
the rig's authenticating SMTP sink (tests/rig).

  /usr/bin/python3 tests/integration/test_service.py --bin-dir BUILD [--only NAME]... [--keep]

One store, one server, two orgs (A and B; a third is added by `init` while the server runs).
The cases run in order and share state (org A's user `rec` connects its custom SMTP in the
middle and the isolation cases look at it), so --only is for reading output, not for running a
case alone. Covers: init (org JSON, secret.key 0600), users and tokens (create, revoke,
deactivate, admin-only routes, 401/403), the custom SMTP acceptance items (feature switch,
disclaimer, live check failures leaving the stored state alone, a confirmation mail in the sink,
no secret in GET, host policy, presets, PATCH limits, DELETE), the password nowhere in the data
directory (SQLite WAL/SHM included) nor in the server's log, org isolation (404, never 403),
profiles (normalisation, paging, search, erase), CSV import (line numbers, bad files refused
whole), strict JSON input (400 class input, nothing stored), /metrics and SIGTERM.

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed. Standard
library only (Debian's /usr/bin/python3; the sink needs python3-aiosmtpd). The Service, Resp
and HTTP helpers are shared with the other service tests: tests/rig/service.py.
"""

import argparse
import base64
import os
import re
import signal
import stat
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402
import service  # noqa: E402
from service import (HTTP_TIMEOUT, RFC3339, expect, expect_input, keys_anywhere,  # noqa: E402
                     urlquote)

REC = "rec@a.example"
PASSWORD = "Sm7p-Pw!q9zX-unique-4711"
WRONG_PASSWORD = "Wr0ng-Pw!k2vB-unique-0815"


# --- HTTP: Service, Resp and the helpers live in tests/rig/service.py ------------------------

class Service(service.Service):
    def __init__(self, bin_dir, tmp, certs):
        super().__init__(bin_dir, tmp, certs)
        # Filled by the cases
        self.sink = None
        self.sink_port = None
        self.connected = None  # GET /v1/smtp body once connected


def list_all(svc, who, q=None, limit=1000):
    """Every profile the user sees, following next_cursor."""
    out = []
    cursor = None
    for _ in range(1000):
        path = f"/v1/profiles?limit={limit}"
        if q is not None:
            path += "&q=" + urlquote(q)
        if cursor:
            path += "&cursor=" + urlquote(cursor)
        doc = expect(svc.req("GET", path, svc.tok(who)), 200)
        out.extend(doc["profiles"])
        cursor = doc["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("paging never ended")


def count_profiles(svc, who):
    return len(list_all(svc, who))


# --- setup ----------------------------------------------------------------------------------

def case_init_two_orgs(svc):
    a = svc.init("Org A", "admin@a.example")
    b = svc.init("Org B", "admin@b.example")
    assert a["org_id"] != b["org_id"] and a["token"] != b["token"], (a, b)
    svc.orgs["A"], svc.orgs["B"] = a, b
    svc.users["adminA"] = {"id": a["user_id"], "token": a["token"]}
    svc.users["adminB"] = {"id": b["user_id"], "token": b["token"]}
    key = os.path.join(svc.data, "secret.key")
    mode = stat.S_IMODE(os.stat(key).st_mode)
    assert mode == 0o600, f"{key} has mode {mode:o}, expected 600"


def case_serve_healthz(svc):
    r = svc.start()
    assert isinstance(r.json, dict) and r.json.get("status") == "ok", r.show()


def case_sink_starts(svc, stack):
    cm = rig.auth_sink(svc.certs, os.path.join(svc.tmp, "sink"), user=REC, password=PASSWORD,
                       starttls=True, tls=False, plain=False, require_auth=True)
    svc.sink = stack.enter_context(cm)
    svc.sink_port = svc.sink.port_starttls


# --- users and tokens -----------------------------------------------------------------------

def case_users_create(svc):
    r = svc.req("POST", "/v1/users", svc.tok("adminA"),
                {"email": " Rec@A.Example ", "name": "Rec Ruiter", "role": "user"})
    doc = expect(r, 201)
    assert doc.get("email") == REC, "email not normalised" + r.show()
    assert doc.get("role") == "user" and doc.get("aliases") == [], r.show()
    assert isinstance(doc.get("id"), str) and isinstance(doc.get("token"), str), r.show()
    svc.users["rec"] = {"id": doc["id"], "token": doc["token"]}
    # The new token works at once.
    expect(svc.req("GET", "/v1/smtp", svc.tok("rec")), 200)
    # The same address again is a conflict.
    expect(svc.req("POST", "/v1/users", svc.tok("adminA"), {"email": REC, "name": "Again"}), 409)
    # A user of org B (for the isolation cases).
    doc = expect(svc.req("POST", "/v1/users", svc.tok("adminB"),
                         {"email": "user@b.example", "name": "B User"}), 201)
    svc.users["userB"] = {"id": doc["id"], "token": doc["token"]}


def case_tokens_create_revoke(svc):
    r = svc.req("POST", "/v1/tokens", svc.tok("rec"))
    doc = expect(r, 201)
    assert isinstance(doc.get("id"), str) and isinstance(doc.get("token"), str), r.show()
    assert doc["token"] != svc.tok("rec")
    expect(svc.req("GET", "/v1/profiles", doc["token"]), 200)
    # Another org's admin cannot revoke it (404) and it still works.
    expect(svc.req("DELETE", "/v1/tokens/" + doc["id"], svc.tok("adminB")), 404)
    expect(svc.req("GET", "/v1/profiles", doc["token"]), 200)
    expect(svc.req("DELETE", "/v1/tokens/" + doc["id"], svc.tok("rec")), 204)
    expect(svc.req("GET", "/v1/profiles", doc["token"]), 401, "auth")
    expect(svc.req("GET", "/v1/profiles", svc.tok("rec")), 200)  # the first one still works
    # An empty JSON object is accepted; anything in it is unknown.
    doc2 = expect(svc.req("POST", "/v1/tokens", svc.tok("rec"), {}), 201)
    expect(svc.req("DELETE", "/v1/tokens/" + doc2["id"], svc.tok("rec")), 204)
    expect_input(svc.req("POST", "/v1/tokens", svc.tok("rec"), {"name": "x"}))


def case_users_patch_aliases(svc):
    uid = svc.users["rec"]["id"]
    r = svc.req("PATCH", f"/v1/users/{uid}", svc.tok("adminA"),
                {"aliases": ["Rec.Alias@A.Example", "rec@a.example"], "name": "Rec R."})
    doc = expect(r, 200)
    assert doc.get("aliases") == ["rec.alias@a.example"], "aliases not normalised/deduplicated" + r.show()
    assert doc.get("name") == "Rec R." and doc.get("email") == REC, r.show()
    expect_input(svc.req("PATCH", f"/v1/users/{uid}", svc.tok("adminA"), {"aliases": ["john"]}))
    expect_input(svc.req("PATCH", f"/v1/users/{uid}", svc.tok("adminA"), {"role": "owner"}))
    expect(svc.req("PATCH", "/v1/users/usr_doesnotexist00000000", svc.tok("adminA"),
                   {"name": "x"}), 404)


def case_non_admin_403(svc):
    t = svc.tok("rec")
    expect(svc.req("GET", "/v1/org", t), 403)
    expect(svc.req("PUT", "/v1/org", t, {"domains": ["a.example"]}), 403)
    expect(svc.req("PUT", "/v1/org/features", t, {"custom_smtp": True}), 403)
    expect(svc.req("POST", "/v1/users", t, {"email": "x@a.example", "name": "X"}), 403)
    expect(svc.req("DELETE", "/v1/users/" + svc.users["adminA"]["id"], t), 403)
    expect(svc.req("GET", "/v1/org", svc.tok("adminA")), 200)  # still an admin


def case_no_token_401(svc):
    expect(svc.req("GET", "/v1/profiles"), 401)
    expect(svc.req("GET", "/v1/profiles", "mt_not-a-real-token"), 401)
    expect(svc.req("GET", "/v1/org", "mt_not-a-real-token"), 401)  # 401 before 403
    expect(svc.req("GET", "/v1/profiles", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401)
    expect(svc.req("PUT", "/v1/smtp", None, {"accept_disclaimer": True, "from": REC}), 401)


def case_users_deactivate(svc):
    doc = expect(svc.req("POST", "/v1/users", svc.tok("adminA"),
                         {"email": "leaver@a.example", "name": "Leaver"}), 201)
    t1 = doc["token"]
    t2 = expect(svc.req("POST", "/v1/tokens", t1), 201)["token"]
    expect(svc.req("GET", "/v1/profiles", t2), 200)
    expect(svc.req("DELETE", "/v1/users/" + doc["id"], svc.tok("adminA")), 204)
    expect(svc.req("GET", "/v1/profiles", t1), 401)
    expect(svc.req("GET", "/v1/profiles", t2), 401)
    # An admin cannot deactivate itself.
    expect(svc.req("DELETE", "/v1/users/" + svc.users["adminA"]["id"], svc.tok("adminA")), 409)


# --- custom SMTP ----------------------------------------------------------------------------

def smtp_body(svc, **over):
    body = {"host": "127.0.0.1", "port": svc.sink_port, "security": "starttls",
            "username": REC, "password": PASSWORD, "from": REC, "limit": 100, "window": "hour",
            "accept_disclaimer": True}
    for k, v in over.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


def smtp_get(svc, who="rec"):
    return expect(svc.req("GET", "/v1/smtp", svc.tok(who)), 200)


def case_smtp_feature_off_403(svc):
    r = svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc))
    expect(r, 403)
    assert smtp_get(svc)["state"] == "off"
    assert svc.sink.messages() == [], "a check ran although the feature is off"


def case_smtp_feature_on(svc):
    r = svc.req("PUT", "/v1/org/features", svc.tok("adminA"), {"custom_smtp": True})
    doc = expect(r, 200)
    assert doc.get("custom_smtp") is True, r.show()
    org = expect(svc.req("GET", "/v1/org", svc.tok("adminA")), 200)
    assert org["features"] == {"custom_smtp": True, "imap_sync": False, "bcc_sync": False}, org
    orgb = expect(svc.req("GET", "/v1/org", svc.tok("adminB")), 200)
    assert orgb["features"]["custom_smtp"] is False, f"org B's switch moved too: {orgb}"
    expect_input(svc.req("PUT", "/v1/org/features", svc.tok("adminA"), {"custom_smtp": "yes"}))
    expect_input(svc.req("PUT", "/v1/org/features", svc.tok("adminA"), {"smtp": True}))


def case_smtp_no_disclaimer_400(svc):
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, accept_disclaimer=None)),
                 "disclaimer")
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, accept_disclaimer=False)),
                 "disclaimer")
    assert smtp_get(svc)["state"] == "off"


def case_smtp_wrong_password_422(svc):
    r = svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, password=WRONG_PASSWORD))
    expect(r, 422, "auth")
    reply = r.json["error"].get("smtp_reply")
    assert reply is None or reply.startswith("5"), "smtp_reply is not the server's reply" + r.show()
    assert WRONG_PASSWORD not in r.text
    doc = smtp_get(svc)
    assert doc["state"] == "off" and doc.get("host") is None, f"a failed check changed the settings: {doc}"


def case_smtp_connect_ok(svc):
    before = len(svc.sink.messages())
    t0 = int(time.time())
    r = svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc))
    doc = expect(r, 200)
    assert doc.get("state") == "connected", r.show()
    assert isinstance(doc.get("verified_at"), str) and RFC3339.match(doc["verified_at"]), r.show()
    mid = doc.get("confirmation_message_id")
    assert isinstance(mid, str) and "@" in mid, r.show()
    assert PASSWORD not in r.text
    msgs = svc.sink.wait_messages(before + 1, timeout=10)
    assert len(msgs) == before + 1, f"{len(msgs) - before} confirmation mails in the sink"
    m = msgs[-1]
    assert m["mail_from"] == REC and m["rcpt_tos"] == [REC], m
    assert m["auth_user"] == REC and m["tls"] is True, m
    hdr = re.search(rb"^Message-ID:\s*(.*?)\s*$", m["data"], re.M | re.I)
    assert hdr, "the confirmation has no Message-ID"
    got = hdr.group(1).decode().strip().strip("<>")
    assert got == mid.strip("<>"), f"Message-ID {got!r} != confirmation_message_id {mid!r}"
    for h in (rb"^From:.*rec@a\.example", rb"^To:.*rec@a\.example"):
        assert re.search(h, m["data"], re.M | re.I), f"header {h!r} missing in the confirmation"
    assert PASSWORD.encode() not in m["data"]
    svc.confirm = {"verified_at": doc["verified_at"], "message_id": mid, "t0": t0}


def case_smtp_get_no_secret(svc):
    r = svc.req("GET", "/v1/smtp", svc.tok("rec"))
    doc = expect(r, 200)
    assert PASSWORD not in r.text, "the password is in GET /v1/smtp"
    assert base64.b64encode(PASSWORD.encode()).decode() not in r.text
    bad = {k for k in keys_anywhere(doc)} & {"password", "secret", "sealed_secret", "access_token"}
    assert not bad, f"secret keys in GET /v1/smtp: {bad}" + r.show()
    assert doc["state"] == "connected", r.show()
    assert doc["host"] == "127.0.0.1" and doc["port"] == svc.sink_port, r.show()
    assert doc["security"] == "starttls" and doc["username"] == REC and doc["from"] == REC, r.show()
    assert doc["limits"] == [{"limit": 100, "window": "hour"}], r.show()
    assert doc["verified_at"] == svc.confirm["verified_at"], r.show()
    usage = doc.get("usage")
    assert isinstance(usage, list) and len(usage) == 1, r.show()
    u = usage[0]
    # The confirmation mail of the PUT counts in the account's windows.
    assert u.get("window") == "hour" and u.get("limit") == 100 and u.get("used") == 1, r.show()
    assert "next_slot_at" in u, r.show()
    svc.connected = doc


def case_password_not_stored_plain_connected(svc):
    files = check_secrets_absent(svc)
    names = sorted(os.path.basename(f) for f in files)
    print(f"     (scanned {len(files)} files: {' '.join(names)} + serve.log)", flush=True)


def case_smtp_second_failure_keeps(svc):
    before = len(svc.sink.messages())
    r = svc.req("PUT", "/v1/smtp", svc.tok("rec"),
                smtp_body(svc, password=WRONG_PASSWORD, limit=5, window="minute"))
    expect(r, 422, "auth")
    doc = smtp_get(svc)
    assert doc == svc.connected, f"a failed check changed the stored settings:\n  before {svc.connected}\n  after  {doc}"
    assert len(svc.sink.messages()) == before


def case_smtp_from_not_users_400(svc):
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, **{"from": "boss@a.example"})),
                 "from")
    # An alias is the user's (PATCHed earlier) — but only checked here for the refusal of others.
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, **{"from": "john"})))
    assert smtp_get(svc) == svc.connected


def case_smtp_private_host_400(svc):
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, host="10.1.2.3", port=587)))
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, host="169.254.169.254", port=25)))
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, host="bad host!")))
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, security="ssl")))
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, port=70000)))
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, preset="nosuch")))
    assert smtp_get(svc) == svc.connected


def case_smtp_preset_limits(svc):
    # rackspace: security starttls, 500/hour; host/port overridden to reach the sink.
    body = smtp_body(svc, preset="rackspace", security=None, limit=None, window=None)
    r = svc.req("PUT", "/v1/smtp", svc.tok("rec"), body)
    expect(r, 200)
    doc = smtp_get(svc)
    assert doc["state"] == "connected" and doc["preset"] == "rackspace", doc
    assert doc["host"] == "127.0.0.1" and doc["port"] == svc.sink_port, doc
    assert doc["security"] == "starttls", doc
    assert doc["limits"] == [{"limit": 500, "window": "hour"}], f"preset limits not used: {doc}"
    # A preset without a host (custom) and no host given -> 400.
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"),
                         smtp_body(svc, preset="custom", host=None, port=None)), "host")


def case_smtp_put_keeps_password(svc):
    before = len(svc.sink.messages())
    prev = smtp_get(svc)
    time.sleep(1.1)  # so verified_at moves
    r = svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, password=None))
    doc = expect(r, 200)
    assert doc["state"] == "connected", r.show()
    assert doc["verified_at"] > prev["verified_at"], f"verified_at did not move: {prev['verified_at']} -> {doc['verified_at']}"
    assert len(svc.sink.wait_messages(before + 1)) == before + 1, "no new confirmation mail"
    now = smtp_get(svc)
    assert now["limits"] == [{"limit": 100, "window": "hour"}] and now["preset"] is None, now


def case_smtp_patch_limits(svc):
    prev = smtp_get(svc)
    limits = [{"limit": 20, "window": "minute"}, {"limit": 300, "window": "day"}]
    r = svc.req("PATCH", "/v1/smtp", svc.tok("rec"), {"limits": limits})
    doc = expect(r, 200)
    assert doc["limits"] == limits, r.show()
    now = smtp_get(svc)
    assert now["limits"] == limits, now
    assert {u["window"] for u in now["usage"]} == {"minute", "day"}, now
    for k in ("state", "host", "port", "security", "username", "from", "verified_at"):
        assert now[k] == prev[k], f"PATCH changed {k}: {prev[k]!r} -> {now[k]!r}"
    expect_input(svc.req("PATCH", "/v1/smtp", svc.tok("rec"), {"limits": limits, "host": "x.example"}))
    expect_input(svc.req("PATCH", "/v1/smtp", svc.tok("rec"),
                         {"limits": [{"limit": 1, "window": "week"}]}))
    expect_input(svc.req("PATCH", "/v1/smtp", svc.tok("rec"),
                         {"limits": [{"limit": 1, "window": "day"}, {"limit": 2, "window": "day"}]}))
    expect_input(svc.req("PATCH", "/v1/smtp", svc.tok("rec"), {"limits": [{"limit": 0, "window": "day"}]}))
    expect_input(svc.req("PATCH", "/v1/smtp", svc.tok("rec"), {}))
    assert smtp_get(svc)["limits"] == limits
    svc.connected = smtp_get(svc)


def case_smtp_presets_list(svc):
    doc = expect(svc.req("GET", "/v1/smtp/presets", svc.tok("rec")), 200)
    ids = [p.get("id") for p in doc.get("presets", [])]
    for want in ("gmail", "microsoft365", "intermedia", "rackspace", "fatcow", "custom"):
        assert want in ids, f"preset {want} missing: {ids}"
    rs = next(p for p in doc["presets"] if p["id"] == "rackspace")
    assert rs["host"] == "secure.emailsrvr.com" and rs["port"] == 587 and rs["security"] == "starttls", rs
    assert rs["limits"] == [{"limit": 500, "window": "hour"}], rs
    for p in doc["presets"]:
        for k in ("id", "name", "host", "port", "security", "auth", "limits", "notes"):
            assert k in p, f"preset {p.get('id')} lacks {k}"
    gm = next(p for p in doc["presets"] if p["id"] == "gmail")
    assert set(gm.get("oauth", {})) >= {"auth_url", "token_url", "scopes"}, gm


# --- org isolation (while rec's SMTP is connected) ------------------------------------------

def case_org_isolation(svc):
    pa = expect(svc.req("POST", "/v1/profiles", svc.tok("adminA"),
                        {"kind": "contact", "name": "Secret Agent", "emails": ["agent@secret-a.example"]}), 201)
    pid = pa["id"]
    rec_id = svc.users["rec"]["id"]
    for who in ("adminB", "userB"):
        t = svc.tok(who)
        expect(svc.req("GET", f"/v1/profiles/{pid}", t), 404)
        expect(svc.req("PATCH", f"/v1/profiles/{pid}", t, {"name": "Hijacked"}), 404)
        expect(svc.req("DELETE", f"/v1/profiles/{pid}", t), 404)
        for q in ("secret", "agent@"):
            doc = expect(svc.req("GET", "/v1/profiles?q=" + q, t), 200)
            assert doc["profiles"] == [], f"{who} finds org A's profile by {q!r}: {doc}"
        assert all(p["id"] != pid for p in list_all(svc, who)), f"{who} lists org A's profile"
        s = smtp_get(svc, who)
        assert s["state"] == "off" and s.get("host") is None, f"{who} sees SMTP settings: {s}"
    # Users of org A, from org B's admin (the user routes are admin-only: a plain user of B gets
    # the same 403 for any id, which tells nothing).
    expect(svc.req("PATCH", f"/v1/users/{rec_id}", svc.tok("adminB"), {"name": "Hijacked"}), 404)
    expect(svc.req("DELETE", f"/v1/users/{rec_id}", svc.tok("adminB")), 404)
    ob = expect(svc.req("GET", "/v1/org", svc.tok("adminB")), 200)
    assert ob["id"] == svc.orgs["B"]["org_id"] and ob["name"] == "Org B", ob
    # Nothing of A changed.
    still = expect(svc.req("GET", f"/v1/profiles/{pid}", svc.tok("adminA")), 200)
    assert still["name"] == "Secret Agent", still
    expect(svc.req("GET", "/v1/smtp", svc.tok("rec")), 200)
    assert smtp_get(svc) == svc.connected


def case_smtp_delete(svc):
    expect(svc.req("DELETE", "/v1/smtp", svc.tok("rec")), 204)
    doc = smtp_get(svc)
    assert doc["state"] == "off", doc
    # Idempotent.
    expect(svc.req("DELETE", "/v1/smtp", svc.tok("rec")), 204)
    # After DELETE the secret is gone: a PUT without password needs one.
    expect_input(svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(svc, password=None)), "password")


# --- more SMTP: pins, connection failures, aliases, deactivation ----------------------------

def db_query(svc, sql, *args):
    """Reads the store directly (read-only) for what the API cannot show: wiped secrets."""
    import sqlite3
    con = sqlite3.connect(f"file:{os.path.join(svc.data, 'mailtrail.db')}?mode=ro", uri=True,
                          timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def case_smtp_pin_and_conn_failures(svc):
    t = svc.tok("rec")
    pin = rig.cert_sha256(svc.certs.server_cert)
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(svc, tls_fingerprint=rig.colon_upper(pin)))
    expect(r, 200)
    doc = smtp_get(svc)
    assert doc["state"] == "connected" and doc["tls_fingerprint"], doc
    svc.connected = doc
    # A pin of another certificate: 422 tls, and the fingerprint the server presented.
    wrong = rig.cert_sha256(svc.certs.selfsigned_cert)
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(svc, tls_fingerprint=wrong))
    expect(r, 422, "tls")
    assert r.json["error"].get("fingerprint") == pin, f"error.fingerprint is not the presented certificate's ({pin})" + r.show()
    expect_input(svc.req("PUT", "/v1/smtp", t, smtp_body(svc, tls_fingerprint="md5:00")), "tls_fingerprint")
    # Nothing listening: 422 conn.
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(svc, port=rig.closed_port()))
    expect(r, 422, "conn")
    assert smtp_get(svc) == svc.connected, "a failed check changed the settings"


def case_smtp_from_alias_ok(svc):
    t = svc.tok("rec")
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(svc, **{"from": "Rec.Alias@A.Example"}))
    expect(r, 200)
    doc = smtp_get(svc)
    assert doc["from"] == "rec.alias@a.example" and doc["state"] == "connected", doc
    m = svc.sink.messages()[-1]
    assert m["mail_from"] == "rec.alias@a.example" and m["rcpt_tos"] == ["rec.alias@a.example"], m
    svc.connected = doc


def secret_row(svc, user_id):
    rows = db_query(svc, "SELECT state, sealed_secret IS NOT NULL FROM smtp_accounts WHERE user_id = ?",
                    user_id)
    return rows[0] if rows else None


def case_deactivate_wipes_smtp(svc):
    ta = svc.tok("adminA")
    doc = expect(svc.req("POST", "/v1/users", ta, {"email": "leaver2@a.example", "name": "Leaver Two"}), 201)
    r = svc.req("PUT", "/v1/smtp", doc["token"], smtp_body(svc, **{"from": "leaver2@a.example"}))
    expect(r, 200)
    assert secret_row(svc, doc["id"]) == ("connected", 1), secret_row(svc, doc["id"])
    expect(svc.req("DELETE", "/v1/users/" + doc["id"], ta), 204)
    row = secret_row(svc, doc["id"])
    assert row is None or row == ("off", 0), f"after deactivation the account is {row} (state, has secret)"


class DelayProxy:
    """A TCP relay that waits `delay` seconds before connecting a client to `port`: keeps a
    live check in flight long enough to do something else meanwhile."""

    def __init__(self, port, delay):
        import socket
        import threading
        self.target = port
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c, socket), daemon=True).start()

    def _serve(self, c, socket):
        import threading
        time.sleep(self.delay)
        try:
            u = socket.create_connection(("127.0.0.1", self.target), timeout=10)
        except OSError:
            c.close()
            return

        def pump(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(u, c), daemon=True)
        t.start()
        pump(c, u)
        t.join(5)
        c.close()
        u.close()

    def close(self):
        self.closing = True
        self.sock.close()


def case_deactivate_during_live_check(svc):
    """A user deactivated while its PUT /v1/smtp check runs must not end up with a connected
    account holding a secret (DESIGN §1: a deactivated user's accounts go off, secrets wiped)."""
    import threading
    ta = svc.tok("adminA")
    doc = expect(svc.req("POST", "/v1/users", ta, {"email": "racer@a.example", "name": "Racer"}), 201)
    proxy = DelayProxy(svc.sink_port, 1.5)
    result = {}
    try:
        def put():
            result["r"] = svc.req("PUT", "/v1/smtp", doc["token"],
                                  smtp_body(svc, port=proxy.port, **{"from": "racer@a.example"}))
        th = threading.Thread(target=put)
        th.start()
        deadline = time.monotonic() + 10
        while proxy.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.accepted, "the live check never connected"
        expect(svc.req("DELETE", "/v1/users/" + doc["id"], ta), 204)
        th.join(HTTP_TIMEOUT)
    finally:
        proxy.close()
    r = result.get("r")
    assert r is not None, "the PUT did not finish"
    row = secret_row(svc, doc["id"])
    assert row is None or row == ("off", 0), \
        f"the deactivated user's account was stored as {row} (state, has secret) after the check; the PUT answered {r.status}"


def case_tokens_not_in_log(svc):
    log = svc.log_text()
    leaked = [who for who, u in svc.users.items() if u["token"].encode() in log]
    leaked += [k for k, o in svc.orgs.items() if o["token"].encode() in log]
    assert not leaked, f"bearer tokens in the server log: {leaked}"


def case_http_edges(svc):
    t = svc.tok("rec")
    expect(svc.req("GET", "/v1/nosuch", t), 404, "input")
    r = svc.req("POST", "/v1/smtp", t, {})
    expect(r, 405, "input")
    big = {"kind": "applicant", "name": "Big", "emails": ["big@input.example"], "pad": "x" * (1024 * 1024 + 10)}
    expect(svc.req("POST", "/v1/profiles", t, big), 413, "input")
    deep = "[" * 40 + "]" * 40
    expect_input(svc.req("POST", "/v1/profiles", t, raw='{"kind":"applicant","name":"D","emails":' + deep + '}'))
    expect_input(svc.req("POST", "/v1/profiles", t, raw='{"kind":"applicant","name":"N\\u0000ul","emails":["n@input.example"]}'))
    expect_input(svc.req("PUT", "/v1/smtp", t, smtp_body(svc, port=587.0)), "port")
    expect_input(svc.req("PUT", "/v1/smtp", t, smtp_body(svc, port=True)), "port")
    assert list_all(svc, "rec", q="n@input") == [] and list_all(svc, "rec", q="big@") == []


# --- secrets in files -----------------------------------------------------------------------

def secret_needles():
    plain_blob = b"\0" + REC.encode() + b"\0" + PASSWORD.encode()
    out = []
    for pw in (PASSWORD, WRONG_PASSWORD):
        out.append((pw, pw.encode()))
        out.append((f"base64({pw})", base64.b64encode(pw.encode())))
        out.append(("utf-16le", pw.encode("utf-16-le")))
    out.append(("AUTH PLAIN blob", base64.b64encode(plain_blob)))
    out.append(("AUTH PLAIN blob (wrong)", base64.b64encode(b"\0" + REC.encode() + b"\0" + WRONG_PASSWORD.encode())))
    return out


def check_secrets_absent(svc):
    files = []
    for root, _dirs, names in os.walk(svc.data):
        for n in names:
            files.append(os.path.join(root, n))
    assert any(f.endswith("mailtrail.db") for f in files), f"no database in {svc.data}: {files}"
    found = []
    for path in files + [svc.log_path]:
        with open(path, "rb") as f:
            data = f.read()
        for label, needle in secret_needles():
            if needle in data:
                found.append(f"{label} in {os.path.relpath(path, svc.tmp)}")
    assert not found, "plaintext secret found: " + "; ".join(found)
    return files


def case_password_nowhere(svc):
    files = check_secrets_absent(svc)
    names = sorted(os.path.basename(f) for f in files)
    print(f"     (scanned {len(files)} files: {' '.join(names)} + serve.log)", flush=True)


# --- profiles -------------------------------------------------------------------------------

def case_profiles_crud(svc):
    t = svc.tok("rec")
    r = svc.req("POST", "/v1/profiles", t,
                {"kind": "applicant", "name": "Jack Sparrow",
                 "emails": [" Jack@Example.COM ", "jack@bücher.example", "JACK@example.com"]})
    doc = expect(r, 201)
    assert doc["emails"] == ["jack@example.com", "jack@xn--bcher-kva.example"], "not normalised" + r.show()
    assert doc["kind"] == "applicant" and doc["name"] == "Jack Sparrow", r.show()
    assert RFC3339.match(doc["created_at"]) and isinstance(doc["id"], str), r.show()
    pid = doc["id"]
    got = expect(svc.req("GET", f"/v1/profiles/{pid}", t), 200)
    assert doc.pop("shared_with") == [], doc  # only a change's reply says what it shares
    assert got == doc, f"GET differs from POST:\n  {doc}\n  {got}"
    r = svc.req("PATCH", f"/v1/profiles/{pid}", t,
                {"name": "Captain Jack", "emails": ["jack@example.com", "Captain@Pearl.Example"]})
    doc = expect(r, 200)
    assert doc["name"] == "Captain Jack" and doc["emails"] == ["jack@example.com", "captain@pearl.example"], r.show()
    assert doc["kind"] == "applicant", r.show()
    r = svc.req("PATCH", f"/v1/profiles/{pid}", t, {"kind": "employee"})
    doc = expect(r, 200)
    assert doc["kind"] == "employee" and doc["name"] == "Captain Jack", r.show()
    # Search: name prefix (case-insensitive) and address prefix.
    for q in ("capt", "CAPTAIN J", "captain@pe", "jack@exam"):
        found = [p["id"] for p in list_all(svc, "rec", q=q)]
        assert pid in found, f"q={q!r} does not find the profile: {found}"
    for q in ("jack sp", "sparrow", "zzz"):
        found = [p["id"] for p in list_all(svc, "rec", q=q)]
        assert pid not in found, f"q={q!r} finds the profile: {found}"
    # Delete: 204, then 404 everywhere.
    expect(svc.req("DELETE", f"/v1/profiles/{pid}", t), 204)
    expect(svc.req("GET", f"/v1/profiles/{pid}", t), 404)
    expect(svc.req("PATCH", f"/v1/profiles/{pid}", t, {"name": "Ghost"}), 404)
    expect(svc.req("DELETE", f"/v1/profiles/{pid}", t), 404)
    assert pid not in [p["id"] for p in list_all(svc, "rec", q="captain")]


def case_profiles_paging(svc):
    t = svc.tok("rec")
    made = []
    for i in range(7):
        doc = expect(svc.req("POST", "/v1/profiles", t,
                             {"kind": "contact", "name": f"Pager {i}", "emails": [f"pager{i}@page.example"]}), 201)
        made.append(doc["id"])
    total = list_all(svc, "rec")
    for q, want in ((None, None), ("pager", set(made))):
        seen = []
        cursor = None
        pages = 0
        while True:
            path = "/v1/profiles?limit=3" + ("&q=" + q if q else "") + ("&cursor=" + urlquote(cursor) if cursor else "")
            r = svc.req("GET", path, t)
            doc = expect(r, 200)
            assert "next_cursor" in doc, r.show()
            assert len(doc["profiles"]) <= 3, r.show()
            seen.extend(p["id"] for p in doc["profiles"])
            pages += 1
            cursor = doc["next_cursor"]
            if cursor is None:
                break
            assert len(doc["profiles"]) == 3, "a short page before the end" + r.show()
            assert pages < 100
        assert len(seen) == len(set(seen)), f"q={q}: a profile on two pages: {seen}"
        if want is None:
            assert set(seen) == {p["id"] for p in total}, "paging by 3 differs from one big page"
            assert set(made) <= set(seen)
        else:
            assert set(seen) == want, f"q={q}: {len(seen)} profiles, expected the 7 made"
            assert pages == 3, f"7 profiles by 3 took {pages} pages"
    for bad in ("limit=0", "limit=1001", "limit=abc", "limit=-1"):
        expect_input(svc.req("GET", "/v1/profiles?" + bad, t), "limit")


# --- CSV import -----------------------------------------------------------------------------

GOOD_CSV = (
    "kind,name,emails\r\n"                                                  # 1
    "applicant,Ann Import,ann@import.example\r\n"                           # 2
    "contact,\"Smith, Bob\",bob@import.example;Bob2@Import.EXAMPLE\r\n"      # 3
    "employee,Fay Import,\"fay@import.example;\r\nfay2@import.example\"\r\n"  # 4-5
    "applicant,\"Multi\nLine\",multi@import.example\n"                     # 6-7 (line break in a name)
    "bogus,Carl Import,carl@import.example\n"                               # 8
    "applicant,Dan Import,not-an-address\n"                                 # 9
    "\n"                                                                    # 10 (empty: skipped)
    "contact,Eve Import,eve@import.example; EVE2@import.example \n"         # 11
    "applicant,Gus Import\n"                                                # 12 (2 fields)
    "applicant,Hal Import,hal@import.example;a@b.com;c@d\n"                 # 13 (c@d has no dot)
    "applicant,Ida Import,ida@import.example"                               # 14 (no final break)
)


def case_csv_import(svc):
    t = svc.tok("rec")
    before = count_profiles(svc, "rec")
    r = svc.req("POST", "/v1/profiles/import", t, raw=GOOD_CSV.encode(), content_type="text/csv")
    doc = expect(r, 200)
    rej = doc.get("rejected")
    assert isinstance(rej, list), r.show()
    lines = [x.get("line") for x in rej]
    assert lines == [6, 8, 9, 12, 13], f"rejected lines {lines}, expected [6, 8, 9, 12, 13]" + r.show()
    for x in rej:
        assert isinstance(x.get("error"), str) and x["error"], r.show()
    assert "kind" in rej[1]["error"].lower(), r.show()
    assert doc.get("imported") == 5, r.show()
    after = count_profiles(svc, "rec")
    assert after == before + 5, f"{after - before} profiles stored, 5 reported"
    bob = list_all(svc, "rec", q="smith, b")
    assert len(bob) == 1 and bob[0]["name"] == "Smith, Bob", bob
    assert bob[0]["emails"] == ["bob@import.example", "bob2@import.example"] and bob[0]["kind"] == "contact", bob
    fay = list_all(svc, "rec", q="fay import")
    assert len(fay) == 1 and fay[0]["emails"] == ["fay@import.example", "fay2@import.example"], fay
    eve = list_all(svc, "rec", q="eve2@")
    assert len(eve) == 1 and eve[0]["emails"] == ["eve@import.example", "eve2@import.example"], eve
    assert len(list_all(svc, "rec", q="ida@import")) == 1
    assert list_all(svc, "rec", q="carl") == [] and list_all(svc, "rec", q="dan import") == []


def case_csv_bad_file_400(svc):
    t = svc.tok("rec")
    before = count_profiles(svc, "rec")
    files = {
        "unterminated quote": "kind,name,emails\napplicant,Kim Bad,kim@bad.example\n"
                              "applicant,\"Lee Bad,lee@bad.example\n",
        "quote in unquoted field": "kind,name,emails\napplicant,Kim Bad,kim@bad.example\n"
                                   "applicant,Le\"e Bad,lee@bad.example\n",
        "text after closing quote": "kind,name,emails\napplicant,\"Lee\" Bad,lee@bad.example\n",
        "wrong header": "type,name,emails\napplicant,Kim Bad,kim@bad.example\n",
        "header with a 4th column": "kind,name,emails,phone\napplicant,Kim Bad,kim@bad.example,1\n",
        "no header": "applicant,Kim Bad,kim@bad.example\n",
        "empty file": "",
    }
    for what, text in files.items():
        r = svc.req("POST", "/v1/profiles/import", t, raw=text.encode(), content_type="text/csv")
        assert r.status == 400, f"{what}: expected 400" + r.show()
        expect_input(r)
    after = count_profiles(svc, "rec")
    assert after == before, f"a refused file stored {after - before} profiles"
    assert list_all(svc, "rec", q="kim@bad") == []


# --- bad input ------------------------------------------------------------------------------

def case_bad_input_400(svc):
    t = svc.tok("rec")
    before = count_profiles(svc, "rec")
    good = {"kind": "applicant", "name": "Valid Name", "emails": ["valid@input.example"]}

    def post(body=None, raw=None):
        return svc.req("POST", "/v1/profiles", t, body=body, raw=raw)

    expect_input(post(raw='{"kind":"applicant","name":'))
    expect_input(post(raw='{"kind":"applicant"} trailing'))
    expect_input(post(raw='["kind"]'))
    expect_input(post(raw=''))
    expect_input(post(raw=b'{"kind":"applicant","name":"\xff\xfe","emails":["x@y.example"]}'))
    expect_input(post(raw='{"kind":"applicant","name":"A","name":"B","emails":["dup@input.example"]}'),
                 "duplicate")
    expect_input(post(dict(good, nickname="x")), "nickname")
    expect_input(post(dict(good, name=5)), "name")
    expect_input(post(dict(good, emails="valid@input.example")), "emails")
    expect_input(post(dict(good, emails=[5])), "emails")
    expect_input(post(dict(good, kind="candidate")), "kind")
    expect_input(post({"name": "No Kind", "emails": ["x@input.example"]}), "kind")
    expect_input(post(dict(good, emails=[])), "emails")
    expect_input(post(dict(good, name="")), "name")
    expect_input(post(dict(good, name="x" * 10000)), "name")
    expect_input(post(dict(good, name="Evil\r\nBcc: victim@input.example")), "name")
    expect_input(post(dict(good, name="Evil\nName")), "name")
    expect_input(post(dict(good, emails=["a@input.example\r\nBcc: c@input.example"])), "emails")
    expect_input(post(dict(good, emails=["john"])), "emails")
    expect_input(post(dict(good, emails=["a@b.com;c@d.com"])), "emails")
    expect_input(post(dict(good, emails=["a@b.com, c@d.com"])), "emails")
    expect_input(post(dict(good, emails=["x" * 300 + "@input.example"])), "emails")
    expect_input(post(dict(good, emails=[f"e{i}@input.example" for i in range(21)])), "emails")
    r = svc.req("GET", "/v1/profiles?q=" + urlquote("a\r\nb"), t)
    expect_input(r)
    assert count_profiles(svc, "rec") == before, "a refused request stored a profile"
    assert list_all(svc, "rec", q="valid@input") == []
    # PATCH: refused, and the profile unchanged.
    pid = expect(post(good), 201)["id"]
    for body in ({"name": "x" * 10000}, {"emails": ["john"]}, {"name": None}, {"id": "prf_x"},
                 {"name": "Line\rBreak"}):
        expect_input(svc.req("PATCH", f"/v1/profiles/{pid}", t, body))
    expect_input(svc.req("PATCH", f"/v1/profiles/{pid}", t, raw='{"name":"A","name":"B"}'))
    still = expect(svc.req("GET", f"/v1/profiles/{pid}", t), 200)
    assert still["name"] == "Valid Name" and still["emails"] == ["valid@input.example"], still
    # SMTP: wrong types.
    expect_input(svc.req("PUT", "/v1/smtp", t, smtp_body(svc, port="587")), "port")
    expect_input(svc.req("PUT", "/v1/smtp", t, smtp_body(svc, accept_disclaimer="true")))
    expect_input(svc.req("PUT", "/v1/smtp", t, smtp_body(svc, username="a\r\nb")))
    # Users: refused, nothing created.
    ta = svc.tok("adminA")
    expect_input(svc.req("POST", "/v1/users", ta, {"email": "john", "name": "John"}))
    expect_input(svc.req("POST", "/v1/users", ta, {"email": "new@a.example", "name": "N", "role": "root"}))
    expect_input(svc.req("POST", "/v1/users", ta, {"email": "new@a.example", "name": "N\nX"}))
    expect_input(svc.req("POST", "/v1/users", ta, {"email": "new@a.example", "name": "N", "admin": True}))
    doc = expect(svc.req("POST", "/v1/users", ta, {"email": "new@a.example", "name": "New"}), 201)
    assert doc["email"] == "new@a.example"  # so none of the refused ones was stored


def case_org_domains(svc):
    ta = svc.tok("adminA")
    r = svc.req("PUT", "/v1/org", ta, {"domains": ["A.Example.", "bücher.example", "a.example"]})
    doc = expect(r, 200)
    assert doc["domains"] == ["a.example", "xn--bcher-kva.example"], "domains not normalised" + r.show()
    for bad in (["gmail.com"], ["a.example", "GMAIL.com"], ["outlook.com"], ["not a domain"],
                ["user@a.example"], ["nodot"], "a.example", [5]):
        r = svc.req("PUT", "/v1/org", ta, {"domains": bad})
        assert r.status == 400, f"domains {bad!r}: expected 400" + r.show()
        expect_input(r)
    expect_input(svc.req("PUT", "/v1/org", ta, {"domains": ["gmail.com"]}), "gmail.com")
    expect_input(svc.req("PUT", "/v1/org", ta, {"domains": ["a.example"], "name": "Renamed"}))
    got = expect(svc.req("GET", "/v1/org", ta), 200)
    assert got["domains"] == ["a.example", "xn--bcher-kva.example"], f"a refused PUT changed domains: {got}"
    assert got["features"]["custom_smtp"] is True, got
    # PUT with features only keeps the domains.
    doc = expect(svc.req("PUT", "/v1/org", ta, {"features": {"custom_smtp": False}}), 200)
    assert doc["domains"] == got["domains"] and doc["features"]["custom_smtp"] is False, doc
    doc = expect(svc.req("PUT", "/v1/org/features", ta, {"custom_smtp": True}), 200)
    assert doc == {"custom_smtp": True, "imap_sync": False, "bcc_sync": False}, doc


# --- init while serving, metrics, shutdown --------------------------------------------------

def case_init_while_serving(svc):
    c = svc.init("Org C", "admin@c.example")
    svc.orgs["C"] = c
    r = svc.req("GET", "/v1/org", c["token"])
    doc = expect(r, 200)
    assert doc["name"] == "Org C" and doc["id"] == c["org_id"], r.show()
    expect(svc.req("GET", "/v1/profiles", c["token"]), 200)
    # The other orgs' tokens still work.
    expect(svc.req("GET", "/v1/org", svc.tok("adminA")), 200)


def case_metrics(svc):
    r = svc.req("GET", "/metrics")
    assert r.status == 200, r.show()
    text = r.text
    series = [line for line in text.splitlines() if line.startswith("mailtrail_http_requests_total{")]
    assert series, "no mailtrail_http_requests_total series" + r.show()
    assert any('route="smtp.put"' in s and 'status="422"' in s for s in series), \
        "no smtp.put/422 series:\n" + "\n".join(series)
    assert any('route="profiles.create"' in s and 'status="201"' in s for s in series), \
        "no profiles.create/201 series"
    m = [line for line in text.splitlines() if line.startswith("mailtrail_live_checks_total{")
         and 'kind="smtp"' in line and 'class="auth"' in line]
    assert m, "no mailtrail_live_checks_total{kind=\"smtp\",class=\"auth\"}:\n" + text[:3000]
    n = float(m[0].rsplit(" ", 1)[1])
    assert n >= 2, f"{n} auth failures counted, 2 happened: {m[0]}"
    assert PASSWORD not in text


def case_sigterm_exit(svc):
    proc = svc.proc
    assert proc.poll() is None, f"serve already exited {proc.returncode}\n{svc.log_tail()}"
    start = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    try:
        rc = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        raise AssertionError("serve did not exit within 5 s of SIGTERM")
    took = time.monotonic() - start
    assert rc == 0, f"serve exited {rc} on SIGTERM\n{svc.log_tail()}"
    print(f"     (exited 0 after {took:.2f} s)", flush=True)


def case_password_nowhere_final(svc):
    case_password_nowhere(svc)


# --- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="print the temp dir and keep it")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    mailtrail = os.path.join(a.bin_dir, "mailtrail")
    if not os.access(mailtrail, os.X_OK):
        print(f"FAIL setup: {mailtrail} is not built")
        print("0 passed, 1 failed")
        return 1
    import contextlib
    with rig.tempdir("mailtrail-service-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        svc = Service(a.bin_dir, tmp, certs)
        stack.callback(svc.stop)
        only, r.only = r.only, None  # the setup runs whatever --only says
        r.run("init_two_orgs_secret_key_0600", case_init_two_orgs, svc)
        r.run("serve_healthz", case_serve_healthz, svc)
        r.run("auth_sink_starts", case_sink_starts, svc, stack)
        r.only = only
        if r.failed:
            print("setup failed; the other cases need it\n" + svc.log_tail())
            return r.exit_code()
        cases = [
            ("users_create", case_users_create),
            ("tokens_create_revoke", case_tokens_create_revoke),
            ("users_patch_aliases", case_users_patch_aliases),
            ("non_admin_on_admin_route_403", case_non_admin_403),
            ("no_or_invalid_token_401", case_no_token_401),
            ("users_deactivate_tokens_401", case_users_deactivate),
            ("smtp_feature_off_403", case_smtp_feature_off_403),
            ("smtp_admin_enables_feature", case_smtp_feature_on),
            ("smtp_no_disclaimer_400", case_smtp_no_disclaimer_400),
            ("smtp_wrong_password_422_unchanged", case_smtp_wrong_password_422),
            ("smtp_connect_confirmation_mail", case_smtp_connect_ok),
            ("smtp_get_without_secret", case_smtp_get_no_secret),
            ("password_not_in_files_while_connected", case_password_not_stored_plain_connected),
            ("smtp_second_failure_keeps_settings", case_smtp_second_failure_keeps),
            ("smtp_from_not_users_400", case_smtp_from_not_users_400),
            ("smtp_private_host_400", case_smtp_private_host_400),
            ("smtp_preset_rackspace_limits", case_smtp_preset_limits),
            ("smtp_put_without_password_keeps_it", case_smtp_put_keeps_password),
            ("smtp_patch_limits_only", case_smtp_patch_limits),
            ("smtp_presets_list", case_smtp_presets_list),
            ("org_isolation_404", case_org_isolation),
            ("smtp_pin_ok_wrong_pin_tls_closed_port_conn", case_smtp_pin_and_conn_failures),
            ("smtp_from_alias_ok", case_smtp_from_alias_ok),
            ("deactivate_user_wipes_smtp_secret", case_deactivate_wipes_smtp),
            ("deactivate_during_live_check", case_deactivate_during_live_check),
            ("smtp_delete_off", case_smtp_delete),
            ("profiles_create_get_patch_search_delete", case_profiles_crud),
            ("profiles_paging_cursor", case_profiles_paging),
            ("csv_import_lines", case_csv_import),
            ("csv_bad_file_400_nothing_stored", case_csv_bad_file_400),
            ("bad_input_400_nothing_stored", case_bad_input_400),
            ("org_domains_normalised_freemail_400", case_org_domains),
            ("init_while_serving_token_works", case_init_while_serving),
            ("http_404_405_413_depth_nul", case_http_edges),
            ("metrics", case_metrics),
            ("tokens_not_in_server_log", case_tokens_not_in_log),
            ("sigterm_exits_0", case_sigterm_exit),
            ("password_nowhere_in_data_dir_or_log", case_password_nowhere_final),
        ]
        for name, fn in cases:
            r.run(name, fn, svc)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        if a.keep:
            keep = tmp + ".kept"
            import shutil
            shutil.copytree(tmp, keep, symlinks=True)
            print("kept in " + keep)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
