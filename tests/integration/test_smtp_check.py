#!/usr/bin/python3
"""`mailtrail smtp-check` against real servers from the rig (tests/rig): the aiosmtpd
authenticating sink (STARTTLS, implicit TLS, AUTH PLAIN/LOGIN) and Postfix's smtp-sink.

  /usr/bin/python3 tests/integration/test_smtp_check.py --bin-dir BUILD [--only NAME]...

Checks exit codes (DESIGN.md §2: 0 ok, 10 conn, 11 tls, 12 auth, ...), the outcome block
("outcome: ok|failed", "class: NAME", "fingerprint: sha256:..."), that a test mail arrives in
the sink's store, and that the password never appears in stdout or stderr. Prints one
PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402

USER = "recruiter@example.test"
PASSWORD = "Pw-9f3k!s3cret"
CHECK_TIMEOUT = 45  # seconds per smtp-check run (it promises <= 30 s for a live check)


class Result:
    def __init__(self, argv, proc, elapsed):
        self.argv = argv
        self.exit = proc.returncode
        self.stdout = proc.stdout.decode("utf-8", "backslashreplace")
        self.stderr = proc.stderr.decode("utf-8", "backslashreplace")
        self.elapsed = elapsed
        self.outcome = self.field("outcome")
        self.cls = self.field("class")
        self.fingerprint = self.field("fingerprint")

    def field(self, name):
        m = re.search(r"^" + re.escape(name) + r":\s*(.*?)\s*$", self.stdout, re.M)
        return m.group(1) if m else None

    def show(self):
        out = self.stdout if len(self.stdout) < 4000 else self.stdout[:2000] + "\n...\n" + self.stdout[-2000:]
        err = self.stderr if len(self.stderr) < 2000 else self.stderr[-2000:]
        return (f"\n    command: {' '.join(self.argv)}\n    exit {self.exit} after {self.elapsed:.1f} s"
                f"\n    --- stdout\n{indent(out)}    --- stderr\n{indent(err)}")


def indent(text):
    return "".join("      " + line + "\n" for line in text.splitlines()) or "      (empty)\n"


class Env:
    def __init__(self, bin_dir, tmp, certs):
        self.mailtrail = os.path.join(bin_dir, "mailtrail")
        self.tmp = tmp
        self.certs = certs
        self.pw_file = os.path.join(tmp, "password")
        with open(self.pw_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chmod(self.pw_file, 0o600)
        self.n = 0

    def store(self, name):
        self.n += 1
        return os.path.join(self.tmp, f"store-{self.n}-{name}")

    def check(self, *args, password=True, ca=True):
        argv = [self.mailtrail, "smtp-check", *args]
        if password:
            argv += ["--user", USER, "--password-file", self.pw_file]
        if ca:
            argv += ["--ca-file", self.certs.ca_cert]
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=CHECK_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"smtp-check did not finish within {CHECK_TIMEOUT} s: {argv}")
        res = Result(argv, proc, time.monotonic() - start)
        # Secrets never show, whatever the outcome.
        for where in ("stdout", "stderr"):
            assert PASSWORD not in getattr(res, where), f"the password appears in {where}" + res.show()
        return res


def expect(res, code, cls=None):
    assert res.exit == code, f"expected exit {code}, got {res.exit}" + res.show()
    if code == 0:
        assert res.outcome == "ok", f"expected 'outcome: ok', got {res.outcome!r}" + res.show()
    else:
        assert res.outcome == "failed", f"expected 'outcome: failed', got {res.outcome!r}" + res.show()
        if cls:
            assert res.cls == cls, f"expected 'class: {cls}', got {res.cls!r}" + res.show()
    # A session that got anywhere shows its transcript (an implicit-TLS handshake failure or a
    # refused connection has none).
    if code == 0:
        assert re.search(r"^S: 220", res.stdout, re.M) and re.search(r"^C: EHLO", res.stdout, re.M), \
            "no transcript lines" + res.show()


def sink_args(port, security):
    return ["--host", "127.0.0.1", "--port", str(port), "--security", security]


# --- cases ---------------------------------------------------------------------------------

def case_auth(env, security, mech):
    excl = ("PLAIN",) if mech == "LOGIN" else ("LOGIN",)
    with rig.auth_sink(env.certs, env.store(f"{security}-{mech}"), user=USER, password=PASSWORD,
                       exclude_mechs=excl) as sink:
        port = sink.port_starttls if security == "starttls" else sink.port_tls
        res = env.check(*sink_args(port, security))
        expect(res, 0)
        assert re.search(r"^C: AUTH " + mech + r"\b", res.stdout, re.M), \
            f"transcript has no 'C: AUTH {mech}'" + res.show()
        if security == "starttls":
            assert re.search(r"^C: STARTTLS", res.stdout, re.M), "no STARTTLS in transcript" + res.show()


def case_mail_arrives(env, security):
    with rig.auth_sink(env.certs, env.store("mail-" + security), user=USER, password=PASSWORD,
                       require_auth=True) as sink:
        port = sink.port_starttls if security == "starttls" else sink.port_tls
        res = env.check(*sink_args(port, security), "--from", USER, "--to", USER)
        expect(res, 0)
        msgs = sink.wait_messages(1, timeout=10)
        assert len(msgs) == 1, f"{len(msgs)} messages in the sink's store" + res.show()
        m = msgs[0]
        assert m["mail_from"] == USER and m["rcpt_tos"] == [USER], m
        assert m["auth_user"] == USER and m["tls"] is True, m
        assert PASSWORD.encode() not in m["data"], "the password is in the test mail"


def case_selfsigned_unpinned(env):
    fp = rig.cert_sha256(env.certs.selfsigned_cert)
    with rig.auth_sink(env.certs, env.store("selfsigned"), user=USER, password=PASSWORD,
                       cert=env.certs.selfsigned_cert, key=env.certs.selfsigned_key) as sink:
        for security, port in (("starttls", sink.port_starttls), ("tls", sink.port_tls)):
            res = env.check(*sink_args(port, security))
            expect(res, 11, "tls")
            assert res.fingerprint == fp, \
                f"[{security}] printed fingerprint {res.fingerprint!r}, the cert's is {fp}" + res.show()


def case_selfsigned_pinned(env, form):
    cert = env.certs.selfsigned_cert
    pin = {"sha256": rig.cert_sha256(cert),
           "sha256-colon-upper": rig.colon_upper(rig.cert_sha256(cert)),
           "spki-sha256": rig.spki_sha256(cert)}[form]
    with rig.auth_sink(env.certs, env.store("pinned-" + form), user=USER, password=PASSWORD,
                       cert=cert, key=env.certs.selfsigned_key) as sink:
        for security, port in (("starttls", sink.port_starttls), ("tls", sink.port_tls)):
            res = env.check(*sink_args(port, security), "--fingerprint", pin)
            expect(res, 0)


def case_wrong_pin(env):
    # The self-signed certificate with a pin of another certificate -> tls, and the printed
    # fingerprint is the one the server presented.
    wrong = rig.cert_sha256(env.certs.server_cert)
    with rig.auth_sink(env.certs, env.store("wrong-pin"), user=USER, password=PASSWORD,
                       cert=env.certs.selfsigned_cert, key=env.certs.selfsigned_key) as sink:
        res = env.check(*sink_args(sink.port_tls, "tls"), "--fingerprint", wrong)
        expect(res, 11, "tls")
        fp = rig.cert_sha256(env.certs.selfsigned_cert)
        assert res.fingerprint == fp, f"printed {res.fingerprint!r}, presented {fp}" + res.show()


def case_wrong_password(env):
    with rig.auth_sink(env.certs, env.store("wrong-pw"), user=USER,
                       password="a-different-password") as sink:
        res = env.check(*sink_args(sink.port_starttls, "starttls"))
        expect(res, 12, "auth")


def case_closed_port(env):
    port = rig.closed_port()
    res = env.check(*sink_args(port, "starttls"))
    expect(res, 10, "conn")
    assert res.elapsed < 15, f"took {res.elapsed:.1f} s (limit 15 s)" + res.show()


def case_starttls_missing(env):
    with rig.smtp_sink() as sink:
        res = env.check(*sink_args(sink.port, "starttls"))
        expect(res, 11, "tls")
        assert not re.search(r"^C: AUTH", res.stdout, re.M), "AUTH sent without TLS" + res.show()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    mailtrail = os.path.join(a.bin_dir, "mailtrail")
    if not os.access(mailtrail, os.X_OK):
        print(f"FAIL setup: {mailtrail} is not built")
        print("0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-smtpcheck-") as tmp:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        env = Env(a.bin_dir, tmp, certs)
        r.run("starttls_auth_plain_ok", case_auth, env, "starttls", "PLAIN")
        r.run("starttls_auth_login_ok", case_auth, env, "starttls", "LOGIN")
        r.run("tls_auth_plain_ok", case_auth, env, "tls", "PLAIN")
        r.run("tls_auth_login_ok", case_auth, env, "tls", "LOGIN")
        r.run("starttls_test_mail_arrives", case_mail_arrives, env, "starttls")
        r.run("tls_test_mail_arrives", case_mail_arrives, env, "tls")
        r.run("selfsigned_unpinned_tls_fingerprint", case_selfsigned_unpinned, env)
        r.run("selfsigned_pinned_sha256", case_selfsigned_pinned, env, "sha256")
        r.run("selfsigned_pinned_colon_upper", case_selfsigned_pinned, env, "sha256-colon-upper")
        r.run("selfsigned_pinned_spki", case_selfsigned_pinned, env, "spki-sha256")
        r.run("selfsigned_wrong_pin", case_wrong_pin, env)
        r.run("wrong_password_auth", case_wrong_password, env)
        r.run("closed_port_conn", case_closed_port, env)
        r.run("starttls_not_offered_smtp_sink", case_starttls_missing, env)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
