#!/usr/bin/python3
"""Sanity checks of the test rig itself, with Python's smtplib as the client, so that a rig
problem is told apart from a mailtrail client problem.

  /usr/bin/python3 tests/integration/test_smtp_sink_rig.py [--bin-dir BUILD] [--only NAME]

--bin-dir is accepted (ctest passes it) and unused. Prints PASS/FAIL per case and
"N passed, N failed"; exits 1 if any failed.
"""

import argparse
import base64
import hashlib
import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402

TIMEOUT = 20


def client_ctx(certs):
    ctx = ssl.create_default_context(cafile=certs.ca_cert)
    return ctx


def check_certs(certs):
    # The CA-signed cert verifies for "localhost" and 127.0.0.1, the self-signed one does not.
    out = subprocess.run(["openssl", "verify", "-CAfile", certs.ca_cert, certs.server_cert],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(["openssl", "verify", "-CAfile", certs.ca_cert, certs.selfsigned_cert],
                         capture_output=True, text=True)
    assert out.returncode != 0, "self-signed cert must not verify against the rig CA"
    text = subprocess.run(["openssl", "x509", "-in", certs.server_cert, "-noout", "-text"],
                          capture_output=True, text=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text, text
    # Fingerprint helpers agree with openssl.
    fp = subprocess.run(["openssl", "x509", "-in", certs.selfsigned_cert, "-noout",
                         "-fingerprint", "-sha256"], capture_output=True, text=True).stdout
    colon = fp.strip().split("=", 1)[1]
    assert rig.colon_upper(rig.cert_sha256(certs.selfsigned_cert)) == "sha256:" + colon, (fp,)
    spki = rig.spki_sha256(certs.server_cert)
    assert spki.startswith("spki-sha256:") and len(spki) == len("spki-sha256:") + 64, spki
    assert spki != rig.spki_sha256(certs.selfsigned_cert)


def check_ports():
    p = rig.closed_port()
    s = socket.socket()
    s.settimeout(5)
    try:
        assert s.connect_ex(("127.0.0.1", p)) != 0, "closed port accepted a connection"
    finally:
        s.close()
    assert 1024 < rig.free_port() < 65536


def send_starttls(sink, certs, mech):
    with smtplib.SMTP("127.0.0.1", sink.port_starttls, local_hostname="rigtest",
                      timeout=TIMEOUT) as s:
        s.ehlo()
        assert s.has_extn("starttls"), s.esmtp_features
        assert not s.has_extn("auth"), "AUTH must be hidden before STARTTLS"
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())
        assert code == 538, f"AUTH before STARTTLS: expected 538, got {code}"
        ctx = client_ctx(certs)
        s.starttls(context=ctx)
        s.ehlo()
        assert "PLAIN" in s.esmtp_features.get("auth", ""), s.esmtp_features
        assert "LOGIN" in s.esmtp_features.get("auth", "")
        assert "XOAUTH2" in s.esmtp_features.get("auth", "")
        s.user, s.password = sink.user, sink.password
        code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=True)
        assert code == 235, (code, resp)
        s.sendmail("from@example.test", ["to@example.test"],
                   f"Subject: rig {mech}\r\n\r\nhello\r\n")


def check_starttls_auth(certs, tmp, mech):
    store = os.path.join(tmp, "store-" + mech)
    with rig.auth_sink(certs, store) as sink:
        send_starttls(sink, certs, mech)
        msgs = sink.wait_messages(1)
        assert len(msgs) == 1, f"stored {len(msgs)} messages; log: {sink.log()}"
        m = msgs[0]
        assert m["mail_from"] == "from@example.test", m
        assert m["rcpt_tos"] == ["to@example.test"], m
        assert m["auth_user"] == sink.user, m
        assert m["tls"] is True, m
        assert b"Subject: rig " + mech.encode() in m["data"], m["data"]


def check_wrong_password(certs, tmp):
    with rig.auth_sink(certs, os.path.join(tmp, "store-wrong")) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port_starttls, timeout=TIMEOUT) as s:
            s.starttls(context=client_ctx(certs))
            try:
                s.login(sink.user, "not-the-password")
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 535, e
            else:
                raise AssertionError("wrong password accepted")


def check_implicit_tls(certs, tmp):
    with rig.auth_sink(certs, os.path.join(tmp, "store-tls")) as sink:
        with smtplib.SMTP_SSL("127.0.0.1", sink.port_tls, context=client_ctx(certs),
                              timeout=TIMEOUT) as s:
            s.ehlo()
            assert not s.has_extn("starttls")
            assert "PLAIN" in s.esmtp_features.get("auth", ""), "AUTH must show on implicit TLS"
            s.login(sink.user, sink.password)
            s.sendmail("a@example.test", ["b@example.test", "c@example.test"],
                       "Subject: implicit\r\n\r\nx\r\n")
        m = sink.wait_messages(1)
        assert len(m) == 1 and m[0]["tls"] is True and m[0]["auth_user"] == sink.user, m
        assert m[0]["rcpt_tos"] == ["b@example.test", "c@example.test"], m


