#!/usr/bin/python3
"""Round-1 findings that must not come back (issue "Hardening round 1", bugs 1-5).

  /usr/bin/python3 tests/integration/test_hardening.py --bin-dir BUILD [--only NAME]... [--keep]

One store, one server (no relay), two of the rig's auth sinks: one with the CA-signed
certificate, one with a self-signed certificate (the FatCow case: only a pin makes it usable).
Cases, in order, sharing the setup:

  pinned_self_signed_delivers      a pinned self-signed server passes PUT /v1/smtp and then
                                   carries a message from the outbox (the stored pin is used
                                   when sending, for the certificate and the key forms)
  password_kept_for_same_destination_only
                                   an omitted password is reused only when host, port, username,
                                   auth, security and pin are all unchanged; a new security or a
                                   new/removed pin is 400 asking for the password, and nothing
                                   reaches a server
  csv_invalid_utf8_and_nul_rejected rows whose name or address is not valid UTF-8 or holds a NUL
                                   are rejected with a reason; the rest import; lists and GET work
  custom_smtp_off_stops_custom     the admin switches custom_smtp off: GET /v1/smtp says so and
                                   POST /v1/messages is 409 (no relay); back on, mail goes custom
  features_not_built_refused       bcc_sync cannot be switched on before it exists
  small_ones                       "user not found", the add-in's error, a feed cursor beyond the
                                   end, reactivation, PUT after DELETE, limits kept on re-save
  live_check_silent_server_within_10s
                                   a port that accepts and never greets fails the check in 10 s;
                                   a fifth check while four run is 429 with Retry-After
  pipelined_input_no_spin          256 KiB sent behind a request whose handler waits (a live
                                   check on a silent port): the service stops reading that
                                   connection instead of spinning on its full read-ahead

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import contextlib
import json
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect, expect_input  # noqa: E402

REC = "rec@h.example"
REC2 = "rec2@h.example"
PASSWORD = "s3cret-pw-hardening"
FINAL = ("sent", "partial", "failed", "cancelled")


def wait_final(svc, token, mid, timeout=20.0):
    deadline = time.monotonic() + timeout
    doc = None
    while time.monotonic() < deadline:
        doc = expect(svc.req("GET", f"/v1/messages/{mid}", token), 200)
        if doc["state"] in FINAL:
            return doc
        time.sleep(0.1)
    raise AssertionError(f"message {mid} not final after {timeout:g} s: {doc}")


def smtp_body(port, user, **over):
    body = {"host": "127.0.0.1", "port": port, "security": "starttls", "username": user,
            "password": PASSWORD, "from": user, "accept_disclaimer": True}
    for k, v in over.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


def case_setup(svc, sinks):
    a = svc.init("Hardening Org", "admin@h.example")
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    for name, addr in (("rec", REC), ("rec2", REC2), ("gone", "gone@h.example")):
        doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                             {"email": addr, "name": name, "role": "user"}), 201)
        svc.users[name] = {"id": doc["id"], "token": doc["token"], "email": addr}
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": True}), 200)


def case_pinned_self_signed(svc, sinks):
    ss = sinks["selfsigned"]
    for kind, pin in (("cert", rig.cert_sha256(svc.certs.selfsigned_cert)),
                      ("spki", rig.spki_sha256(svc.certs.selfsigned_cert))):
        # Unpinned, the self-signed server fails with class tls and names its fingerprint.
        r = svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(ss.port_starttls, REC))
        expect(r, 422, "tls")
        r = svc.req("PUT", "/v1/smtp", svc.tok("rec"),
                    smtp_body(ss.port_starttls, REC, tls_fingerprint=pin))
        assert expect(r, 200)["state"] == "connected", r.show()
        before = len(ss.messages())
        r = svc.req("POST", "/v1/messages", svc.tok("rec"),
                    {"to": [f"pinned-{kind}@cand.example"], "subject": f"pinned {kind}",
                     "text": "through the pinned server"})
        mid = expect(r, 202)["id"]
        doc = wait_final(svc, svc.tok("rec"), mid)
        assert doc["state"] == "sent", f"the pinned server did not carry the message ({kind}): {doc}"
        msgs = ss.wait_messages(before + 1)
        assert any(f"pinned-{kind}@cand.example" in m["rcpt_tos"] for m in msgs[before:]), \
            "the sink did not get the message"


def case_password_same_destination_only(svc, sinks):
    ca = sinks["ca"]
    t = svc.tok("rec2")
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(ca.port_starttls, REC2))
    assert expect(r, 200)["state"] == "connected", r.show()
    before = len(ca.messages())
    server_pin = rig.cert_sha256(svc.certs.server_cert)
    # A new pin (even the server's real one), or another security on the same port: the stored
    # password must not follow.
    for over in ({"tls_fingerprint": server_pin}, {"security": "tls"}):
        r = svc.req("PUT", "/v1/smtp", t, smtp_body(ca.port_starttls, REC2, password=None, **over))
        expect_input(r, "password")
    # With the pin stored, removing it is a change too.
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(ca.port_starttls, REC2, tls_fingerprint=server_pin))
    assert expect(r, 200)["state"] == "connected", r.show()
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(ca.port_starttls, REC2, password=None))
    expect_input(r, "password")
    # Unchanged destination: reused (the positive control).
    r = svc.req("PUT", "/v1/smtp", t,
                smtp_body(ca.port_starttls, REC2, password=None, tls_fingerprint=server_pin))
    assert expect(r, 200)["state"] == "connected", r.show()
    assert len(ca.wait_messages(before + 2)) == before + 2, \
        "expected exactly the two confirmations of the accepted saves"
    time.sleep(0.3)
    assert len(ca.messages()) == before + 2, "a refused save reached the server"
    doc = expect(svc.req("GET", "/v1/smtp", t), 200)
    assert doc["tls_fingerprint"] == server_pin and doc["security"] == "starttls", doc


def count_profiles(svc, token, q):
    doc = expect(svc.req("GET", "/v1/profiles?q=" + q + "&limit=1000", token), 200)
    return doc["profiles"]


def case_csv_utf8(svc, sinks):
    t = svc.tok("rec")
    csv = (b"kind,name,emails\n"
           b"applicant,Good Utf8 \xc3\xa9,good@csv8.example\n"
           b"applicant,Bad \xff\xfe Name,bad1@csv8.example\n"
           b"applicant,\"Nul\x00Name\",bad2@csv8.example\n"
           b"applicant,Overlong \xc0\xaf,bad3@csv8.example\n"
           b"applicant,Addr Nul,\"bad4@csv8.example\x00x\"\n"
           b"applicant,Addr Bad,b\xe9d5@csv8.example\n"
           b"contact,Second Good,good2@csv8.example\n")
    r = svc.req("POST", "/v1/profiles/import", t, raw=csv, content_type="text/csv")
    doc = expect(r, 200)
    assert doc["imported"] == 2, r.show()
    lines = [x["line"] for x in doc["rejected"]]
    assert lines == [3, 4, 5, 6, 7], f"rejected lines {lines}" + r.show()
    for x in doc["rejected"]:
        e = x["error"].lower()
        assert "utf-8" in e or "nul" in e or "invalid address" in e, r.show()
    for x in doc["rejected"][:3]:
        assert "utf-8" in x["error"].lower() or "nul" in x["error"].lower(), r.show()
    found = count_profiles(svc, t, "csv8.example")
    # search is by name or address prefix: look up each good one
    good = count_profiles(svc, t, "good@csv8")
    assert len(good) == 1 and good[0]["name"] == "Good Utf8 é", good
    assert len(count_profiles(svc, t, "good2@csv8")) == 1
    for n in range(1, 6):
        assert count_profiles(svc, t, f"bad{n}@csv8") == [], f"bad{n} was stored"
    # Every listed profile can be read and patched (no 500 anywhere).
    doc = expect(svc.req("GET", "/v1/profiles?limit=1000", t), 200)
    for p in doc["profiles"]:
        expect(svc.req("GET", f"/v1/profiles/{p['id']}", t), 200)
    pid = good[0]["id"]
    r = svc.req("PATCH", f"/v1/profiles/{pid}", t, {"emails": ["good@csv8.example", "g3@csv8.example"]})
    assert expect(r, 200)["emails"] == ["good@csv8.example", "g3@csv8.example"], r.show()
    del found


def case_custom_smtp_off(svc, sinks):
    ca = sinks["ca"]
    t = svc.tok("rec2")
    assert expect(svc.req("GET", "/v1/smtp", t), 200)["state"] == "connected"
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": False}), 200)
    doc = expect(svc.req("GET", "/v1/smtp", t), 200)
    assert doc["feature_enabled"] is False and doc["route"] == "none", \
        f"GET /v1/smtp does not say custom SMTP is off: {doc}"
    before = len(ca.messages())
    r = svc.req("POST", "/v1/messages", t, {"to": ["off@cand.example"], "subject": "s", "text": "x"})
    expect(r, 409)
    assert "custom_smtp" in r.err()[1] or "relay" in r.err()[1], r.show()
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"custom_smtp": True}), 200)
    doc = expect(svc.req("GET", "/v1/smtp", t), 200)
    assert doc["feature_enabled"] is True and doc["route"] == "custom", doc
    r = svc.req("POST", "/v1/messages", t, {"to": ["on@cand.example"], "subject": "s", "text": "x"})
    mid = expect(r, 202)["id"]
    doc = wait_final(svc, t, mid)
    assert doc["state"] == "sent" and doc["route"] == "custom", doc
    assert len(ca.wait_messages(before + 1)) == before + 1


def case_features_not_built(svc, sinks):
    for feature in ("bcc_sync",):
        r = svc.req("PUT", "/v1/org/features", svc.tok("admin"), {feature: True})
        expect_input(r, "not available")
        r = svc.req("PUT", "/v1/org", svc.tok("admin"),
                    {"domains": ["h.example"], "features": {"custom_smtp": True, feature: True}})
        expect_input(r, "not available")
    org = expect(svc.req("GET", "/v1/org", svc.tok("admin")), 200)
    assert org["features"] == {"custom_smtp": True, "imap_sync": False, "bcc_sync": False}, org
    # Switching them off (a no-op) stays allowed.
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"imap_sync": False}), 200)


def case_small_ones(svc, sinks):
    admin = svc.tok("admin")
    r = svc.req("DELETE", "/v1/users/usr_doesnotexist0000000", admin)
    expect(r, 404)
    assert r.err()[1] == "user not found", r.show()
    r = svc.req("POST", "/v1/addin/log", svc.tok("rec"), raw=b"\x00\x01 not mail at all",
                content_type="message/rfc822")
    expect(r, 400)
    assert r.err()[1].count("not an email message") == 1, r.show()
    # The feed: a cursor beyond the end is an error, the end itself is fine.
    doc = expect(svc.req("GET", "/v1/activities?limit=1000", admin), 200)
    end = int(doc["next_cursor"])
    expect(svc.req("GET", f"/v1/activities?since={end}", admin), 200)
    expect_input(svc.req("GET", f"/v1/activities?since={end + 1000000}", admin), "cursor")
    # Reactivation: PATCH {"active": true} brings the user back with a new token.
    gone = svc.users["gone"]
    expect(svc.req("DELETE", f"/v1/users/{gone['id']}", admin), 204)
    expect(svc.req("GET", "/v1/smtp", gone["token"]), 401)
    r = svc.req("PATCH", f"/v1/users/{gone['id']}", admin, {"active": True})
    doc = expect(r, 200)
    assert doc["active"] is True and isinstance(doc.get("token"), str), r.show()
    expect(svc.req("GET", "/v1/smtp", doc["token"]), 200)
    expect(svc.req("GET", "/v1/smtp", gone["token"]), 401)  # the old token stays revoked
    r = svc.req("PATCH", f"/v1/users/{gone['id']}", admin, {"active": True})
    assert "token" not in expect(r, 200), "an already active user got a new token" + r.show()
    # Limits set by PATCH survive a re-save that does not name limits.
    ca = sinks["ca"]
    t = svc.tok("rec2")
    limits = [{"limit": 7, "window": "minute"}, {"limit": 70, "window": "day"}]
    expect(svc.req("PATCH", "/v1/smtp", t, {"limits": limits}), 200)
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(ca.port_starttls, REC2,
                                              tls_fingerprint=rig.cert_sha256(svc.certs.server_cert)))
    expect(r, 200)
    assert expect(svc.req("GET", "/v1/smtp", t), 200)["limits"] == limits
    # After DELETE the password is gone: a PUT without it says it is required, plainly.
    expect(svc.req("DELETE", "/v1/smtp", t), 204)
    r = svc.req("PUT", "/v1/smtp", t, smtp_body(ca.port_starttls, REC2, password=None))
    expect_input(r, "password is required")
    assert "reused" not in r.err()[1], r.show()


@contextlib.contextmanager
def silent_server():
    """A loopback port that accepts and never says a word; yields (port, the held sockets)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
                held.append(conn)  # keep it open, say nothing
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield port, held
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        lsock.close()


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def case_pipelined_input_no_spin(svc, sinks):
    """A client sends more than the read-ahead (64 KiB) behind a request whose handler waits (a
    live check against a silent port): the service stops reading that connection instead of
    being called back for the unread input again and again (libevent re-runs the read callback
    while the input is over its high watermark and reading is on: a core spun for as long as
    the handler waited)."""
    with silent_server() as (port, held):
        body = json.dumps(smtp_body(port, REC)).encode()
        head = (f"PUT /v1/smtp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {svc.tok('rec')}"
                f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        sock = socket.create_connection(("127.0.0.1", svc.port), timeout=15)
        try:
            sock.sendall(head.encode() + body)
            deadline = time.monotonic() + 5
            while not held and time.monotonic() < deadline:
                time.sleep(0.02)
            assert held, "the live check did not connect"
            # The next "request" comes early: more than the service reads ahead.
            ahead = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (256 * 1024)
            sock.setblocking(False)
            sent = 0
            with contextlib.suppress(BlockingIOError):
                while sent < len(ahead):
                    sent += sock.send(ahead[sent:])
            sock.setblocking(True)
            time.sleep(0.3)
            cpu0, t0 = proc_cpu_s(svc.proc.pid), time.monotonic()
            time.sleep(2)
            cpu = proc_cpu_s(svc.proc.pid) - cpu0
            wall = time.monotonic() - t0
            assert sent > 64 * 1024, f"only {sent} bytes went ahead"
            assert cpu < 0.3, (f"the service used {cpu:.2f} s of CPU in {wall:.1f} s while one "
                               "request waited with its connection's input full")
            print(f"     {sent >> 10} KiB sent ahead of the reply: {cpu:.2f} s of CPU in "
                  f"{wall:.1f} s while the handler waited")
        finally:
            sock.close()


def case_silent_server(svc, sinks):
    """A port that accepts and never says a word: the live check gives up within 10 s (its
    greeting step), not after the whole 30 s deadline."""
    with silent_server() as (port, held):
        # Four checks hold the org's live-check slots for their 10 s; a fifth is 429 at once,
        # with Retry-After.
        results = []
        workers = [threading.Thread(target=lambda: results.append(
            svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(port, REC)))) for _ in range(4)]
        t0 = time.monotonic()
        for w in workers:
            w.start()
        deadline = time.monotonic() + 5
        while len(held) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(held) >= 4, f"only {len(held)} checks connected"
        r = svc.req("PUT", "/v1/smtp", svc.tok("rec"), smtp_body(port, REC))
        expect(r, 429, "throttle")
        retry = dict((k.lower(), v) for k, v in r.headers).get("retry-after")
        assert retry is not None and int(retry) > 0, "a 429 without Retry-After" + r.show()
        for w in workers:
            w.join(30)
        took = time.monotonic() - t0
        assert len(results) == 4, results
        for r in results:
            expect(r, 422)
        assert took < 11.5, f"the live checks against a silent port took {took:.1f} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (printed)")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    if not os.access(os.path.join(a.bin_dir, "mailtrail"), os.X_OK):
        print(f"FAIL setup: {a.bin_dir}/mailtrail is not built\n0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-hardening-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        sinks = {
            "ca": stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "sink-ca"),
                                                    user=REC2, password=PASSWORD, plain=False)),
            "selfsigned": stack.enter_context(rig.auth_sink(
                certs, os.path.join(tmp, "sink-ss"), user=REC, password=PASSWORD, tls=False,
                plain=False, cert=certs.selfsigned_cert, key=certs.selfsigned_key)),
        }
        svc = Service(a.bin_dir, tmp, certs=certs, env={"MAILTRAIL_LOG_LEVEL": "info"})
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, sinks)
        r.only = only
        if r.failed:
            print("setup failed; the other cases need it\n" + svc.log_tail())
            return r.exit_code()
        cases = [
            ("pinned_self_signed_delivers", case_pinned_self_signed),
            ("password_kept_for_same_destination_only", case_password_same_destination_only),
            ("csv_invalid_utf8_and_nul_rejected", case_csv_utf8),
            ("custom_smtp_off_stops_custom", case_custom_smtp_off),
            ("features_not_built_refused", case_features_not_built),
            ("small_ones", case_small_ones),
            ("live_check_silent_server_within_10s", case_silent_server),
            ("pipelined_input_no_spin", case_pipelined_input_no_spin),
        ]
        for name, fn in cases:
            r.run(name, fn, svc, sinks)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        if a.keep:
            import shutil
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
