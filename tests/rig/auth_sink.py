#!/usr/bin/python3
"""Authenticating SMTP sink for the mailtrail test rig (aiosmtpd; Debian's /usr/bin/python3).

Usage:
  auth_sink.py [--port-starttls P1] [--port-tls P2] [--port-plain P3]
               --cert CERT.pem --key KEY.pem
               --user U (--password PW | --password-file F) [--token TOK | --token-file F]
               --store DIR [--require-auth] [--refuse RCPT-ADDRESS]... [--host 127.0.0.1]
               [--exclude-mech MECH]... [--exit-on-stdin-eof] [--verbose]

Listeners (each optional; port 0 = pick a free one, reported in the READY line):
  starttls  plain TCP offering STARTTLS; AUTH is advertised and accepted only after STARTTLS
            (before it: AUTH hidden from EHLO and answered 538 5.7.11)
  tls       implicit TLS; AUTH advertised and accepted at once (aiosmtpd would hide it there:
            we set auth_require_tls=False because the transport already is TLS)
  plain     plain TCP, no STARTTLS; AUTH advertised and accepted without TLS (for
            security=none tests)

AUTH PLAIN and LOGIN are checked against --user/--password, or with --password-file against the
file's first line, read again on every AUTH (a test changes the password while the sink runs). XOAUTH2 (a custom mechanism) is
checked against --user/--token — or with --token-file against every line of that file, read
again on every AUTH (a test writes the tokens its token endpoint currently issues): on a bad
user or token it answers like Gmail does,
  334 base64({"status":"401","schemes":"bearer","scope":"https://mail.google.com/"})
then waits for the client's (empty) line and answers 535 5.7.8 Username and Password not accepted.
--require-auth: MAIL before a successful AUTH gets 530.
--refuse ADDR (repeatable, case-insensitive): RCPT TO that address gets 550 5.1.1.
--exclude-mech MECH (repeatable): do not offer that AUTH mechanism (e.g. PLAIN, to make a
client use LOGIN).
--fail-file PATH: while PATH exists, its first line "PHASE REPLY" ("rcpt 550 5.4.5 Daily
sending quota exceeded", "mail 421 4.7.0 slow down") answers every RCPT TO (rcpt) or MAIL FROM
(mail) with REPLY instead of accepting it; a test creates and removes the file to switch the
refusal on and off while the sink runs.

Each accepted message is stored as DIR/<n>.eml plus DIR/<n>.json
  {"mail_from": ..., "rcpt_tos": [...], "auth_user": ...|null, "tls": bool, "port": "starttls"|...,
   "received_at": UNIX-TIME (the end of DATA), "rcpt_times": [UNIX-TIME per accepted RCPT]}
(n counts from 1 over all listeners; the .json is written last, atomically, so a reader that sees
it also sees the whole .eml).

Prints "READY starttls=P1 tls=P2 plain=P3" (only the listeners started) on stdout once every
listener accepts connections. Stops on SIGTERM/SIGINT, and with --exit-on-stdin-eof when its
stdin is closed (the rig keeps a pipe open, so the sink dies with the test).
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import ssl
import sys
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword  # noqa: F401

XOAUTH2_ERROR = json.dumps({"status": "401", "schemes": "bearer",
                            "scope": "https://mail.google.com/"}).encode()
XOAUTH2_FAIL_REPLY = "535 5.7.8 Username and Password not accepted"


class SinkSMTP(SMTP):
    """aiosmtpd's SMTP that knows whether its listener is implicit TLS."""

    def __init__(self, handler, *, port_kind, implicit_tls=False, **kwargs):
        super().__init__(handler, **kwargs)
        self.port_kind = port_kind
        self.implicit_tls = implicit_tls

    @property
    def is_tls(self):
        return self.implicit_tls or self._tls_protocol is not None


