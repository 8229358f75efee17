#!/usr/bin/python3
"""Org-level API keys: one secret that acts for any user of its org (issue 16 item 1).

  setup            org A (admin, two recruiters), org B (admin, a recruiter); the rig's auth sink
                   as the relay, so that messages are really sent
  create           POST /v1/api-keys: 201 with the key (mtk_…) once; GET /v1/api-keys lists it
                   without the secret; bad scopes, no scopes, a plain user: refused
  act_for_user     a send key with X-Mailtrail-User sends a message as that recruiter (its
                   user_id, the sink got it); a read key reads the message and the activity
                   on the recipient's profile; the admin key created that profile for them
  scopes           read key: POST /v1/messages 403, POST /v1/profiles 403, GET /v1/users 200;
                   send key: POST /v1/profiles 403, GET /v1/api-keys 403
  missing_header   a user route without X-Mailtrail-User: 400 naming the header; a malformed
                   one: 400
  header_with_token  a user token with X-Mailtrail-User: 400 (never silently ignored)
  cross_org        X-Mailtrail-User of org B's user, or an unknown id: 403 with one message
                   (nothing tells them apart); a deactivated user: 403; org B's admin key
                   cannot see org A's users (404)
  admin_users      the admin key lists the org's users (paged), gets one, lists a user's tokens
                   (ids, no secret), revokes one (that token is then 401), mints one (it works);
                   another org's token or user: 404
  log              the request log says which key acted for which user; no key text in it
  revoke           DELETE /v1/api-keys/{id}: 204, the key is then 401 and no longer listed

Run: /usr/bin/python3 tests/integration/test_api_keys.py --bin-dir build
"""
import argparse
import contextlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect, keys_anywhere  # noqa: E402

RELAY_USER = "relay-keys"
RELAY_PASSWORD = "relay-keys-pw"
RELAY_FROM = "bounces@platform.example"
FINAL = ("sent", "partial", "failed", "cancelled")
USER_HEADER = "X-Mailtrail-User"


def as_user(svc, user):
    return {USER_HEADER: svc.users[user]["id"]}


def key_req(svc, key, method, path, user=None, body=None, headers=None):
    h = dict(headers or {})
    if user is not None:
        h.update(as_user(svc, user))
    return svc.req(method, path, svc.keys[key]["key"], body, headers=h)


def case_setup(svc, ctx):
    a = svc.init("Keys Org A", "admin@a.example")
    svc.users["adminA"] = {"id": a["user_id"], "token": a["token"]}
    b = svc.init("Keys Org B", "admin@b.example")
    svc.users["adminB"] = {"id": b["user_id"], "token": b["token"]}
    svc.start()
    for name, admin, email in (("recA", "adminA", "rec@a.example"),
                               ("rec2A", "adminA", "rec2@a.example"),
                               ("goneA", "adminA", "gone@a.example"),
                               ("recB", "adminB", "rec@b.example")):
        doc = expect(svc.req("POST", "/v1/users", svc.tok(admin),
                             {"email": email, "name": name, "role": "user"}), 201)
        svc.users[name] = {"id": doc["id"], "token": doc["token"]}
    expect(svc.req("DELETE", f"/v1/users/{svc.users['goneA']['id']}", svc.tok("adminA")), 204)


def create_key(svc, who, name, scopes, status=201):
    return expect(svc.req("POST", "/v1/api-keys", svc.tok(who),
                          {"name": name, "scopes": scopes}), status)


