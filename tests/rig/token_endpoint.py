#!/usr/bin/python3
"""A local OAuth 2.0 token endpoint for the tests (RFC 6749 §6 refresh, §5.1 / §5.2 replies):
an HTTPS server on 127.0.0.1 with the rig's CA-signed "localhost" certificate, in a thread of
the test process. Standard library only.

    with token_endpoint.serve(certs) as ep:
        ep.url                      https://localhost:PORT/token
        ep.grants["rt-1"] = Grant(access_token="at-1", expires_in=3599)
        ...
        ep.requests                 every request's form, as dicts (secrets included: test only)

An authorisation code (`ep.codes[code] = (challenge, redirect_uri, Grant)`) is exchanged once, and
only with the redirect URI it was issued for and a code_verifier whose S256 is its challenge
(RFC 7636); anything else is invalid_grant. What a refresh token does is its Grant: a token (and a rotated refresh token), an RFC 6749 error
(`error="invalid_grant"`), a raw status and body, or a delay before the answer. An unknown refresh
token is invalid_grant, as a real endpoint answers. The client id and secret are checked when
`client_id` / `client_secret` are set on the endpoint (401 invalid_client otherwise).

Introspection (RFC 7662, for Dovecot's oauth2 passdb with `introspection_mode = post`): a POST
to ep.introspection_url with `token=...` answers {"active": true, "username": USER} for a token
in ep.active (token -> user), {"active": false} otherwise; ep.introspections lists the tokens
asked about.
"""

import base64
import contextlib
import hashlib
import http.server
import json
import ssl
import threading
import time
import urllib.parse


class Grant:
    def __init__(self, access_token=None, expires_in=3599, refresh_token=None, error=None,
                 description=None, status=None, body=None, delay=0.0, content_type=None):
        self.access_token = access_token
        self.expires_in = expires_in
        self.refresh_token = refresh_token
        self.error = error
        self.description = description
        self.status = status
        self.body = body
        self.delay = delay
        self.content_type = content_type


class Endpoint:
    def __init__(self):
        self.grants = {}
        self.codes = {}  # code -> (PKCE S256 challenge, redirect_uri, Grant); used once
        self.requests = []
        self.client_id = None
        self.client_secret = None
        self.url = None
        self.introspection_url = None
        self.active = {}  # access token -> username, what introspection calls active
        self.introspections = []
        self.lock = threading.Lock()

    def introspect(self, form):
        token = form.get("token")
        with self.lock:
            self.introspections.append(token)
            user = self.active.get(token)
        doc = {"active": True, "username": user} if user is not None else {"active": False}
        return 200, "application/json", json.dumps(doc), 0.0

    def refreshes(self):
        """The refresh requests so far (not introspections, not code exchanges)."""
        with self.lock:
            return [f for f in self.requests if f.get("grant_type") == "refresh_token"]

    def answer(self, form):
        with self.lock:
            self.requests.append(form)
        if self.client_id is not None and (form.get("client_id") != self.client_id or
                                           form.get("client_secret") != self.client_secret):
            return 401, "application/json", json.dumps({"error": "invalid_client"}), 0.0
        if form.get("grant_type") == "authorization_code":
            with self.lock:
                entry = self.codes.pop(form.get("code"), None)
            verifier = form.get("code_verifier", "").encode()
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
            if entry is None or entry[1] != form.get("redirect_uri") or \
                    entry[0].encode() != challenge:
                return 400, "application/json", json.dumps({"error": "invalid_grant"}), 0.0
            g = entry[2]
        elif form.get("grant_type") != "refresh_token":
            return 400, "application/json", json.dumps({"error": "unsupported_grant_type"}), 0.0
        else:
            g = self.grants.get(form.get("refresh_token"))
        if g is None:
            g = Grant(error="invalid_grant", description="Token has been expired or revoked.")
        if g.body is not None or g.status is not None:
            return (g.status or 200, g.content_type or "application/json",
                    g.body if g.body is not None else "", g.delay)
        if g.error is not None:
            doc = {"error": g.error}
            if g.description:
                doc["error_description"] = g.description
            return 400, "application/json", json.dumps(doc), g.delay
        doc = {"access_token": g.access_token, "token_type": "Bearer", "expires_in": g.expires_in}
        if g.refresh_token:
            doc["refresh_token"] = g.refresh_token
        return 200, "application/json", json.dumps(doc), g.delay


def _handler(ep):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("ascii", "replace")
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
            form["_content_type"] = self.headers.get("Content-Type", "")
            form["_path"] = self.path
            if self.path.startswith("/introspect"):
                status, ctype, body, delay = ep.introspect(form)
            else:
                status, ctype, body, delay = ep.answer(form)
            if delay:
                time.sleep(delay)
            data = body.encode() if isinstance(body, str) else body
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client gave up (a timeout test)

    return Handler


@contextlib.contextmanager
def serve(certs, path="/token"):
    ep = Endpoint()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(ep))
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    ep.url = f"https://localhost:{server.server_address[1]}{path}"
    ep.introspection_url = f"https://localhost:{server.server_address[1]}/introspect"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ep
    finally:
        server.shutdown()
        server.server_close()
