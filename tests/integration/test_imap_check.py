#!/usr/bin/python3
"""`mailtrail imap-check` against the rig's private Dovecot (tests/rig/dovecot.py).

  /usr/bin/python3 tests/integration/test_imap_check.py --bin-dir BUILD [--only NAME]...

Checks exit codes (DESIGN.md §2: 0 ok, 10 conn, 11 tls, 12 auth, ...), the outcome block
("outcome: ok|failed", "class: NAME", "fingerprint: sha256:..."), the folder list with the
special-use role of Sent, UIDVALIDITY / UIDNEXT / HIGHESTMODSEQ lines of INBOX and Sent, and
that the password never appears in stdout or stderr. Prints one PASS/FAIL line per case and
"N passed, N failed"; exits 1 if any failed.
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
import dovecot  # noqa: E402

USER = "alice"
PASSWORD = "Pw-imap!s3cret-alice"
CHECK_TIMEOUT = 45  # seconds per imap-check run (it promises <= 30 s)


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
        out = self.stdout if len(self.stdout) < 5000 else self.stdout[:2500] + "\n...\n" + self.stdout[-2500:]
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
        self.n = 0

    def dir(self, name):
        self.n += 1
        return os.path.join(self.tmp, f"dovecot-{self.n}-{name}")

    def pw_file(self, password):
        self.n += 1
        path = os.path.join(self.tmp, f"password-{self.n}")
        with open(path, "w") as f:
            f.write(password + "\n")
        os.chmod(path, 0o600)
        return path

    def check(self, dc, security, *args, port=None, host=None, password=PASSWORD, ca=True):
        if port is None:
            port = dc.imaps_port if security == "tls" else dc.imap_port
        argv = [self.mailtrail, "imap-check", "--host", host or dc.host, "--port", str(port),
                "--security", security, "--user", USER,
                "--password-file", self.pw_file(password), *args]
        if ca and dc.ca_file:
            argv += ["--ca-file", dc.ca_file]
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=CHECK_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"imap-check did not finish within {CHECK_TIMEOUT} s: {argv}")
        res = Result(argv, proc, time.monotonic() - start)
        for where in ("stdout", "stderr"):
            assert password not in getattr(res, where), f"the password appears in {where}" + res.show()
        return res


def expect(res, code, cls=None):
    assert res.exit == code, f"expected exit {code}, got {res.exit}" + res.show()
    if code == 0:
        assert res.outcome == "ok", f"expected 'outcome: ok', got {res.outcome!r}" + res.show()
        assert re.search(r"^S: \* OK", res.stdout, re.M), "no greeting in the transcript" + res.show()
        assert re.search(r"^inbox: INBOX uidvalidity=[1-9]\d* uidnext=[1-9]\d* exists=\d+ "
                         r"highestmodseq=[1-9]\d*$", res.stdout, re.M), "no INBOX status" + res.show()
        assert re.search(r"^sent: Sent uidvalidity=[1-9]\d* uidnext=[1-9]\d* exists=\d+ "
                         r"highestmodseq=[1-9]\d*$", res.stdout, re.M), "no Sent status" + res.show()
        assert re.search(r"^  Sent \(sent\)$", res.stdout, re.M), "Sent has no role" + res.show()
    else:
        assert res.outcome == "failed", f"expected 'outcome: failed', got {res.outcome!r}" + res.show()
        if cls:
            assert res.cls == cls, f"expected 'class: {cls}', got {res.cls!r}" + res.show()


def users():
    return {USER: PASSWORD, "bob": "bob-pw"}


# --- cases ---------------------------------------------------------------------------------

def case_ok(env, dc, security, auth):
    res = env.check(dc, security, "--auth", auth)
    expect(res, 0)
    want = r"^C: a\d+ LOGIN \"alice\" \*\*\*\*$" if auth == "login" else \
        r"^C: a\d+ AUTHENTICATE PLAIN \*\*\*\*$"
    assert re.search(want, res.stdout, re.M), f"no masked {auth} in the transcript" + res.show()
    if security == "starttls":
        assert re.search(r"^C: a\d+ STARTTLS$", res.stdout, re.M), "no STARTTLS" + res.show()
        assert re.search(r"^C: <TLS established", res.stdout, re.M), res.show()
    assert re.search(r"^C: a\d+ LIST \"\" \"\*\" RETURN \(SPECIAL-USE\)$", res.stdout, re.M), \
        "LIST without RETURN (SPECIAL-USE)" + res.show()
    assert re.search(r"^C: a\d+ ENABLE CONDSTORE", res.stdout, re.M), "no ENABLE" + res.show()
    assert re.search(r"^C: a\d+ LOGOUT$", res.stdout, re.M), "no LOGOUT" + res.show()


def case_uid_values(env, dc):
    # the printed values are the server's: compare with imaplib's view after an APPEND
    dc.append(USER, "INBOX", b"Subject: one\r\n\r\nbody\r\n")
    dc.append(USER, "Sent", b"Subject: two\r\n\r\nbody\r\n")
    res = env.check(dc, "starttls")
    expect(res, 0)
    with dc.connect(USER, mech="login") as c:
        typ, _ = c.select("INBOX", readonly=True)
        uidnext = int(re.search(rb"UIDNEXT (\d+)", b" ".join(
            x for x in c.response("OK")[1] if x)).group(1))
    m = re.search(r"^inbox: INBOX uidvalidity=(\d+) uidnext=(\d+) exists=(\d+)", res.stdout, re.M)
    assert m and int(m.group(2)) == uidnext and int(m.group(3)) >= 1, \
        f"INBOX uidnext {m and m.group(2)} vs imaplib {uidnext}" + res.show()


def case_wrong_password(env, dc):
    res = env.check(dc, "starttls", password="not-the-password")
    expect(res, 12, "auth")
    assert "AUTHENTICATIONFAILED" in res.stdout, "no AUTHENTICATIONFAILED shown" + res.show()


def case_selfsigned_unpinned(env, dc):
    fp = dc.fingerprint()
    for security in ("starttls", "tls"):
        res = env.check(dc, security, ca=False)
        expect(res, 11, "tls")
        assert res.fingerprint == fp, \
            f"[{security}] printed fingerprint {res.fingerprint!r}, the cert's is {fp}" + res.show()
        assert not re.search(r"^C: a\d+ (LOGIN|AUTHENTICATE)", res.stdout, re.M), \
            "credentials sent to an untrusted server" + res.show()


def case_selfsigned_pinned(env, dc):
    for security in ("starttls", "tls"):
        for pin in (dc.fingerprint(), dc.spki_fingerprint()):
            res = env.check(dc, security, "--fingerprint", pin, ca=False)
            expect(res, 0)


def case_strict_listener(env, dc):
    res = env.check(dc, "starttls", port=dc.strict_port, host=dc.strict_host)
    expect(res, 0)
    pre = res.stdout.split("<TLS established")[0]
    assert "LOGINDISABLED" in pre, "the strict listener did not advertise LOGINDISABLED" + res.show()


def case_closed_port(env, dc):
    res = env.check(dc, "starttls", port=rig.closed_port())
    expect(res, 10, "conn")


def case_usage(env, dc):
    argv = [env.mailtrail, "imap-check", "--host", dc.host]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert proc.returncode == 2, f"exit {proc.returncode}, expected 2"


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
    with rig.tempdir("mailtrail-imapcheck-") as tmp:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        env = Env(a.bin_dir, tmp, certs)
        with dovecot.dovecot(certs, env.dir("main"), users=users(), strict_listener=True) as dc:
            r.run("starttls_authenticate_plain_ok", case_ok, env, dc, "starttls", "password")
            r.run("starttls_login_ok", case_ok, env, dc, "starttls", "login")
            r.run("tls_authenticate_plain_ok", case_ok, env, dc, "tls", "plain")
            r.run("tls_login_ok", case_ok, env, dc, "tls", "login")
            r.run("uid_values_match_server", case_uid_values, env, dc)
            r.run("strict_listener_starttls_ok", case_strict_listener, env, dc)
            r.run("closed_port_conn", case_closed_port, env, dc)
            r.run("usage_exit_2", case_usage, env, dc)
        # a failed login delays further logins from the address: its own instance
        with dovecot.dovecot(certs, env.dir("wrongpw"), users=users()) as dc:
            r.run("wrong_password_auth", case_wrong_password, env, dc)
        with dovecot.dovecot(certs, env.dir("selfsigned"), users=users(), selfsigned=True) as dc:
            r.run("selfsigned_unpinned_tls_fingerprint", case_selfsigned_unpinned, env, dc)
            r.run("selfsigned_pinned_ok", case_selfsigned_pinned, env, dc)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
