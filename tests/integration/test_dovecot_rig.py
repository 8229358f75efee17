#!/usr/bin/python3
"""Sanity checks of the private Dovecot of the test rig (tests/rig/dovecot.py), with Python's
imaplib as the only client (no mailtrail code), so that a rig problem is told apart from a
mailtrail IMAP problem.

  /usr/bin/python3 tests/integration/test_dovecot_rig.py [--bin-dir BUILD] [--only NAME]

--bin-dir is accepted (ctest passes it) and unused. Prints PASS/FAIL per case and
"N passed, N failed"; exits 1 if any failed.
"""

import argparse
import imaplib
import os
import re
import signal
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402
import dovecot  # noqa: E402

RAW = (b"From: Alice <alice@example.test>\r\n"
       b"To: Bob <bob@example.test>\r\n"
       b"Subject: rig append\r\n"
       b"Message-ID: <rig-append@example.test>\r\n"
       b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
       b"\r\n"
       b"hello from the rig\r\n")

_groups = []  # process groups of every instance started, checked at the end


def started(dc):
    _groups.append(dc.proc.pid)
    return dc


def message(i):
    return (b"From: filler@example.test\r\nTo: alice@example.test\r\n"
            b"Subject: filler %d\r\nMessage-ID: <filler-%d@example.test>\r\n"
            b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nbody %d\r\n" % (i, i, i))


def close(c):
    """Drops a connection without LOGOUT (a failed STARTTLS leaves imaplib's socket closed)."""
    try:
        c.shutdown()
    except OSError:
        pass


def check_starttls(dc):
    c = dovecot._IMAP4(dc.host, dc.imap_port, timeout=20)
    try:
        assert "STARTTLS" in c.capabilities, c.capabilities
        # 127.0.0.1 to 127.0.0.1 counts as secure: no LOGINDISABLED (DESIGN.md §5).
        assert "LOGINDISABLED" not in c.capabilities, c.capabilities
        ctx = ssl.create_default_context(cafile=dc.ca_file)
        typ, _ = c.starttls(ssl_context=ctx)  # verifies 127.0.0.1 against the cert's SAN
        assert typ == "OK"
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3"), c.sock.version()
        der = c.sock.getpeercert(binary_form=True)
        assert der == rig.cert_der(dc.cert_file), "served cert is not the rig's CA-signed cert"
        assert "AUTH=PLAIN" in c.capabilities and "AUTH=LOGIN" in c.capabilities, c.capabilities
        typ, _ = c.login("alice", dc.users["alice"])
        assert typ == "OK"
        typ, data = c.capability()
        caps = data[0].decode().split()
        for cap in ("IDLE", "CONDSTORE", "QRESYNC", "UIDPLUS", "MOVE", "SPECIAL-USE", "ESEARCH"):
            assert cap in caps, (cap, caps)
    finally:
        close(c)
    # A client that does not trust the test CA refuses the certificate.
    c = dovecot._IMAP4(dc.host, dc.imap_port, timeout=20)
    try:
        try:
            c.starttls(ssl_context=ssl.create_default_context())
        except ssl.SSLCertVerificationError:
            pass
        else:
            raise AssertionError("system trust store accepted the rig certificate")
    finally:
        close(c)


def check_imaps(dc):
    with dc.connect("bob", tls="imaps") as c:
        assert c.sock.getpeercert(binary_form=True) == rig.cert_der(dc.cert_file)
        assert "STARTTLS" not in c.capabilities, c.capabilities
        typ, data = c.select("INBOX")
        assert typ == "OK", data
    # Verified by IP too (SAN IP:127.0.0.1), with the stock imaplib class.
    c = imaplib.IMAP4_SSL(dc.host, dc.imaps_port, ssl_context=dc.ssl_context(), timeout=20)
    c.login("bob", dc.users["bob"])
    c.logout()


def check_login_mechs(dc):
    with dc.connect("carol", mech="login") as c:
        assert c.state == "AUTH", c.state
    with dc.connect("carol", mech="plain") as c:
        assert c.state == "AUTH", c.state
    with dc.connect("alice", tls="imaps", mech="plain") as c:
        assert c.state == "AUTH", c.state


def check_wrong_password(dc):
    # Its own source address: Dovecot's auth penalty is per remote IP (DESIGN.md §5).
    for mech in ("login", "plain"):
        c = dc.connect(None, source="127.0.0.%d" % (20 if mech == "login" else 21))
        try:
            start = time.monotonic()
            try:
                if mech == "plain":
                    c.authenticate("PLAIN", lambda _: b"\0alice\0not-the-password")
                else:
                    c.login("alice", "not-the-password")
            except imaplib.IMAP4.error as e:
                assert "AUTHENTICATIONFAILED" in str(e), e
            else:
                raise AssertionError(f"wrong password accepted ({mech})")
            assert time.monotonic() - start < 3.0, "first failure from an address took long"
        finally:
            close(c)
    # Unknown user, too.
    c = dc.connect(None, source="127.0.0.22")
    try:
        try:
            c.login("mallory", "x")
        except imaplib.IMAP4.error as e:
            assert "AUTHENTICATIONFAILED" in str(e), e
        else:
            raise AssertionError("unknown user accepted")
    finally:
        close(c)
    # The right password from 127.0.0.1 is not delayed by the failures elsewhere.
    start = time.monotonic()
    with dc.connect("alice"):
        pass
    assert time.monotonic() - start < 2.0, "login from 127.0.0.1 delayed"


def check_strict_listener(dc):
    # The listener on 127.0.0.2 (reached from 127.0.0.1) and the ordinary port reached from a
    # bound source 127.0.0.2: neither is "secure" before STARTTLS.
    for host, port, source in ((dc.strict_host, dc.strict_port, None),
                               (dc.host, dc.imap_port, "127.0.0.2")):
        c = dovecot._IMAP4(host, port, timeout=20, source=source)
        try:
            assert "LOGINDISABLED" in c.capabilities, (host, source, c.capabilities)
            assert "STARTTLS" in c.capabilities, c.capabilities
            try:
                c.login("alice", dc.users["alice"])
            except imaplib.IMAP4.error as e:
                assert "PRIVACYREQUIRED" in str(e) or "disallowed" in str(e), e
            else:
                raise AssertionError(f"plaintext login allowed on {host}:{port} from {source}")
        finally:
            close(c)
        with dc.connect("alice", host=host, port=port, source=source) as c:
            assert c.state == "AUTH"
            assert "LOGINDISABLED" not in c.capabilities


def check_list_special_use(dc):
    with dc.connect("bob") as c:
        typ, data = c._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
        assert typ == "OK", data
        _, lines = c._untagged_response(typ, data, "LIST")
        found = {}
        for line in lines:
            m = re.match(rb'\(([^)]*)\) "(.)" "?([^"]*)"?$', line)
            assert m, line
            flags = m.group(1).decode().split()
            uses = [f for f in flags if f in ("\\Sent", "\\Drafts", "\\Trash", "\\Junk",
                                              "\\Archive")]
            found[m.group(3).decode()] = uses
            assert m.group(2) == b"/", line
        assert found == {"Sent": ["\\Sent"], "Drafts": ["\\Drafts"], "Trash": ["\\Trash"],
                         "Junk": ["\\Junk"], "Archive": ["\\Archive"]}, found
        typ, data = c.lsub('""', "*")
        subscribed = {re.search(rb'"?([^" ]+)"?$', x).group(1).decode() for x in data if x}
        assert {"Sent", "Drafts", "Trash", "Junk", "Archive"} <= subscribed, subscribed


def check_append(dc):
    uid = dc.append("bob", "INBOX", RAW)
    assert uid >= 1, uid
    uid2 = dc.append("bob", "INBOX", RAW.replace(b"rig append", b"rig append 2"),
                     flags=("\\Seen", "\\Flagged"))
    assert uid2 == uid + 1, (uid, uid2)
    sent = dc.append("bob", "Sent", RAW)
    assert sent >= 1
    flags = dc.message_flags("bob", "INBOX")
    assert "\\Seen" not in flags[uid], flags
    assert {"\\Seen", "\\Flagged"} <= flags[uid2], flags
    with dc.connect("bob") as c:
        c.select("INBOX", readonly=True)
        typ, data = c.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == RAW, data
    # EXAMINE and BODY.PEEK leave \Seen alone.
    assert "\\Seen" not in dc.message_flags("bob", "INBOX")[uid]


def check_fill_maildir(dc):
    n = 10000
    start = time.monotonic()
    assert dc.fill_maildir("alice", "Archive/2023", (message(i) for i in range(n))) == n
    fill = time.monotonic() - start
    assert len(os.listdir(os.path.join(dc.maildir("alice", "Archive/2023"), "new"))) == n
    with dc.connect("alice", timeout=120) as c:
        start = time.monotonic()
        typ, data = c.select("Archive/2023", readonly=True)
        assert typ == "OK" and int(data[0]) == n, data
        typ, data = c.uid("FETCH", "1:*", "(UID)")
        fetch = time.monotonic() - start
        uids = [int(re.search(rb"UID (\d+)", x).group(1)) for x in data]
        assert uids == list(range(1, n + 1)), (len(uids), uids[:3], uids[-3:])
        # Name order is delivery order: UID k is message k-1.
        typ, data = c.uid("FETCH", "%d" % n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"filler %d" % (n - 1) in data[0][1], data
        typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
        assert not any(b"\\Seen" in x for x in data), "fill_maildir messages must be unseen"
    print(f"  fill_maildir {n}: {fill:.1f}s, SELECT + UID FETCH 1:* (UID): {fetch:.2f}s",
          flush=True)
    assert fetch < 30, f"SELECT + UID FETCH took {fetch:.1f}s"
    # Flagged messages in cur/ (the others went into new/).
    dc.fill_maildir("alice", "INBOX", [message(i) for i in range(5)])
    dc.fill_maildir("alice", "INBOX", [message(i) for i in range(3)], flags="S")
    flags = dc.message_flags("alice", "INBOX")
    seen = [u for u, f in flags.items() if "\\Seen" in f]
    assert len(flags) >= 8 and len(seen) == 3, flags
    assert os.stat(os.path.join(dc.maildir("alice", "Archive/2023"), "cur")).st_uid == dc.mail_uid


def check_fill_100000_shm(certs, tmp):
    n = 100000
    with dovecot.dovecot(certs, os.path.join(tmp, "shm"), shm=True) as dc:
        started(dc)
        in_shm = dc.mail_root.startswith("/dev/shm/")
        start = time.monotonic()
        dc.fill_maildir("bob", "INBOX", (message(i) for i in range(n)))
        fill = time.monotonic() - start
        with dc.connect("bob", timeout=300) as c:
            start = time.monotonic()
            typ, data = c.select("INBOX", readonly=True)
            assert typ == "OK" and int(data[0]) == n, data
            typ, data = c.uid("FETCH", "1:*", "(UID)")
            fetch = time.monotonic() - start
            assert len(data) == n, len(data)
        print(f"  fill_maildir {n} ({'/dev/shm' if in_shm else 'disk'}): {fill:.1f}s, "
              f"SELECT + UID FETCH 1:* (UID): {fetch:.1f}s", flush=True)
        root = dc.mail_root
    if in_shm:
        assert not os.path.exists(os.path.dirname(root)), f"{root} left behind"


def check_idle(dc):
    c = dc.connect("carol")
    try:
        typ, data = c.select("INBOX")
        assert typ == "OK"
        exists = int(data[0])
        tag = c._new_tag()
        c.send(tag + b" IDLE\r\n")
        c.sock.settimeout(10)
        line = c.readline()
        assert line.startswith(b"+"), line
        start = time.monotonic()
        dc.append("carol", "INBOX", RAW)
        seen = None
        while seen is None:
            line = c.readline()
            assert line, "connection closed during IDLE"
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                seen = int(m.group(1))
        took = time.monotonic() - start
        assert seen == exists + 1, (exists, seen)
        assert took < 5, f"EXISTS came {took:.1f}s after the APPEND"
        c.send(b"DONE\r\n")
        while True:
            line = c.readline()
            assert line, "connection closed after DONE"
            if line.startswith(tag):
                assert line.split()[1] == b"OK", line
                break
    finally:
        c.logout()


def check_selfsigned(certs, tmp):
    with dovecot.dovecot(certs, os.path.join(tmp, "selfsigned"), selfsigned=True) as dc:
        started(dc)
        assert dc.ca_file is None
        assert dc.fingerprint() == rig.cert_sha256(certs.selfsigned_cert)
        # Untrusted by the test CA; pinned by fingerprint it is the one served.
        c = dovecot._IMAP4(dc.host, dc.imap_port, timeout=20)
        try:
            try:
                c.starttls(ssl_context=ssl.create_default_context(cafile=certs.ca_cert))
            except ssl.SSLCertVerificationError:
                pass
            else:
                raise AssertionError("self-signed cert verified against the test CA")
        finally:
            close(c)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c = imaplib.IMAP4_SSL(dc.host, dc.imaps_port, ssl_context=ctx, timeout=20)
        try:
            der = c.sock.getpeercert(binary_form=True)
            assert der == rig.cert_der(certs.selfsigned_cert)
        finally:
            close(c)
        with dc.connect("alice", tls="imaps"):  # dc.ssl_context() trusts the cert itself
            pass


def check_extra_conf(certs, tmp):
    # Appended settings override the rig's (the hook for an oauth2 passdb later).
    with dovecot.dovecot(certs, os.path.join(tmp, "extra"), users={"dave": "dave-pw"},
                         extra_conf="auth_mechanisms = plain login cram-md5\n") as dc:
        started(dc)
        with dc.connect(None) as c:
            assert "AUTH=CRAM-MD5" in c.capabilities, c.capabilities
            c.login_cram_md5("dave", "dave-pw")
            assert c.state == "AUTH"


def group_alive(pgid):
    return bool(dovecot.group_members(pgid))


def check_stopped(certs, tmp):
    with dovecot.dovecot(certs, os.path.join(tmp, "stopped")) as dc:
        started(dc)
        pgid, port = dc.proc.pid, dc.imap_port
        with dc.connect("alice"):
            pass  # an imap process now exists too
    assert dc.proc.poll() is not None, "dovecot master still running after its context ended"
    assert not group_alive(pgid), "processes of the dovecot group left running"
    assert not rig.wait_port("127.0.0.1", port, timeout=0.5)
    # And on an exception inside the block.
    try:
        with dovecot.dovecot(certs, os.path.join(tmp, "stopped2")) as dc:
            started(dc)
            pgid = dc.proc.pid
            raise KeyError("boom")
    except KeyError:
        pass
    assert not group_alive(pgid), "dovecot survived an exception in its block"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir")
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(args.only)
    with rig.tempdir("mailtrail-dovecottest-") as tmp:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        start = time.monotonic()
        with dovecot.dovecot(certs, os.path.join(tmp, "main"), strict_listener=True) as dc:
            started(dc)
            print(f"  dovecot up in {time.monotonic() - start:.2f}s: imap {dc.imap_port}, "
                  f"imaps {dc.imaps_port}, strict {dc.strict_host}:{dc.strict_port}",
                  flush=True)
            r.run("starttls_verified", check_starttls, dc)
            r.run("imaps_implicit_tls", check_imaps, dc)
            r.run("login_and_authenticate_plain", check_login_mechs, dc)
            r.run("wrong_password", check_wrong_password, dc)
            r.run("strict_listener_logindisabled", check_strict_listener, dc)
            r.run("list_special_use", check_list_special_use, dc)
            r.run("append_appenduid", check_append, dc)
            r.run("fill_maildir_10000", check_fill_maildir, dc)
            r.run("idle_sees_append", check_idle, dc)
            if r.failed:
                sys.stdout.write(dc.log()[-3000:])
        r.run("fill_maildir_100000_shm", check_fill_100000_shm, certs, tmp)
        r.run("selfsigned_instance", check_selfsigned, certs, tmp)
        r.run("extra_conf_appended", check_extra_conf, certs, tmp)
        r.run("stopped", check_stopped, certs, tmp)
    left = [g for g in _groups if group_alive(g)]
    if left:
        r.failed.append("no_processes_left")
        print(f"FAIL no_processes_left: process groups {left} still alive", flush=True)
        for g in left:
            try:
                os.killpg(g, signal.SIGKILL)
            except OSError:
                pass
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