def case_create(svc, ctx):
    for name, scopes, who in (("readA", ["read"], "adminA"), ("sendA", ["send"], "adminA"),
                              ("adminA", ["admin"], "adminA"), ("adminB", ["admin"], "adminB")):
        doc = create_key(svc, who, "CRM " + name, scopes)
        assert doc["key"].startswith("mtk_") and len(doc["key"]) > 40, doc
        assert doc["id"].startswith("key_") and doc["scopes"] == scopes, doc
        assert doc["name"] == "CRM " + name and doc["created_by"] == svc.users[who]["id"], doc
        svc.keys[name] = doc
    r = svc.req("GET", "/v1/api-keys", svc.tok("adminA"))
    listed = expect(r, 200)["api_keys"]
    ids = {k["id"] for k in listed}
    assert ids == {svc.keys[n]["id"] for n in ("readA", "sendA", "adminA")}, listed
    assert "key" not in set(keys_anywhere(listed)), listed
    for k in svc.keys.values():
        assert k["key"] not in r.text, "a key's secret in the list"
    # the key is never shown again: not by its id either
    expect(svc.req("GET", f"/v1/api-keys/{svc.keys['readA']['id']}", svc.tok("adminA")), 405)
    for bad in (["write"], [], ["read", "READ"]):
        doc = create_key(svc, "adminA", "bad", bad, 400)
        assert "scopes" in doc["error"]["message"], doc
    create_key(svc, "adminA", "", ["read"], 400)
    expect(svc.req("POST", "/v1/api-keys", svc.tok("adminA"), {"name": "x"}), 400)
    expect(svc.req("POST", "/v1/api-keys", svc.tok("recA"),
                   {"name": "mine", "scopes": ["read"]}), 403)
    expect(svc.req("GET", "/v1/api-keys", svc.tok("recA")), 403)
    # a key with the admin scope may make another (keys are admin's business)
    doc = expect(key_req(svc, "adminA", "POST", "/v1/api-keys",
                         body={"name": "made by key", "scopes": ["read", "send"]}), 201)
    assert doc["created_by"] == svc.keys["adminA"]["id"] and doc["scopes"] == ["read", "send"]
    svc.keys["readsendA"] = doc


def wait_final(svc, key, user, mid, timeout=20.0):
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        doc = expect(key_req(svc, key, "GET", f"/v1/messages/{mid}", user), 200)
        if doc["state"] in FINAL:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"message {mid} not final after {timeout:g} s: {doc}")


def case_act_for_user(svc, ctx):
    cand = "cand@cand.example"
    prof = expect(key_req(svc, "adminA", "POST", "/v1/profiles", "recA",
                          {"kind": "applicant", "name": "Cand", "emails": [cand]}), 201)
    sent = expect(key_req(svc, "sendA", "POST", "/v1/messages", "recA",
                          {"to": [cand], "subject": "Sent by the CRM", "text": "hello"}), 202)
    doc = wait_final(svc, "readA", "recA", sent["id"])
    assert doc["state"] == "sent", doc
    items = expect(key_req(svc, "readA", "GET", "/v1/messages", "recA"), 200)["messages"]
    mine = [m for m in items if m["id"] == sent["id"]]
    assert mine and mine[0]["user_id"] == svc.users["recA"]["id"], items
    assert any(cand in m["rcpt_tos"] for m in ctx["relay"].messages()), "nothing at the relay"
    # the recruiter's own token sees it as theirs; another recruiter (through the key) does not
    expect(svc.req("GET", f"/v1/messages/{sent['id']}", svc.tok("recA")), 200)
    expect(key_req(svc, "readA", "GET", f"/v1/messages/{sent['id']}", "rec2A"), 404)
    deadline = time.monotonic() + 5
    while True:
        acts = expect(key_req(svc, "readA", "GET", f"/v1/profiles/{prof['id']}/activities",
                              "recA"), 200)["activities"]
        if acts or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(acts) == 1 and acts[0]["type"] == "email_sent", acts
    assert acts[0]["message_id"].strip("<>") == doc["message_id"], (acts, doc)
    ctx["message"] = sent["id"]


def case_scopes(svc, ctx):
    r = key_req(svc, "readA", "POST", "/v1/messages", "recA",
                {"to": ["x@cand.example"], "subject": "no", "text": "no"})
    doc = expect(r, 403, "auth")
    assert "send scope" in doc["error"]["message"], doc
    assert doc["error"]["code"] == "scope_denied", doc
    doc = expect(key_req(svc, "readA", "POST", "/v1/profiles", "recA",
                         {"kind": "contact", "name": "No", "emails": ["no@cand.example"]}),
                 403, "auth")
    assert "admin scope" in doc["error"]["message"], doc
    expect(key_req(svc, "sendA", "POST", "/v1/profiles", "recA",
                   {"kind": "contact", "name": "No", "emails": ["no@cand.example"]}), 403)
    expect(key_req(svc, "sendA", "GET", "/v1/api-keys"), 403)
    expect(key_req(svc, "readA", "DELETE", f"/v1/messages/{ctx['message']}", "recA"), 403)
    expect(key_req(svc, "readA", "PUT", "/v1/org", body={"domains": []}), 403)
    users = expect(key_req(svc, "readA", "GET", "/v1/users"), 200)
    assert len(users["users"]) == 4, users
    expect(key_req(svc, "readA", "GET", f"/v1/users/{svc.users['recA']['id']}/tokens"), 403)
    # the user's own role still counts: an admin key acting for a plain user is that user
    expect(key_req(svc, "adminA", "POST", "/v1/users", "recA",
                   {"email": "new@a.example", "name": "New"}), 403)
    # send includes read; read+send from the key-made key works for both
    expect(key_req(svc, "sendA", "GET", "/v1/messages", "recA"), 200)
    expect(key_req(svc, "readsendA", "GET", "/v1/messages", "recA"), 200)


