#!/usr/bin/python3
"""OAuth 2.0 refresh through src/oauth (libcurl multi on our libevent loop) against a local HTTPS
token endpoint (tests/rig/token_endpoint.py, the rig's CA-signed certificate), driven by the
`oauth-refresh` tool.

  /usr/bin/python3 tests/integration/test_oauth_refresh.py --bin-dir BUILD [--only NAME]

  new_token          a refresh gives a new access token and its lifetime; the form is RFC 6749
                     §6 (grant_type, refresh_token, client_id, client_secret, url-encoded)
  rotated            an endpoint that rotates the refresh token hands the new one back
  revoked            invalid_grant -> revoked (definitive), with the description in the reason
  refused            invalid_client (wrong client secret) -> refused, not revoked
  temporary          503 with an HTML body, temporarily_unavailable, garbage in a 200, a reply
                     over 64 KiB, a redirect, a closed port -> temporary
  timeout            an endpoint slower than the request's timeout -> temporary within it
  loop_not_blocked   a 1.5 s slow endpoint: the loop's 10 ms timer keeps ticking meanwhile
  tls_verified       without the rig's CA the certificate does not verify -> temporary (tls);
                     an http:// token URL is refused before anything is sent
  exchange           an authorisation code with its PKCE verifier gives the first tokens; the
                     code works once; a wrong verifier or redirect URI is invalid_grant
  no_secret_printed  the tool's output and stderr hold no token or secret

Prints PASS/FAIL per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402
import token_endpoint  # noqa: E402
from token_endpoint import Grant  # noqa: E402

CLIENT_ID = "client-123.apps.example"
CLIENT_SECRET = "s3cr+t/=&x y"  # every character that needs encoding in a form


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


class Ctx:
    def __init__(self, bin_dir, tmp, certs, ep):
        self.tool = os.path.join(bin_dir, "tests", "oauth-refresh")
        if not os.access(self.tool, os.X_OK):
            self.tool = os.path.join(bin_dir, "oauth-refresh")
        self.tmp = tmp
        self.certs = certs
        self.ep = ep
        self.secret_file = os.path.join(tmp, "client-secret")
        with open(self.secret_file, "w") as f:
            f.write(CLIENT_SECRET + "\n")
        self.outputs = []

    def refresh(self, refresh_token, url=None, ca=True, timeout_ms=None, expect_rc=0):
        rt_file = os.path.join(self.tmp, "refresh-token")
        with open(rt_file, "w") as f:
            f.write(refresh_token + "\n")
        argv = [self.tool, "--token-url", url or self.ep.url, "--client-id", CLIENT_ID,
                "--client-secret-file", self.secret_file, "--refresh-token-file", rt_file]
        if ca:
            argv += ["--ca-file", self.certs.ca_cert]
        if timeout_ms:
            argv += ["--timeout-ms", str(timeout_ms)]
        start = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        elapsed = time.monotonic() - start
        self.outputs.append(p.stdout + p.stderr)
        assert p.returncode == expect_rc, f"exit {p.returncode}: {p.stdout} {p.stderr}"
        if expect_rc != 0:
            return p.stderr, elapsed
        return json.loads(p.stdout), elapsed


def case_new_token(c):
    c.ep.grants["rt-good"] = Grant(access_token="at-fresh-1", expires_in=3599)
    before = len(c.ep.requests)
    out, _ = c.refresh("rt-good")
    assert out["outcome"] == "ok", out
    assert out["access_token_sha256"] == sha("at-fresh-1"), out
    assert out["expires_in"] == 3599 and out["refresh_token_sha256"] is None, out
    form = c.ep.requests[before]
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "rt-good", form
    assert form["client_id"] == CLIENT_ID and form["client_secret"] == CLIENT_SECRET, form
    assert form["_content_type"] == "application/x-www-form-urlencoded", form
    assert "scope" not in form, form


def case_rotated(c):
    c.ep.grants["rt-rotate"] = Grant(access_token="at-2", refresh_token="rt-next", expires_in=60)
    out, _ = c.refresh("rt-rotate")
    assert out["outcome"] == "ok" and out["refresh_token_sha256"] == sha("rt-next"), out
    assert out["expires_in"] == 60, out


def case_revoked(c):
    c.ep.grants["rt-revoked"] = Grant(error="invalid_grant",
                                      description="Token has been expired or revoked.")
    out, _ = c.refresh("rt-revoked")
    assert out["outcome"] == "revoked" and out["error"] == "invalid_grant", out
    assert "expired or revoked" in out["reason"] and out["access_token_sha256"] is None, out
    out, _ = c.refresh("rt-never-issued")  # unknown to the endpoint: invalid_grant too
    assert out["outcome"] == "revoked", out


def case_refused(c):
    c.ep.client_id, c.ep.client_secret = CLIENT_ID, "another secret"
    try:
        c.ep.grants["rt-good"] = Grant(access_token="at-x")
        out, _ = c.refresh("rt-good")
    finally:
        c.ep.client_id = c.ep.client_secret = None
    assert out["outcome"] == "refused" and out["error"] == "invalid_client", out


def case_temporary(c):
    cases = {
        "rt-503": Grant(status=503, body="<html>busy</html>", content_type="text/html"),
        "rt-later": Grant(error="temporarily_unavailable"),
        "rt-garbage": Grant(status=200, body="this is not json"),
        "rt-huge": Grant(status=200, body='{"access_token":"' + "a" * 100_000 + '"}'),
        "rt-notoken": Grant(status=200, body='{"token_type":"Bearer"}'),
        "rt-redirect": Grant(status=302, body=""),
    }
    for rt, g in cases.items():
        c.ep.grants[rt] = g
        out, _ = c.refresh(rt)
        assert out["outcome"] == "temporary", (rt, out)
        assert out["access_token_sha256"] is None, (rt, out)
    out, _ = c.refresh("rt-huge")
    assert "over" in out["reason"], out
    out, _ = c.refresh("rt-good", url=f"https://localhost:{rig.closed_port()}/token")
    assert out["outcome"] == "temporary" and "token endpoint" in out["reason"], out


def case_timeout(c):
    c.ep.grants["rt-slow"] = Grant(access_token="at-slow", delay=3.0)
    out, elapsed = c.refresh("rt-slow", timeout_ms=800)
    assert out["outcome"] == "temporary", out
    assert "timed out" in out["reason"].lower() or "timeout" in out["reason"].lower(), out
    assert elapsed < 2.5, f"took {elapsed:.1f}s for an 0.8 s timeout"


def case_loop_not_blocked(c):
    c.ep.grants["rt-slowish"] = Grant(access_token="at-slowish", delay=1.5)
    out, elapsed = c.refresh("rt-slowish")
    assert out["outcome"] == "ok" and out["access_token_sha256"] == sha("at-slowish"), out
    # ~150 ticks of 10 ms while the endpoint sleeps; a blocked loop would show one long gap.
    assert out["ticks"] >= 100, out
    assert out["max_tick_gap_ms"] < 500, out


def case_tls_verified(c):
    out, _ = c.refresh("rt-good", ca=False)
    assert out["outcome"] == "temporary", out
    reason = out["reason"].lower()
    assert "certificate" in reason or "ssl" in reason, out
    err, _ = c.refresh("rt-good", url=c.ep.url.replace("https://", "http://"), expect_rc=2)
    assert "https" in err, err


def case_exchange(c):
    verifier = "v" * 20 + "-._~" + "W" * 30
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    redirect = "https://crm.example.com/oauth/callback"
    code_file = os.path.join(c.tmp, "code")
    verifier_file = os.path.join(c.tmp, "verifier")

    def exchange(code, verifier_text, redirect_uri):
        with open(code_file, "w") as f:
            f.write(code + "\n")
        with open(verifier_file, "w") as f:
            f.write(verifier_text + "\n")
        p = subprocess.run([c.tool, "--token-url", c.ep.url, "--client-id", CLIENT_ID,
                            "--client-secret-file", c.secret_file, "--ca-file", c.certs.ca_cert,
                            "--code-file", code_file, "--verifier-file", verifier_file,
                            "--redirect-uri", redirect_uri], capture_output=True, text=True,
                           timeout=60)
        c.outputs.append(p.stdout + p.stderr)
        assert p.returncode == 0, p.stdout + p.stderr
        return json.loads(p.stdout)

    first = Grant(access_token="at-first", refresh_token="rt-first", expires_in=3599)
    c.ep.codes["code-1"] = (challenge.decode(), redirect, first)
    before = len(c.ep.requests)
    out = exchange("code-1", verifier, redirect)
    assert out["outcome"] == "ok", out
    assert out["access_token_sha256"] == sha("at-first"), out
    assert out["refresh_token_sha256"] == sha("rt-first"), out
    form = c.ep.requests[before]
    assert form["grant_type"] == "authorization_code" and form["code"] == "code-1", form
    assert form["redirect_uri"] == redirect and form["code_verifier"] == verifier, form
    assert form["client_id"] == CLIENT_ID and form["client_secret"] == CLIENT_SECRET, form
    assert exchange("code-1", verifier, redirect)["outcome"] == "revoked"  # used once
    c.ep.codes["code-2"] = (challenge.decode(), redirect, first)
    assert exchange("code-2", "x" * 43, redirect)["outcome"] == "revoked"
    c.ep.codes["code-3"] = (challenge.decode(), redirect, first)
    assert exchange("code-3", verifier, redirect + "/other")["outcome"] == "revoked"


def case_no_secret_printed(c):
    text = "\n".join(c.outputs)
    for secret in ("at-fresh-1", "rt-next", "rt-good", "at-first", "rt-first", "code-1",
                   CLIENT_SECRET, "s3cr"):
        assert secret not in text, f"{secret!r} printed"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    with rig.tempdir("mailtrail-oauth-") as tmp:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        with token_endpoint.serve(certs) as ep:
            c = Ctx(a.bin_dir, tmp, certs, ep)
            for name, fn in (("new_token", case_new_token), ("rotated", case_rotated),
                             ("revoked", case_revoked), ("refused", case_refused),
                             ("temporary", case_temporary), ("timeout", case_timeout),
                             ("loop_not_blocked", case_loop_not_blocked),
                             ("tls_verified", case_tls_verified),
                             ("exchange", case_exchange),
                             ("no_secret_printed", case_no_secret_printed)):
                r.run(name, fn, c)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
