#!/usr/bin/python3
"""A running `mailtrail` service for the integration tests: `init`, `serve`, and HTTP requests
against its API (DESIGN.md §2). Shared by tests/integration/test_service.py,
test_activities.py and test_feed.py.

    sys.path.insert(0, os.path.join(<repo>, "tests", "rig"))
    import rig
    from service import Service, Resp, expect, expect_input, urlquote

  Service(bin_dir, tmp, certs=None, env=None)
      .init(org, email)          `mailtrail init` on tmp/data, returns its JSON
      .start()                   `mailtrail serve` on a free loopback port, waits for /healthz
      .stop()                    stops it (also done by the rig's atexit hook)
      .req(method, path, token, body=JSON | raw=bytes, content_type=, headers=) -> Resp
      .log_text() / .log_tail(n)
      .orgs / .users / .tok(name)  state the cases fill in
  `certs` (rig.make_certs) sets MAILTRAIL_CA_FILE; `env` adds MAILTRAIL_* variables for serve.

Standard library only (Debian's /usr/bin/python3). Each request uses its own connection, so a
Service may be used from several threads at once.
"""

import http.client
import json
import os
import re
import subprocess
import time
from urllib.parse import quote

import rig

HTTP_TIMEOUT = 45  # seconds per request: a live check promises <= 30 s
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Resp:
    def __init__(self, method, path, status, headers, body):
        self.method = method
        self.path = path
        self.status = status
        self.headers = headers
        self.body = body
        self.text = body.decode("utf-8", "backslashreplace")
        try:
            self.json = json.loads(self.text) if body else None
        except ValueError:
            self.json = None

    def show(self):
        t = self.text if len(self.text) < 1500 else self.text[:1500] + "..."
        return f"\n    {self.method} {self.path} -> {self.status}: {t}"

    def err(self):
        """(class, message) of an error body, or (None, None)."""
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            e = self.json["error"]
            return e.get("class"), e.get("message")
        return None, None


class Service:
    def __init__(self, bin_dir, tmp, certs=None, env=None):
        self.mailtrail = os.path.join(bin_dir, "mailtrail")
        self.tmp = tmp
        self.certs = certs
        self.extra_env = dict(env or {})
        self.data = os.path.join(tmp, "data")
        self.log_path = os.path.join(tmp, "serve.log")
        self.proc = None
        self.port = None
        # Filled by the cases
        self.orgs = {}     # "A"/"B"/"C" -> init JSON
        self.users = {}    # name -> {"id","token",...}

    # -- processes --

    def init(self, org, email):
        argv = [self.mailtrail, "init", "--data", self.data, "--org", org, "--admin-email", email]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)
        out = proc.stdout.decode(errors="replace")
        err = proc.stderr.decode(errors="replace")
        assert proc.returncode == 0, f"init {org!r} exited {proc.returncode}\n  stdout {out}\n  stderr {err}"
        try:
            doc = json.loads(out)
        except ValueError:
            raise AssertionError(f"init {org!r} did not print JSON: {out!r}")
        for k in ("org_id", "user_id", "token"):
            assert isinstance(doc.get(k), str) and doc[k], f"init JSON lacks {k}: {doc}"
        return doc

    def start(self):
        self.port = rig.free_port()
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("MAILTRAIL_"):
                del env[k]
        if self.certs is not None:
            env["MAILTRAIL_CA_FILE"] = self.certs.ca_cert
        env.update(MAILTRAIL_ALLOW_PRIVATE_HOSTS="127.0.0.0/8",
                   MAILTRAIL_LOG_LEVEL="debug")
        env.update(self.extra_env)
        argv = [self.mailtrail, "serve", "--data", self.data, "--http", f"127.0.0.1:{self.port}"]
        with open(self.log_path, "ab") as log:
            self.proc = rig.start_process(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = self.req("GET", "/healthz", timeout=2)
                if r.status == 200:
                    return r
                last = r.show()
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        raise AssertionError(f"GET /healthz did not answer 200 within 20 s ({last})\n{self.log_tail()}")

    def stop(self):
        if self.proc is not None:
            rig.stop_process(self.proc)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def log_tail(self, n=30):
        lines = self.log_text().decode(errors="replace").splitlines()
        return "\n".join("      " + line for line in lines[-n:])

    # -- requests --

    def req(self, method, path, token=None, body=None, raw=None, content_type=None,
            headers=None, timeout=HTTP_TIMEOUT):
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
            h.setdefault("Content-Type", content_type or "application/json")
        if token is not None:
            h["Authorization"] = "Bearer " + token
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Resp(method, path, r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def tok(self, who):
        return self.users[who]["token"]


def expect(r, status, cls=None):
    assert r.status == status, f"expected {status}" + r.show()
    if status >= 400:
        c, m = r.err()
        assert c is not None, "not an error object {error:{class,message}}" + r.show()
        assert isinstance(m, str) and m.strip(), "the error has no message" + r.show()
        if cls is not None:
            assert c == cls, f"expected error class {cls!r}" + r.show()
    return r.json


def expect_input(r, mentions=None):
    """400 class input with a clear message (mentioning `mentions` when given)."""
    expect(r, 400, "input")
    if mentions:
        m = r.err()[1]
        assert mentions.lower() in m.lower(), f"the message does not mention {mentions!r}" + r.show()


def keys_anywhere(doc):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield k
            yield from keys_anywhere(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from keys_anywhere(v)


def urlquote(s):
    return quote(s, safe="")
