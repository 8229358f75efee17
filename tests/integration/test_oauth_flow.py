#!/usr/bin/python3
"""The OAuth authorisation-code flow (issue 15), driven as a user's browser and the provider
would: GET /v1/oauth/start gives the provider's authorisation URL; the test plays the provider
(checks the URL, issues a code bound to the PKCE challenge and redirect URI at the local HTTPS
token endpoint, tests/rig/token_endpoint.py) and follows the redirect to GET /oauth/callback,
where mailtrail exchanges the code and stores the grant.

  setup              org, a recruiter; Google configured (client id + secret file, endpoints
                     on loopback), Microsoft with a client id only (a public client)
  start_refused      no provider, an unknown one, a bad `for`, no token, a provider the
                     operator did not set up (409 naming the setting)
  start_url          the authorisation URL: endpoint, client id, redirect URI from public_url,
                     scope, a 43-character state, S256 challenge, login_hint, Google's extras
  microsoft_scopes   SMTP.Send, IMAP.AccessAsUser.All and offline_access as asked
  callback_ok        the code exchanged with the verifier and the client secret; the grant
                     stored (sealed: no token in the data dir); the page says connected
  state_once         the same state again: refused, nothing exchanged
  state_unknown      a made-up or malformed state: refused, nothing exchanged
  provider_refused   the provider's error=access_denied: shown, the state used up
  exchange_refused   the endpoint refuses the code (invalid_grant): shown, no grant change
  no_refresh_token   the provider gives no refresh token: refused (the sign-in cannot be kept)
  flows_capped       a user's sixth pending flow drops the oldest (MT_OAUTH_FLOWS_PER_USER 5)
  log_clean          no token, code, verifier or client secret in the log

Run: /usr/bin/python3 tests/integration/test_oauth_flow.py --bin-dir build
"""
import argparse
import base64
import contextlib
import glob
import hashlib
import os
import sqlite3
import sys
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
import token_endpoint  # noqa: E402
from service import Service, expect, urlquote  # noqa: E402

ORG_DOMAIN = "staffing.example"
ADMIN = "admin@" + ORG_DOMAIN
RITA = "rita@" + ORG_DOMAIN
PUBLIC_URL = "https://crm.example/mailtrail/"
REDIRECT_URI = "https://crm.example/mailtrail/oauth/callback"
CLIENT_ID = "123-test.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-test-client-secret-" + uuid.uuid4().hex
MS_CLIENT_ID = "00000000-aaaa-bbbb-cccc-0123456789ab"
SECRETS = []  # every token and code handed out, to look for in the log and data dir


def start(svc, provider="google", purposes="smtp,imap", who="rita"):
    q = f"/v1/oauth/start?provider={provider}&for={urlquote(purposes)}"
    doc = expect(svc.req("GET", q, svc.tok(who)), 200)
    url = urllib.parse.urlsplit(doc["url"])
    params = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    return url, params


def callback(svc, **params):
    return svc.req("GET", "/oauth/callback?" + urllib.parse.urlencode(params))


def issue_code(ep, params, grant):
    code = "4/0A" + uuid.uuid4().hex
    SECRETS.append(code)
    ep.codes[code] = (params["code_challenge"], params["redirect_uri"], grant)
    return code


def new_grant(**kw):
    g = token_endpoint.Grant(access_token="ya29." + uuid.uuid4().hex,
                             refresh_token="1//0g" + uuid.uuid4().hex, **kw)
    SECRETS.extend([g.access_token, g.refresh_token])
    return g


def grants(svc):
    db = sqlite3.connect(f"file:{os.path.join(svc.data, 'mailtrail.db')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT user_id, provider, token_url, client_id, state, expires_at,"
                          " length(sealed_refresh_token), updated_at FROM oauth_grants").fetchall()
    finally:
        db.close()


def exchanges(ep):
    return [f for f in ep.requests if f.get("grant_type") == "authorization_code"]


def case_setup(svc, ctx):
    a = svc.init("OAuth Org", ADMIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"], "email": ADMIN}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"), {"domains": [ORG_DOMAIN]}), 200)
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": RITA, "name": "Rita Recruiter", "role": "user"}), 201)
    svc.users["rita"] = {"id": doc["id"], "token": doc["token"], "email": RITA}