class Handler:
    def __init__(self, args):
        self.args = args
        self.refuse = {r.lower() for r in args.refuse}
        self.count = 0
        os.makedirs(args.store, exist_ok=True)
        # Continue numbering after what the store already has.
        for name in os.listdir(args.store):
            if name.endswith(".json") and name[:-5].isdigit():
                self.count = max(self.count, int(name[:-5]))

    def password(self):
        if self.args.password_file is None:
            return self.args.password
        try:
            with open(self.args.password_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError:
            return None  # no file: nothing is accepted

    def tokens(self):
        if self.args.token_file is None:
            return {self.args.token}
        try:
            with open(self.args.token_file, encoding="utf-8") as f:
                return {line.strip() for line in f if line.strip()}
        except OSError:
            return set()  # no file: nothing is accepted

    # PLAIN and LOGIN go through the authenticator.
    def authenticator(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if login == self.args.user and password == self.password():
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    # Custom mechanism: aiosmtpd finds handler methods named auth_<MECH>; it calls them with
    # (server, args) where args = ["XOAUTH2", initial-response?].
    async def auth_XOAUTH2(self, server, args):
        if len(args) == 2:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except Exception:
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            blob = await server.challenge_auth("")
            if not isinstance(blob, bytes):  # MISSING: '*' or bad base64, already answered
                return AuthResult(success=False, handled=True)
        user = token = None
        for part in blob.decode("utf-8", "replace").split("\x01"):
            if part.startswith("user="):
                user = part[5:]
            elif part.lower().startswith("auth=bearer "):
                token = part[12:]
        if user == self.args.user and token is not None and token in self.tokens():
            return AuthResult(success=True, auth_data=user)
        # Gmail: the error as a 334 challenge, the client answers an empty line, then 535.
        reply = await server.challenge_auth(XOAUTH2_ERROR, encode_to_b64=True)
        if not isinstance(reply, bytes):
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=XOAUTH2_FAIL_REPLY)

    def forced_reply(self, phase):
        """The reply --fail-file asks for in this phase now, or None."""
        if not self.args.fail_file:
            return None
        try:
            with open(self.args.fail_file) as f:
                line = f.readline().strip()
        except OSError:
            return None
        want, _, reply = line.partition(" ")
        return reply if want.lower() == phase and reply else None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.forced_reply("mail")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        reply = self.forced_reply("rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        if not hasattr(envelope, "rcpt_times"):
            envelope.rcpt_times = []
        envelope.rcpt_times.append(time.time())
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        n = self.count
        store = self.args.store
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with open(os.path.join(store, f"{n}.eml"), "wb") as f:
            f.write(data)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": session.auth_data if session.authenticated else None,
            "tls": bool(getattr(server, "is_tls", False)),
            "port": getattr(server, "port_kind", None),
            "received_at": time.time(),
            "rcpt_times": list(getattr(envelope, "rcpt_times", [])),
        }
        tmp = os.path.join(store, f".{n}.json.tmp")
        with open(tmp, "w") as f:
            json.dump(meta, f)
        os.rename(tmp, os.path.join(store, f"{n}.json"))
        return f"250 2.0.0 Ok: queued as {n}"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port-starttls", type=int)
    p.add_argument("--port-tls", type=int)
    p.add_argument("--port-plain", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user", default="user@example.test")
    p.add_argument("--password", default="s3cret-pw")
    p.add_argument("--password-file")
    p.add_argument("--token", default="ya29.good-token")
    p.add_argument("--token-file")
    p.add_argument("--store", required=True)
    p.add_argument("--require-auth", action="store_true")
    p.add_argument("--refuse", action="append", default=[])
    p.add_argument("--exclude-mech", action="append", default=[])
    p.add_argument("--fail-file")
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.port_starttls is None and a.port_tls is None and a.port_plain is None:
        p.error("no listener: give --port-starttls, --port-tls and/or --port-plain")
    if (a.port_starttls is not None or a.port_tls is not None) and not (a.cert and a.key):
        p.error("--cert and --key are needed for the starttls and tls listeners")
    return a


async def main(args):
    loop = asyncio.get_running_loop()
    handler = Handler(args)
    tls_ctx = None
    if args.cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.cert, args.key)

    def factory(kind):
        def make():
            common = dict(hostname="rig.localhost", ident="mailtrail-rig auth_sink",
                          authenticator=handler.authenticator,
                          auth_required=args.require_auth,
                          auth_exclude_mechanism=[m.upper() for m in args.exclude_mech],
                          loop=loop)
            if kind == "starttls":
                return SinkSMTP(handler, port_kind=kind, tls_context=tls_ctx,
                                auth_require_tls=True, **common)
            if kind == "tls":
                return SinkSMTP(handler, port_kind=kind, implicit_tls=True,
                                auth_require_tls=False, **common)
            return SinkSMTP(handler, port_kind=kind, auth_require_tls=False, **common)
        return make

    servers = []
    ports = []
    for kind, port in (("starttls", args.port_starttls), ("tls", args.port_tls),
                       ("plain", args.port_plain)):
        if port is None:
            continue
        srv = await loop.create_server(factory(kind), host=args.host, port=port,
                                       ssl=tls_ctx if kind == "tls" else None,
                                       reuse_address=True)
        servers.append(srv)
        ports.append(f"{kind}={srv.sockets[0].getsockname()[1]}")

    stop = loop.create_future()

    def request_stop(*_):
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, request_stop)
    if args.exit_on_stdin_eof:
        fd = sys.stdin.fileno()

        def on_stdin():
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(fd)
                request_stop()

        loop.add_reader(fd, on_stdin)

    sys.stdout.write("READY " + " ".join(ports) + "\n")
    sys.stdout.flush()
    await stop
    for srv in servers:
        srv.close()


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    logging.basicConfig(stream=sys.stderr,
                        level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="auth_sink %(levelname)s %(name)s: %(message)s")
    warnings.simplefilter("ignore")  # "AUTH without TLS" on the plain listener is on purpose
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        pass