def check_plain_port_refuse_require(certs, tmp):
    refused = "nobody@example.test"
    with rig.auth_sink(certs, os.path.join(tmp, "store-plain"), require_auth=True,
                       refuse=[refused]) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port_plain, timeout=TIMEOUT) as s:
            s.ehlo()
            assert not s.has_extn("starttls")
            code, _ = s.mail("a@example.test")
            assert code == 530, f"--require-auth: MAIL before AUTH got {code}"
            s.login(sink.user, sink.password)
            code, _ = s.mail("a@example.test")
            assert code == 250
            code, resp = s.rcpt(refused)
            assert code == 550 and resp.startswith(b"5.1.1"), (code, resp)
            code, _ = s.rcpt("ok@example.test")
            assert code == 250
            code, _ = s.data(b"Subject: plain\r\n\r\nx\r\n")
            assert code == 250
        m = sink.wait_messages(1)
        assert len(m) == 1 and m[0]["tls"] is False and m[0]["rcpt_tos"] == ["ok@example.test"], m


def check_xoauth2(certs, tmp):
    with rig.auth_sink(certs, os.path.join(tmp, "store-xo")) as sink:
        # good token, initial response
        with smtplib.SMTP_SSL("127.0.0.1", sink.port_tls, context=client_ctx(certs),
                              timeout=TIMEOUT) as s:
            s.ehlo()
            raw = f"user={sink.user}\x01auth=Bearer {sink.token}\x01\x01"
            code, resp = s.auth("XOAUTH2", lambda challenge=None: raw, initial_response_ok=True)
            assert code == 235, (code, resp)
            s.sendmail(sink.user, ["x@example.test"], "Subject: xo\r\n\r\nx\r\n")
        m = sink.wait_messages(1)
        assert len(m) == 1 and m[0]["auth_user"] == sink.user, m
        # bad token: 334 <base64 JSON>, the client's empty line, 535
        challenges = []

        def bad(challenge=None):
            if challenge is None:
                return f"user={sink.user}\x01auth=Bearer wrong\x01\x01"
            challenges.append(challenge)
            return ""

        with smtplib.SMTP("127.0.0.1", sink.port_starttls, timeout=TIMEOUT) as s:
            s.starttls(context=client_ctx(certs))
            s.ehlo()
            try:
                s.auth("XOAUTH2", bad, initial_response_ok=True)
            except smtplib.SMTPAuthenticationError as e:
                assert e.smtp_code == 535 and b"5.7.8" in e.smtp_error, e
            else:
                raise AssertionError("bad token accepted")
        assert len(challenges) == 1, challenges
        err = json.loads(challenges[0])
        assert err == {"status": "401", "schemes": "bearer",
                       "scope": "https://mail.google.com/"}, err
        # good token, no initial response (334 "" challenge first)
        with smtplib.SMTP_SSL("127.0.0.1", sink.port_tls, context=client_ctx(certs),
                              timeout=TIMEOUT) as s:
            s.ehlo()
            raw = f"user={sink.user}\x01auth=Bearer {sink.token}\x01\x01"
            code, resp = s.auth("XOAUTH2", lambda challenge=None: raw if challenge is not None else None,
                                initial_response_ok=False)
            assert code == 235, (code, resp)


def check_smtp_sink():
    with rig.smtp_sink() as sink:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=TIMEOUT) as s:
            s.ehlo()
            assert s.has_extn("pipelining"), s.esmtp_features
            assert not s.has_extn("starttls"), s.esmtp_features
            refused = s.sendmail("a@example.test", ["b@example.test"], "Subject: s\r\n\r\nx\r\n")
            assert refused == {}, refused
        proc = sink.proc
    # stopped at the end of the with block
    assert proc.poll() is not None, "smtp-sink still running after its context ended"
    assert not rig.wait_port("127.0.0.1", sink.port, timeout=0.5)


def check_cleanup(certs, tmp):
    with rig.auth_sink(certs, os.path.join(tmp, "store-cleanup")) as sink:
        proc = sink.proc
        port = sink.port_plain
    assert proc.poll() is not None, "auth_sink still running after its context ended"
    assert not rig.wait_port("127.0.0.1", port, timeout=0.5)
    # And on an exception inside the block
    try:
        with rig.auth_sink(certs, os.path.join(tmp, "store-cleanup2")) as sink:
            proc = sink.proc
            raise KeyError("boom")
    except KeyError:
        pass
    assert proc.poll() is not None, "auth_sink survived an exception in its block"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir")
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(args.only)
    with rig.tempdir("mailtrail-rigtest-") as tmp:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        r.run("certs", check_certs, certs)
        r.run("ports", check_ports)
        r.run("starttls_auth_plain", check_starttls_auth, certs, tmp, "PLAIN")
        r.run("starttls_auth_login", check_starttls_auth, certs, tmp, "LOGIN")
        r.run("wrong_password", check_wrong_password, certs, tmp)
        r.run("implicit_tls_auth", check_implicit_tls, certs, tmp)
        r.run("plain_port_refuse_require_auth", check_plain_port_refuse_require, certs, tmp)
        r.run("xoauth2_good_and_bad", check_xoauth2, certs, tmp)
        r.run("smtp_sink_accepts", check_smtp_sink)
        r.run("servers_stopped", check_cleanup, certs, tmp)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