def case_start_refused(svc, ctx):
    tok = svc.tok("rita")
    for query, status, words in (
            ("for=smtp", 400, "provider: required"),
            ("provider=yahoo&for=smtp", 400, "google or microsoft"),
            ("provider=google", 400, "for: required"),
            ("provider=google&for=pop3", 400, "smtp or imap"),
            ("provider=google&for=smtp,smtp", 400, "repeated"),
            ("provider=google&for=smtp,", 400, "smtp or imap")):
        r = svc.req("GET", "/v1/oauth/start?" + query, tok)
        doc = expect(r, status)
        assert words in doc["error"]["message"], (query, doc)
    expect(svc.req("GET", "/v1/oauth/start?provider=google&for=smtp"), 401)
    # a second service without any OAuth client: 409 naming the setting
    bare_tmp = os.path.join(ctx["tmp"], "bare")
    os.makedirs(bare_tmp)
    bare = Service(ctx["bin_dir"], bare_tmp, certs=ctx["certs"],
                   env={"MAILTRAIL_PUBLIC_URL": PUBLIC_URL})
    try:
        a = bare.init("Bare Org", "admin@bare.example")
        bare.users["admin"] = {"id": a["user_id"], "token": a["token"]}
        bare.start()
        doc = expect(bare.req("GET", "/v1/oauth/start?provider=google&for=smtp",
                              bare.tok("admin")), 409)
        assert "oauth_google_client_id" in doc["error"]["message"], doc
    finally:
        bare.stop()


def case_start_url(svc, ctx):
    url, p = start(svc)
    assert (url.scheme, url.netloc, url.path) == ("https", ctx["auth_netloc"], "/authorize"), url
    assert p["response_type"] == "code", p
    assert p["client_id"] == CLIENT_ID, p
    assert p["redirect_uri"] == REDIRECT_URI, p
    assert p["scope"] == "https://mail.google.com/", p
    assert len(p["state"]) == 43 and p["state"].replace("-", "").replace("_", "").isalnum(), p
    assert p["code_challenge_method"] == "S256" and len(p["code_challenge"]) == 43, p
    assert p["login_hint"] == RITA, p
    assert p["access_type"] == "offline" and p["prompt"] == "consent", p
    _, again = start(svc)
    assert again["state"] != p["state"] and again["code_challenge"] != p["code_challenge"]


def case_microsoft_scopes(svc, ctx):
    url, p = start(svc, provider="microsoft", purposes="imap,smtp")
    assert url.netloc == ctx["auth_netloc"] and url.path == "/ms/authorize", url
    assert p["client_id"] == MS_CLIENT_ID, p
    assert p["scope"] == ("https://outlook.office.com/SMTP.Send "
                          "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"), p
    assert "access_type" not in p and "prompt" not in p, p
    _, p = start(svc, provider="microsoft", purposes="imap")
    assert p["scope"] == "https://outlook.office.com/IMAP.AccessAsUser.All offline_access", p


def case_callback_ok(svc, ctx):
    ep = ctx["ep"]
    _, p = start(svc)
    grant = new_grant(expires_in=3599)
    code = issue_code(ep, p, grant)
    before = len(exchanges(ep))
    r = callback(svc, state=p["state"], code=code, scope="https://mail.google.com/")
    assert r.status == 200, r.show()
    ctype = [v for k, v in r.headers if k.lower() == "content-type"]
    assert ctype and ctype[0].startswith("text/html"), r.headers
    text = r.body.decode()
    assert "Signed in with Google" in text and "sending and syncing" in text, text
    # The org has both features off: the granted hook saves no account, and says why.
    assert "Sending: not set up (custom SMTP is off for your organisation)." in text, text
    assert "Syncing: not set up (IMAP sync is off for your organisation)." in text, text
    sent = exchanges(ep)[before:]
    assert len(sent) == 1, sent
    form = sent[0]
    assert form["code"] == code and form["redirect_uri"] == REDIRECT_URI, form
    assert form["client_id"] == CLIENT_ID and form["client_secret"] == CLIENT_SECRET, form
    verifier = form["code_verifier"]
    assert base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode() == p["code_challenge"]
    SECRETS.append(verifier)
    rows = grants(svc)
    assert len(rows) == 1, rows
    user_id, provider, token_url, client_id, state, expires_at, sealed_len, _ = rows[0]
    assert (user_id, provider, token_url, client_id, state) == (
        svc.users["rita"]["id"], "google", ep.url, CLIENT_ID, "active"), rows
    assert sealed_len > len(grant.refresh_token), rows
    assert abs(expires_at - (time.time() + 3599)) < 60, rows
    for path in glob.glob(os.path.join(svc.data, "*")):
        with open(path, "rb") as f:
            data = f.read()
        for s in (grant.access_token, grant.refresh_token, CLIENT_SECRET, verifier):
            assert s.encode() not in data, f"a secret in plaintext in {path}"
    ctx["used_state"] = (p["state"], code)


def case_state_once(svc, ctx):
    state, code = ctx["used_state"]
    before = len(exchanges(ctx["ep"]))
    r = callback(svc, state=state, code=code)
    assert r.status == 400, r.show()
    assert "expired or used already" in r.body.decode(), r.body
    assert len(exchanges(ctx["ep"])) == before