def case_missing_header(svc, ctx):
    r = svc.req("POST", "/v1/messages", svc.keys["sendA"]["key"],
                {"to": ["x@cand.example"], "subject": "who", "text": "who"})
    doc = expect(r, 400, "input")
    assert USER_HEADER in doc["error"]["message"], doc
    assert (doc["error"]["code"], doc["error"]["field"]) == ("missing_header", USER_HEADER), doc
    expect(svc.req("GET", "/v1/profiles", svc.keys["readA"]["key"]), 400, "input")
    for bad in ("rec@a.example", "usr_", "usr_ABC", "tok_abc"):
        doc = expect(svc.req("GET", "/v1/profiles", svc.keys["readA"]["key"],
                             headers={USER_HEADER: bad}), 400, "input")
        assert USER_HEADER in doc["error"]["message"], (bad, doc)


def case_header_with_token(svc, ctx):
    # a user token acts for its own user only: the header is refused, not ignored
    r = svc.req("POST", "/v1/messages", svc.tok("adminA"),
                {"to": ["x@cand.example"], "subject": "as whom", "text": "x"},
                headers=as_user(svc, "recA"))
    doc = expect(r, 400, "input")
    assert USER_HEADER in doc["error"]["message"], doc
    expect(svc.req("GET", "/v1/profiles", svc.tok("recA"), headers=as_user(svc, "recA")), 400)
    expect(svc.req("GET", "/v1/profiles", svc.tok("recA")), 200)


def case_cross_org(svc, ctx):
    other = expect(key_req(svc, "readA", "GET", "/v1/profiles", "recB"), 403, "auth")
    unknown = expect(svc.req("GET", "/v1/profiles", svc.keys["readA"]["key"],
                             headers={USER_HEADER: "usr_aaaaaaaaaaaaaaaaaaaa"}), 403, "auth")
    assert other == unknown, (other, unknown)
    doc = expect(key_req(svc, "sendA", "POST", "/v1/messages", "recB",
                         {"to": ["x@cand.example"], "subject": "x", "text": "x"}), 403)
    assert "deactivated" not in doc["error"]["message"], doc
    doc = expect(key_req(svc, "readA", "GET", "/v1/profiles", "goneA"), 403, "auth")
    assert "deactivated" in doc["error"]["message"], doc
    expect(key_req(svc, "adminB", "GET", f"/v1/users/{svc.users['recA']['id']}"), 404)
    expect(key_req(svc, "adminB", "GET", f"/v1/users/{svc.users['recA']['id']}/tokens"), 404)
    listed = expect(key_req(svc, "adminB", "GET", "/v1/users"), 200)["users"]
    assert {u["id"] for u in listed} == {svc.users["adminB"]["id"], svc.users["recB"]["id"]}
    expect(key_req(svc, "adminB", "DELETE", f"/v1/api-keys/{svc.keys['readA']['id']}"), 404)