def case_state_unknown(svc, ctx):
    before = len(exchanges(ctx["ep"]))
    for params in ({"state": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode(),
                    "code": "4/0Aabc"},
                   {"state": "short", "code": "4/0Aabc"},
                   {"state": "<script>" + "a" * 35, "code": "x"},
                   {"code": "4/0Aabc"}):
        r = callback(svc, **params)
        assert r.status == 400, (params, r.show())
        assert "<script>" not in r.body.decode()
    # a real state without a code
    _, p = start(svc)
    r = callback(svc, state=p["state"])
    assert r.status == 400 and "no usable code" in r.body.decode(), r.show()
    assert len(exchanges(ctx["ep"])) == before


def case_provider_refused(svc, ctx):
    _, p = start(svc)
    before = len(exchanges(ctx["ep"]))
    r = callback(svc, state=p["state"], error="access_denied",
                 error_description="The user <b>denied</b> access")
    assert r.status == 400, r.show()
    text = r.body.decode()
    assert "access_denied" in text and "&lt;b&gt;denied" in text, text
    # the state is used up: a code for it afterwards is refused
    code = issue_code(ctx["ep"], p, new_grant())
    r = callback(svc, state=p["state"], code=code)
    assert r.status == 400 and "expired or used already" in r.body.decode(), r.show()
    assert len(exchanges(ctx["ep"])) == before


def case_exchange_refused(svc, ctx):
    _, p = start(svc)
    before_rows = grants(svc)
    r = callback(svc, state=p["state"], code="4/0Anever-issued")
    assert r.status == 400, r.show()
    assert "invalid_grant" in r.body.decode(), r.body
    assert grants(svc) == before_rows, "a refused exchange changed the stored grant"


def case_no_refresh_token(svc, ctx):
    _, p = start(svc)
    grant = token_endpoint.Grant(access_token="ya29." + uuid.uuid4().hex)
    SECRETS.append(grant.access_token)
    code = issue_code(ctx["ep"], p, grant)
    before_rows = grants(svc)
    r = callback(svc, state=p["state"], code=code)
    assert r.status == 400 and "no refresh token" in r.body.decode(), r.show()
    assert grants(svc) == before_rows


def case_flows_capped(svc, ctx):
    states = [start(svc)[1] for _ in range(6)]
    first = states[0]
    code = issue_code(ctx["ep"], first, new_grant())
    r = callback(svc, state=first["state"], code=code)
    assert r.status == 400 and "expired or used already" in r.body.decode(), r.show()
    last = states[-1]
    code = issue_code(ctx["ep"], last, new_grant())
    r = callback(svc, state=last["state"], code=code)
    assert r.status == 200, r.show()


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
    with rig.tempdir("mailtrail-oauth-flow-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        ep = stack.enter_context(token_endpoint.serve(certs))
        ep.client_id, ep.client_secret = CLIENT_ID, CLIENT_SECRET
        secret_file = os.path.join(tmp, "google-client-secret")
        with open(secret_file, "w") as f:
            f.write(CLIENT_SECRET + "\n")
        auth_netloc = urllib.parse.urlsplit(ep.url).netloc
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_PUBLIC_URL": PUBLIC_URL,
            "MAILTRAIL_OAUTH_GOOGLE_CLIENT_ID": CLIENT_ID,
            "MAILTRAIL_OAUTH_GOOGLE_CLIENT_SECRET_FILE": secret_file,
            "MAILTRAIL_OAUTH_GOOGLE_AUTH_URL": f"https://{auth_netloc}/authorize",
            "MAILTRAIL_OAUTH_GOOGLE_TOKEN_URL": ep.url,
            "MAILTRAIL_OAUTH_MICROSOFT_CLIENT_ID": MS_CLIENT_ID,
            "MAILTRAIL_OAUTH_MICROSOFT_AUTH_URL": f"https://{auth_netloc}/ms/authorize",
            "MAILTRAIL_OAUTH_MICROSOFT_TOKEN_URL": ep.url,
        })
        stack.callback(svc.stop)
        ctx = {"certs": certs, "tmp": tmp, "ep": ep, "bin_dir": a.bin_dir,
               "auth_netloc": auth_netloc}
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("start_refused", case_start_refused),
                         ("start_url", case_start_url),
                         ("microsoft_scopes", case_microsoft_scopes),
                         ("callback_ok", case_callback_ok),
                         ("state_once", case_state_once),
                         ("state_unknown", case_state_unknown),
                         ("provider_refused", case_provider_refused),
                         ("exchange_refused", case_exchange_refused),
                         ("no_refresh_token", case_no_refresh_token),
                         ("flows_capped", case_flows_capped)):
            r.run(name, fn, svc, ctx)
        svc.stop()

        def log_clean():
            text = svc.log_text().decode(errors="replace")
            for s in SECRETS + [CLIENT_SECRET]:
                assert s not in text, "a token, code or secret in the server log"
            assert "Sanitizer" not in text and "runtime error" not in text
        r.run("log_clean", log_clean)
        if r.failed:
            print(svc.log_tail(60))
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