def case_admin_users(svc, ctx):
    want = {svc.users[n]["id"] for n in ("adminA", "recA", "rec2A", "goneA")}
    seen, cursor, pages = [], None, 0
    while True:
        q = "/v1/users?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = expect(key_req(svc, "adminA", "GET", q), 200)
        seen += [u["id"] for u in page["users"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "paging does not end"
    assert sorted(seen) == seen and set(seen) == want and len(seen) == 4, seen
    expect(key_req(svc, "adminA", "GET", "/v1/users?cursor=bogus"), 400)
    got = expect(key_req(svc, "adminA", "GET", f"/v1/users/{svc.users['goneA']['id']}"), 200)
    assert got["email"] == "gone@a.example" and got["active"] is False, got
    # and the same with an admin's user token
    expect(svc.req("GET", f"/v1/users/{svc.users['recA']['id']}", svc.tok("adminA")), 200)
    expect(svc.req("GET", "/v1/users", svc.tok("recA")), 403)

    rec = svc.users["recA"]["id"]
    toks = expect(key_req(svc, "adminA", "GET", f"/v1/users/{rec}/tokens"), 200)["tokens"]
    assert len(toks) == 1 and toks[0]["id"].startswith("tok_") and toks[0]["created_at"], toks
    assert set(toks[0]) == {"id", "created_at"}, toks
    minted = expect(key_req(svc, "adminA", "POST", f"/v1/users/{rec}/tokens"), 201)
    assert minted["token"].startswith("mt_"), minted
    expect(svc.req("GET", "/v1/notifications", minted["token"]), 200)
    toks2 = expect(key_req(svc, "adminA", "GET", f"/v1/users/{rec}/tokens"), 200)["tokens"]
    assert {t["id"] for t in toks2} == {toks[0]["id"], minted["id"]}, toks2
    # revoke the first: it is then refused, the minted one still works
    expect(svc.req("GET", "/v1/notifications", svc.tok("recA")), 200)
    expect(key_req(svc, "adminA", "DELETE", f"/v1/users/{rec}/tokens/{toks[0]['id']}"), 204)
    expect(svc.req("GET", "/v1/notifications", svc.tok("recA")), 401, "auth")
    expect(svc.req("GET", "/v1/notifications", minted["token"]), 200)
    svc.users["recA"]["token"] = minted["token"]
    # another user's token under this user, another org's user: not found
    rec2_tok = expect(key_req(svc, "adminA", "GET",
                              f"/v1/users/{svc.users['rec2A']['id']}/tokens"), 200)["tokens"][0]
    expect(key_req(svc, "adminA", "DELETE", f"/v1/users/{rec}/tokens/{rec2_tok['id']}"), 404)
    expect(key_req(svc, "adminA", "POST", f"/v1/users/{svc.users['recB']['id']}/tokens"), 404)
    expect(svc.req("GET", "/v1/notifications", svc.tok("rec2A")), 200)
    # a deactivated user gets no token
    expect(key_req(svc, "adminA", "POST", f"/v1/users/{svc.users['goneA']['id']}/tokens"), 404)


def case_log(svc, ctx):
    log = svc.log_text().decode(errors="replace")
    key_id, rec = svc.keys["sendA"]["id"], svc.users["recA"]["id"]
    lines = [line for line in log.splitlines()
             if "http.request" in line and "messages.send" in line and key_id in line]
    assert lines and rec in lines[0], f"no request line naming {key_id} and {rec}:\n{lines}"
    leaked = [n for n, k in svc.keys.items() if k["key"] in log]
    assert not leaked, f"API keys in the server log: {leaked}"


def case_revoke(svc, ctx):
    kid = svc.keys["sendA"]["id"]
    expect(key_req(svc, "sendA", "GET", "/v1/messages", "recA"), 200)
    expect(svc.req("DELETE", f"/v1/api-keys/{kid}", svc.tok("recA")), 403)
    expect(svc.req("DELETE", f"/v1/api-keys/{kid}", svc.tok("adminA")), 204)
    expect(key_req(svc, "sendA", "GET", "/v1/messages", "recA"), 401, "auth")
    expect(svc.req("DELETE", f"/v1/api-keys/{kid}", svc.tok("adminA")), 204)  # again: fine
    listed = expect(svc.req("GET", "/v1/api-keys", svc.tok("adminA")), 200)["api_keys"]
    assert kid not in {k["id"] for k in listed}, listed
    expect(svc.req("DELETE", "/v1/api-keys/key_nosuch", svc.tok("adminA")), 404)
    # a made-up key of the right shape
    expect(svc.req("GET", "/v1/profiles", "mtk_" + "A" * 43, headers=as_user(svc, "recA")), 401)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    if not os.access(os.path.join(a.bin_dir, "mailtrail"), os.X_OK):
        print(f"FAIL setup: {a.bin_dir}/mailtrail is not built\n0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-api-keys-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        relay = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "relay-sink"),
                                                  user=RELAY_USER, password=RELAY_PASSWORD,
                                                  tls=True, plain=False, require_auth=True))
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
        svc.keys = {}
        stack.callback(svc.stop)
        ctx = {"relay": relay}
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx)
        r.run("create", case_create, svc, ctx)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("act_for_user", case_act_for_user),
                         ("scopes", case_scopes),
                         ("missing_header", case_missing_header),
                         ("header_with_token", case_header_with_token),
                         ("cross_org", case_cross_org),
                         ("admin_users", case_admin_users),
                         ("log", case_log),
                         ("revoke", case_revoke)):
            r.run(name, fn, svc, ctx)
        if r.failed:
            print(svc.log_tail(40))
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
