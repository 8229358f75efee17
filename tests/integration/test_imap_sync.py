#!/usr/bin/python3
"""IMAP auto sync against the rig's Dovecot (issue 14).

  setup               org with imap_sync on, a recruiter, profiles, an org never-log entry
  wrong_password      PUT /v1/imap with a wrong password: 422, nothing stored (own Dovecot)
  feature_off         PUT with the org's imap_sync off: 403
  put_ok              PUT: 200 connected, INBOX and Sent with their roles; GET shows cursors
  first_sync          INBOX and Sent mail from/to profiles, strangers, several profiles, a
                      never-log address, internal-only mail, no Message-ID, encoded-word names,
                      attachments -> exactly the expected activities; mail stays unread
  resync_idempotent   a second and third sync add nothing
  push                an APPEND to INBOX shows up on the timeline without a manual sync
  sent_push           an APPEND to Sent shows up too (the second connection IDLEs on Sent;
                      polling would take a minute)
  feature_switch      the org's imap_sync turned off while sync runs: the session stops at
                      once, mail meanwhile is not logged; turned on: it starts, the mail is
                      logged
  stalled_server      another account behind a proxy that accepts and never greets (its
                      session reconnects into it): Rita's push still arrives
  group_wait          800 messages through a proxy passing 100 KB/s: the chunks converted while
                      the last is still coming are committed after the 1 s group wait, not
                      together with it
  hostile_host        12 accounts on a host that greets and then never answers: their second
                      connections (Sent) come back into it holding the host's login slots, at
                      most 8 opened there; their passes go on; Rita's push still arrives
  one_connection      imap_max_connections 1: one connection, INBOX pushed, Sent on a sync
  modseq_reconnect    a server without UIDNEXT (a proxy strips it), CONDSTORE: a reconnect with
                      HIGHESTMODSEQ unchanged sends no UID SEARCH/FETCH; mail meanwhile: it does
  outage              6,000 new messages, the session kicked mid-sync: it reconnects and
                      catches up from the cursor, nothing missed or doubled
  dovecot_restart     6,000 new messages; the whole Dovecot stopped mid-sync and started again
                      (same ports, same mail): nothing missed or doubled
  uidvalidity         INBOX rebuilt (new UIDVALIDITY) with the same mail + 2 new: exactly 2 new
  uidvalidity_live    the same while sync runs (no DELETE / PUT): Dovecot stopped, INBOX's uid
                      list and indexes removed, started again, 2 new: exactly 2 new activities
  password_changed    password changed at Dovecot and the session kicked: one notification,
                      state disconnected; saved again: the mail that arrived meanwhile is logged
  delete_mid_sync     6,000 new messages; DELETE /v1/imap while chunks are being fetched,
                      converted on the workers and stored: the session stops at once (no
                      crash, no sanitizer report); saved again: every message logged once
  delete              DELETE: 204, state off, no secret; sync refused (409)
  log_clean           no sanitizer report and no IMAP password in the log or the data dir

Run: /usr/bin/python3 tests/integration/test_imap_sync.py --bin-dir build
"""
import argparse
import contextlib
import email.utils
import glob
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import dovecot  # noqa: E402
import rig  # noqa: E402
from service import Service, expect, urlquote  # noqa: E402

ORG_DOMAIN = "staffing.example"
ADMIN = "admin@" + ORG_DOMAIN
RITA = "rita@" + ORG_DOMAIN          # the recruiter whose mailbox is synced
MAILBOX_USER = "rita"
MAILBOX_PW = "rita-imap-pw"
BOB_PW = "bob-imap-pw"
SOLO_PW = "solo-imap-pw"
SINCE_PW = "since-imap-pw"
# A pass that the cases interrupt mid-sync (outage, dovecot_restart, delete_mid_sync) must
# commit in several steps that the poll can see between: three transactions of
# MT_IMAP_SYNC_STORE_GROUP x MT_IMAP_SYNC_CHUNK (10 x 200) messages.
MID_SYNC_MESSAGES = 6000
NEW_PW = "rita-new-pw"
NOW = int(time.time())


def new_mid(tag="m"):
    return f"{tag}.{uuid.uuid4().hex}@test.mailtrail.example"


def make_msg(frm, to=(), cc=(), subject="Hello", mid="auto", text="Hi there,\nthis is a test.\n",
             date=None, attachment=None):
    if mid == "auto":
        mid = new_mid()
    h = [f"From: {frm}"]
    if to:
        h.append("To: " + ", ".join(to))
    if cc:
        h.append("Cc: " + ", ".join(cc))
    h.append(f"Subject: {subject}")
    h.append("Date: " + email.utils.formatdate(date or NOW - 3600, usegmt=True))
    if mid is not None:
        h.append(f"Message-ID: <{mid}>")
    h.append("MIME-Version: 1.0")
    body = text.replace("\n", "\r\n")
    if attachment is None:
        h += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
        return ("\r\n".join(h) + "\r\n\r\n" + body).encode()
    name, ctype = attachment
    h.append('Content-Type: multipart/mixed; boundary="BOUNDARY"')
    parts = ("--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n"
             f"--BOUNDARY\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n"
             f"Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n"
             "JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoK\r\n"
             "--BOUNDARY--\r\n")
    return ("\r\n".join(h) + "\r\n\r\n" + parts).encode()


def timeline(svc, who, pid):
    r = svc.req("GET", f"/v1/profiles/{pid}/activities?limit=1000", svc.tok(who))
    return expect(r, 200)["activities"]


def feed(svc, who):
    out, since = [], None
    for _ in range(100):
        path = "/v1/activities?limit=1000" + (("&since=" + urlquote(since)) if since else "")
        doc = expect(svc.req("GET", path, svc.tok(who)), 200)
        out.extend(doc["activities"])
        since = doc["next_cursor"]
        if not doc["activities"]:
            return out
    return out


def imap_sources(acts):
    return [a for a in acts if a["source"] == "imap"]


def wait_until(what, fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def imap_get(svc):
    return expect(svc.req("GET", "/v1/imap", svc.tok("rita")), 200)


def put_imap(svc, dc, password=MAILBOX_PW, status=200, **extra):
    body = {"host": dc.host, "port": dc.imap_port, "security": "starttls",
            "username": MAILBOX_USER, "since": time.strftime("%Y-%m-%d",
                                                             time.gmtime(NOW - 7 * 86400))}
    if password is not None:
        body["password"] = password
    body.update(extra)
    return expect(svc.req("PUT", "/v1/imap", svc.tok("rita"), body), status)


def wait_synced(svc, since_ts):
    """Waits until GET /v1/imap shows a completed pass after since_ts."""
    def done():
        doc = imap_get(svc)
        t = doc.get("last_sync_at")
        if t and time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone >= since_ts:
            return doc
        return None
    return wait_until("a completed sync", done)


def sync_now(svc):
    time.sleep(1.05)  # last_sync_at counts whole seconds: the pass must be a new one
    t = int(time.time())
    expect(svc.req("POST", "/v1/imap/sync", svc.tok("rita")), 202)
    return wait_synced(svc, t)


def case_setup(svc, ctx):
    a = svc.init("Sync Org", ADMIN)
    svc.users["admin"] = {"id": a["user_id"], "token": a["token"], "email": ADMIN}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("admin"),
                   {"domains": [ORG_DOMAIN], "features": {"imap_sync": True}}), 200)
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": RITA, "name": "Rita Recruiter", "role": "user"}), 201)
    svc.users["rita"] = {"id": doc["id"], "token": doc["token"], "email": RITA}
    p = {}
    for key, emails in (("jack", ["jack@cand.example"]), ("jill", ["jill@cand.example"]),
                        ("shared1", ["team@client.example"]), ("shared2", ["team@client.example"]),
                        ("hidden", ["hidden@secret.example"]), ("zoe", ["zoe@cand.example"]),
                        ("nomid", ["nomid@cand.example"]), ("push", ["push@cand.example"]),
                        ("late", ["late@cand.example"])):
        r = svc.req("POST", "/v1/profiles", svc.tok("rita"),
                    {"kind": "applicant", "name": key.title(), "emails": emails})
        p[key] = expect(r, 201)["id"]
    ctx["p"] = p
    expect(svc.req("PUT", "/v1/never-log", svc.tok("admin"),
                   {"scope": "org", "entries": ["secret.example"]}), 200)


def case_wrong_password(svc, ctx):
    with dovecot.dovecot(ctx["certs"], os.path.join(ctx["tmp"], "dovecot-wrong"),
                         users={MAILBOX_USER: MAILBOX_PW}) as other:
        r = svc.req("PUT", "/v1/imap", svc.tok("rita"),
                    {"host": other.host, "port": other.imap_port, "security": "starttls",
                     "username": MAILBOX_USER, "password": "not-the-password"})
        expect(r, 422, "auth")
        assert "not-the-password" not in r.body.decode(errors="replace"), r.show()
    doc = imap_get(svc)
    assert doc["state"] == "off" and doc["host"] is None and doc["folders"] == [], doc


def case_feature_off(svc, ctx):
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"imap_sync": False}), 200)
    r = svc.req("PUT", "/v1/imap", svc.tok("rita"),
                {"host": ctx["dc"].host, "port": ctx["dc"].imap_port, "security": "starttls",
                 "username": MAILBOX_USER, "password": MAILBOX_PW})
    expect(r, 403)
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"imap_sync": True}), 200)
    assert imap_get(svc)["state"] == "off"


def seed_mail(dc):
    """The first sync's corpus; returns {profile key: expected (type, subject) set}."""
    ins = [
        # from a profile to the recruiter
        (make_msg("Jack <jack@cand.example>", [RITA], subject="Jack writes"), "INBOX"),
        # a stranger: no profile, no activity
        (make_msg("nobody@stranger.example", [RITA], subject="Stranger"), "INBOX"),
        # several matching profiles (two share an address) and Cc
        (make_msg("team@client.example", [RITA], cc=["jill@cand.example"],
                  subject="Team update"), "INBOX"),
        # never-log: a participant on the org's list hides the whole message
        (make_msg("hidden@secret.example", [RITA], cc=["jack@cand.example"],
                  subject="Secret"), "INBOX"),
        # internal only
        (make_msg(ADMIN, [RITA], subject="Internal"), "INBOX"),
        # no Message-ID
        (make_msg("nomid@cand.example", [RITA], subject="No id", mid=None), "INBOX"),
        # encoded-word name and subject, and an attachment
        (make_msg("=?UTF-8?B?Wm/DqyBaw7xyY2hlcg==?= <zoe@cand.example>", [RITA],
                  subject="=?UTF-8?Q?R=C3=A9sum=C3=A9_attached?=",
                  attachment=("cv.pdf", "application/pdf")), "INBOX"),
        # Sent: the recruiter to a profile
        (make_msg(f"Rita <{RITA}>", ["jack@cand.example"], subject="Offer for Jack"), "Sent"),
        # Sent: to a stranger
        (make_msg(RITA, ["x@stranger.example"], subject="Cold mail"), "Sent"),
        # old mail before `since`: not logged
        (make_msg("jill@cand.example", [RITA], subject="Too old", date=NOW - 60 * 86400),
         "INBOX"),
    ]
    for raw, box in ins:
        date = NOW - 60 * 86400 if b"Too old" in raw else None
        dc.append(MAILBOX_USER, box, raw, date=date)


def case_put_ok(svc, ctx):
    dc = ctx["dc"]
    seed_mail(dc)
    doc = put_imap(svc, dc)
    assert doc["state"] == "connected", doc
    roles = {f["name"]: f["role"] for f in doc["folders"]}
    assert roles == {"INBOX": "inbox", "Sent": "sent"}, doc
    g = imap_get(svc)
    assert g["state"] == "connected" and g["username"] == MAILBOX_USER, g
    assert "password" not in g and MAILBOX_PW not in str(g), g


def case_first_sync(svc, ctx):
    p = ctx["p"]
    doc = wait_synced(svc, NOW - 5)
    folders = {f["name"]: f for f in doc["folders"]}
    assert folders["INBOX"]["uidvalidity"] > 0 and folders["INBOX"]["last_uid"] == 8, doc
    assert folders["Sent"]["last_uid"] == 2, doc
    assert doc["last_error"] is None and doc["lag_seconds"] is not None, doc

    def kinds(key):
        return sorted((a["type"], a["subject"]) for a in imap_sources(timeline(svc, "rita", p[key])))
    assert kinds("jack") == [("email_received", "Jack writes"), ("email_sent", "Offer for Jack")], kinds("jack")
    assert kinds("jill") == [("email_received", "Team update")], kinds("jill")
    assert kinds("shared1") == [("email_received", "Team update")], kinds("shared1")
    assert kinds("shared2") == [("email_received", "Team update")], kinds("shared2")
    assert kinds("hidden") == [], kinds("hidden")
    assert kinds("nomid") == [("email_received", "No id")], kinds("nomid")
    z = imap_sources(timeline(svc, "rita", p["zoe"]))
    assert len(z) == 1, z
    z = z[0]
    assert z["subject"] == "Résumé attached", z
    assert z["from"]["address"] == "zoe@cand.example" and z["from"]["name"] == "Zoë Zürcher", z
    assert [(x["name"], x["type"]) for x in z["attachments"]] == [("cv.pdf", "application/pdf")], z
    assert z["snippet"].startswith("Hi there"), z
    assert [u["id"] for u in z["users"]] == [svc.users["rita"]["id"]], z
    offer = [a for a in timeline(svc, "rita", p["jack"]) if a["subject"] == "Offer for Jack"][0]
    assert offer["to"][0]["address"] == "jack@cand.example" and offer["message_id"], offer
    total = len(imap_sources(feed(svc, "rita")))
    assert total == 7, f"expected 7 IMAP activities in the feed, got {total}"
    ctx["total"] = total
    metrics = svc.req("GET", "/metrics").text
    for name in ("mailtrail_imap_messages_total", "mailtrail_imap_activities_total",
                 "mailtrail_imap_sync_sessions"):
        assert name in metrics, f"{name} missing from /metrics"
    flags = ctx["dc"].message_flags(MAILBOX_USER, "INBOX")
    assert flags and all("\\Seen" not in f for f in flags.values()), flags
    flags = ctx["dc"].message_flags(MAILBOX_USER, "Sent")
    assert all("\\Seen" not in f for f in flags.values()), flags


def case_resync_idempotent(svc, ctx):
    for _ in range(2):
        sync_now(svc)
        assert len(imap_sources(feed(svc, "rita"))) == ctx["total"]


def case_push(svc, ctx):
    p = ctx["p"]
    ctx["dc"].append(MAILBOX_USER, "INBOX",
                     make_msg("push@cand.example", [RITA], subject="Pushed"))
    got = wait_until("the pushed mail on the timeline",
                     lambda: imap_sources(timeline(svc, "rita", p["push"])), timeout=10)
    assert [a["subject"] for a in got] == ["Pushed"], got
    ctx["total"] += 1
    text = svc.req("GET", "/metrics").text
    count = [float(l.split()[-1]) for l in text.splitlines()
             if l.startswith("mailtrail_imap_sync_lag_seconds_count")]
    assert count and count[0] >= 1, "no sync lag observed for the pushed mail"
    assert "# TYPE mailtrail_imap_sync_lag_seconds histogram" in text
    assert 'mailtrail_imap_sync_lag_seconds_bucket{le="+Inf"}' in text


def case_sent_push(svc, ctx):
    p = ctx["p"]
    ctx["dc"].append(MAILBOX_USER, "Sent",
                     make_msg(RITA, ["push@cand.example"], subject="Pushed to Sent"))
    got = wait_until("the Sent mail on the timeline",
                     lambda: [a for a in imap_sources(timeline(svc, "rita", p["push"]))
                              if a["subject"] == "Pushed to Sent"], timeout=15)
    assert got[0]["type"] == "email_sent", got
    ctx["total"] += 1


def sessions_in(svc, state):
    text = svc.req("GET", "/metrics").text
    for line in text.splitlines():
        if line.startswith(f'mailtrail_imap_sync_sessions{{state="{state}"}}'):
            return float(line.split()[-1])
    return 0.0


def case_feature_switch(svc, ctx):
    p = ctx["p"]
    wait_until("Rita watching", lambda: sessions_in(svc, "watching") >= 1)
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"imap_sync": False}), 200)
    wait_until("the session stopped", lambda: sessions_in(svc, "watching") == 0
               and sessions_in(svc, "syncing") == 0 and sessions_in(svc, "waiting") == 0,
               timeout=5)
    ctx["dc"].append(MAILBOX_USER, "INBOX",
                     make_msg("push@cand.example", [RITA], subject="While off"))
    time.sleep(2)
    assert not [a for a in imap_sources(timeline(svc, "rita", p["push"]))
                if a["subject"] == "While off"], "logged while the org's imap_sync was off"
    expect(svc.req("PUT", "/v1/org/features", svc.tok("admin"), {"imap_sync": True}), 200)
    wait_until("the mail of the off period",
               lambda: [a for a in imap_sources(timeline(svc, "rita", p["push"]))
                        if a["subject"] == "While off"], timeout=15)
    wait_until("Rita watching again", lambda: sessions_in(svc, "watching") >= 1)
    ctx["total"] += 1


class StallProxy:
    """A TCP proxy to Dovecot that can turn hostile: once `stall` is set, it accepts new
    connections and never sends a byte (no greeting); with `stall = "greet"` it sends an IMAP
    greeting and then never answers. Relayed connections are kept in accept order while open."""

    def __init__(self, port, host="127.0.0.1"):
        self.target = port
        self.rate = None  # bytes a second from the server to the client; None: as they come
        self.stall = False
        self.stalled = []
        self.relayed = []  # [client, upstream] pairs, in accept order, while both are open
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.stall:
                if self.stall == "greet":
                    try:
                        c.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\r\n")
                    except OSError:
                        pass
                self.stalled.append(c)
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            pair = [c, u]
            with self.lock:
                self.relayed.append(pair)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b, pair), daemon=True).start()

    def _pump(self, a, b, pair):
        slow = self.rate is not None and a is pair[1]
        try:
            while True:
                data = a.recv(4096 if slow else 65536)
                if not data:
                    break
                b.sendall(data)
                if slow:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            if pair in self.relayed:
                self.relayed.remove(pair)

    def open_relayed(self):
        with self.lock:
            return list(self.relayed)

    @staticmethod
    def cut(pair):
        for x in pair:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closing = True
        self.sock.close()
        for c in self.stalled:
            c.close()
        for pair in self.open_relayed():
            self.cut(pair)


def case_stalled_server(svc, ctx):
    dc, p = ctx["dc"], ctx["p"]
    doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                         {"email": "bob@" + ORG_DOMAIN, "name": "Bob", "role": "user"}), 201)
    svc.users["bob"] = {"id": doc["id"], "token": doc["token"], "email": "bob@" + ORG_DOMAIN}
    proxy = StallProxy(dc.imap_port)
    try:
        body = {"host": dc.host, "port": proxy.port, "security": "starttls",
                "username": "bob", "password": BOB_PW}
        expect(svc.req("PUT", "/v1/imap", svc.tok("bob"), body), 200)
        wait_until("both watching", lambda: sessions_in(svc, "watching") >= 2)
        proxy.stall = True
        subprocess.run(["doveadm", "-c", dc.conf, "kick", "bob"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)
        wait_until("Bob's session stuck on a silent server", lambda: len(proxy.stalled) >= 1)
        for i in range(2):
            subject = f"Despite the stalled server {i}"
            dc.append(MAILBOX_USER, "INBOX", make_msg("push@cand.example", [RITA],
                                                      subject=subject))
            wait_until("Rita's mail while Bob's server stalls",
                       lambda: [a for a in imap_sources(timeline(svc, "rita", p["push"]))
                                if a["subject"] == subject], timeout=10)
            ctx["total"] += 1
        assert len(proxy.stalled) >= 1
        expect(svc.req("DELETE", "/v1/imap", svc.tok("bob")), 204)
    finally:
        proxy.close()


def case_group_wait(svc, ctx):
    """A server slow to answer (the proxy passes 100 KB/s to us, ~3 s a chunk of 200 answers):
    the chunks converted while the next one is still coming are committed once they have waited
    MT_IMAP_SYNC_GROUP_WAIT_MS (1 s), not only when that chunk's answer ends. Four chunks: the
    first three are fetched together (MT_IMAP_SYNC_FETCHES; behind this proxy Dovecot's answers
    to them end together, where unthrottled they end one at a time), the fourth alone after them. Without the bound all four would land in
    one commit and no count between 0 and 800 would show."""
    dc, n = ctx["dc"], 800
    bob = svc.tok("bob")

    def bob_inbox():
        doc = expect(svc.req("GET", "/v1/imap", bob), 200)
        return [f for f in doc.get("folders", []) if f["name"] == "INBOX"]

    start = (bob_inbox() or [{"messages_synced": 0}])[0]["messages_synced"]
    dc.fill_maildir("bob", "INBOX", (make_msg("slow@cand.example", ["bob@" + ORG_DOMAIN],
                                              subject=f"Slow {i}", text="y" * 1000 + "\n")
                                     for i in range(n)))
    proxy = StallProxy(dc.imap_port)
    proxy.rate = 100_000
    try:
        body = {"host": dc.host, "port": proxy.port, "security": "starttls",
                "username": "bob", "password": BOB_PW, "folders": ["INBOX"]}
        expect(svc.req("PUT", "/v1/imap", bob, body), 200)
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            f = bob_inbox()
            done = f[0]["messages_synced"] - start if f else 0
            if not seen or seen[-1] != done:
                seen.append(done)
            if done >= n:
                break
            time.sleep(0.05)
        assert seen and seen[-1] == n, f"not synced through the slow server: {seen}"
        assert any(0 < x < n for x in seen), f"the converted chunks waited for the last: {seen}"
        print(f"     (messages_synced went {seen})", flush=True)
    finally:
        expect(svc.req("DELETE", "/v1/imap", bob), 204)
        proxy.close()


def inbox_synced(svc):
    return [f for f in imap_get(svc)["folders"] if f["name"] == "INBOX"][0]["messages_synced"]


def case_outage(svc, ctx):
    """6,000 messages arrive; the session is kicked mid-sync: it reconnects and catches up from
    the cursor, nothing missed or doubled."""
    n = MID_SYNC_MESSAGES
    pid = expect(svc.req("POST", "/v1/profiles", svc.tok("rita"),
                         {"kind": "contact", "name": "Bulk", "emails": ["bulk@cand.example"]}), 201)["id"]
    start = inbox_synced(svc)
    ctx["dc"].fill_maildir(MAILBOX_USER, "INBOX",
                           (make_msg("bulk@cand.example", [RITA], subject=f"Bulk {i}")
                            for i in range(n)))
    kicked = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = inbox_synced(svc) - start
        if 0 < done < n:
            subprocess.run(["doveadm", "-c", ctx["dc"].conf, "kick", MAILBOX_USER],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            kicked = True
            break
        if done >= n:
            break
        time.sleep(0.02)
    wait_until("every bulk message synced", lambda: inbox_synced(svc) - start >= n, timeout=60)
    acts = [a for a in feed(svc, "rita") if a["profile_id"] == pid]
    assert len(acts) == n, f"{len(acts)} activities for {n} messages (kicked mid-sync: {kicked})"
    assert len({a["subject"] for a in acts}) == n
    total = len(imap_sources(feed(svc, "rita")))
    assert total == ctx["total"] + n, (total, ctx["total"])
    ctx["total"] = total
    print(f"     (kicked mid-sync: {kicked})", flush=True)


def case_dovecot_restart(svc, ctx):
    """6,000 messages arrive; Dovecot itself goes down mid-sync and comes back on the same
    ports with the same mail: the session reconnects (back-off) and catches up from the cursor,
    nothing missed or doubled."""
    dc, n = ctx["dc"], MID_SYNC_MESSAGES
    pid = expect(svc.req("POST", "/v1/profiles", svc.tok("rita"),
                         {"kind": "contact", "name": "Bulk2", "emails": ["bulk2@cand.example"]}),
                 201)["id"]
    start = inbox_synced(svc)
    dc.fill_maildir(MAILBOX_USER, "INBOX",
                    (make_msg("bulk2@cand.example", [RITA], subject=f"Restart {i}")
                     for i in range(n)))
    stopped_at = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = inbox_synced(svc) - start
        if 0 < done < n:
            dc.stop()
            stopped_at = done
            break
        if done >= n:
            break
        time.sleep(0.02)
    if stopped_at is not None:
        time.sleep(1.5)  # the session notices, backs off and fails against a closed port
        assert inbox_synced(svc) - start < n
        dc.start()
    wait_until("every message synced after the restart",
               lambda: inbox_synced(svc) - start >= n, timeout=90)
    acts = [a for a in feed(svc, "rita") if a["profile_id"] == pid]
    assert len(acts) == n, f"{len(acts)} activities for {n} messages (stopped at {stopped_at})"
    assert len({a["subject"] for a in acts}) == n
    total = len(imap_sources(feed(svc, "rita")))
    assert total == ctx["total"] + n, (total, ctx["total"])
    ctx["total"] = total
    assert stopped_at is not None, "the sync finished before Dovecot could be stopped"
    print(f"     (stopped after {stopped_at} of {n})", flush=True)


def case_uidvalidity_live(svc, ctx):
    """UIDVALIDITY changes under a running sync (no DELETE and PUT around it)."""
    dc = ctx["dc"]
    wait_until("Rita watching", lambda: sessions_in(svc, "watching") >= 1)
    old = [f for f in imap_get(svc)["folders"] if f["name"] == "INBOX"][0]["uidvalidity"]
    dc.stop()
    box = dc.maildir(MAILBOX_USER, "INBOX")
    for pattern in ("dovecot-uidlist", "dovecot-uidvalidity*", "dovecot.index*"):
        for f in glob.glob(os.path.join(box, pattern)):
            os.unlink(f)
    time.sleep(1.1)  # a new UIDVALIDITY is the time in seconds
    dc.start()
    dc.append(MAILBOX_USER, "INBOX", make_msg("jill@cand.example", [RITA], subject="Live one"))
    dc.append(MAILBOX_USER, "INBOX", make_msg("jack@cand.example", [RITA], subject="Live two"))

    def rescanned():
        f = [f for f in imap_get(svc)["folders"] if f["name"] == "INBOX"][0]
        return f["uidvalidity"] != old and f["last_uid"] >= len(dc.uids(MAILBOX_USER)) and f
    wait_until("the INBOX re-scanned under its new UIDVALIDITY", rescanned, timeout=60)
    time.sleep(1)
    total = len(imap_sources(feed(svc, "rita")))
    assert total == ctx["total"] + 2, f"expected exactly 2 new activities, got {total - ctx['total']}"
    subjects = {a["subject"] for a in imap_sources(feed(svc, "rita"))}
    assert {"Live one", "Live two"} <= subjects
    ctx["total"] = total


def case_uidvalidity(svc, ctx):
    dc = ctx["dc"]
    before = imap_get(svc)
    old = [f for f in before["folders"] if f["name"] == "INBOX"][0]["uidvalidity"]
    expect(svc.req("DELETE", "/v1/imap", svc.tok("rita")), 204)
    box = dc.maildir(MAILBOX_USER, "INBOX")
    for pattern in ("dovecot-uidlist", "dovecot-uidvalidity*", "dovecot.index*"):
        for f in glob.glob(os.path.join(box, pattern)):
            os.unlink(f)
    time.sleep(1.1)  # a new UIDVALIDITY is the time in seconds
    dc.append(MAILBOX_USER, "INBOX", make_msg("jill@cand.example", [RITA], subject="New one"))
    dc.append(MAILBOX_USER, "INBOX", make_msg("jack@cand.example", [RITA], subject="New two"))
    t = int(time.time())
    put_imap(svc, dc)
    doc = wait_synced(svc, t)
    now = [f for f in doc["folders"] if f["name"] == "INBOX"][0]["uidvalidity"]
    assert now != old, f"UIDVALIDITY did not change ({old})"
    total = len(imap_sources(feed(svc, "rita")))
    assert total == ctx["total"] + 2, f"expected exactly 2 new activities, got {total - ctx['total']}"
    ctx["total"] = total


def notifications(svc):
    return expect(svc.req("GET", "/v1/notifications", svc.tok("rita")), 200)["notifications"]


def case_password_changed(svc, ctx):
    dc = ctx["dc"]
    with open(os.path.join(ctx["dc_dir"], "users"), "w") as f:
        f.write(f"{MAILBOX_USER}:{{PLAIN}}{NEW_PW}::::::\n")
    dc.users[MAILBOX_USER] = NEW_PW
    subprocess.run(["doveadm", "-c", dc.conf, "kick", MAILBOX_USER], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=10)
    doc = wait_until("state disconnected",
                     lambda: (lambda d: d if d["state"] == "disconnected" else None)(imap_get(svc)),
                     timeout=40)
    assert doc["last_error"] and "auth" in doc["last_error"], doc
    notes = [n for n in notifications(svc) if n["kind"] == "imap_disconnected"]
    assert len(notes) == 1, notes
    # Mail that arrives while disconnected
    dc.append(MAILBOX_USER, "INBOX", make_msg("late@cand.example", [RITA], subject="Meanwhile"))
    time.sleep(3)
    assert imap_sources(timeline(svc, "rita", ctx["p"]["late"])) == []
    assert len([n for n in notifications(svc) if n["kind"] == "imap_disconnected"]) == 1
    r = svc.req("POST", "/v1/imap/sync", svc.tok("rita"))
    expect(r, 409)
    put_imap(svc, dc, password=NEW_PW)
    got = wait_until("the mail that arrived meanwhile",
                     lambda: imap_sources(timeline(svc, "rita", ctx["p"]["late"])), timeout=20)
    assert [a["subject"] for a in got] == ["Meanwhile"], got


def case_delete_mid_sync(svc, ctx):
    """The account turned off while its chunks are on the workers and in the store: what they
    finish changes nothing, and the next save goes on from the cursor."""
    dc, n = ctx["dc"], MID_SYNC_MESSAGES
    pid = expect(svc.req("POST", "/v1/profiles", svc.tok("rita"),
                         {"kind": "contact", "name": "Bulk3", "emails": ["bulk3@cand.example"]}),
                 201)["id"]
    start = inbox_synced(svc)
    before = len(imap_sources(feed(svc, "rita")))
    dc.fill_maildir(MAILBOX_USER, "INBOX",
                    (make_msg("bulk3@cand.example", [RITA], subject=f"Deleted {i}")
                     for i in range(n)))
    deleted_at = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = inbox_synced(svc) - start
        if 0 < done < n:
            expect(svc.req("DELETE", "/v1/imap", svc.tok("rita")), 204)
            deleted_at = done
            break
        if done >= n:
            break
        time.sleep(0.01)
    assert deleted_at is not None, "the sync finished before the account could be deleted"
    wait_until("the session stopped", lambda: sessions_in(svc, "syncing") == 0
               and sessions_in(svc, "watching") == 0, timeout=5)
    time.sleep(0.5)  # what was on the workers and in the store completes meanwhile
    doc = imap_get(svc)
    assert doc["state"] == "off", doc
    expect(svc.req("GET", "/healthz"), 200)  # still serving
    put_imap(svc, dc, password=NEW_PW)
    wait_until("every message synced after the new save",
               lambda: [a for a in feed(svc, "rita") if a["profile_id"] == pid][n - 1:],
               timeout=60)
    time.sleep(0.5)
    acts = [a for a in feed(svc, "rita") if a["profile_id"] == pid]
    assert len(acts) == n, f"{len(acts)} activities for {n} messages (deleted at {deleted_at})"
    assert len({a["subject"] for a in acts}) == n
    total = len(imap_sources(feed(svc, "rita")))
    assert total == before + n, (total, before)
    ctx["total"] = total
    print(f"     (deleted after {deleted_at} of {n})", flush=True)


def case_delete(svc, ctx):
    expect(svc.req("DELETE", "/v1/imap", svc.tok("rita")), 204)
    doc = imap_get(svc)
    assert doc["state"] == "off", doc
    expect(svc.req("POST", "/v1/imap/sync", svc.tok("rita")), 409)
    # the password is gone: a save without one is refused
    r = svc.req("PUT", "/v1/imap", svc.tok("rita"),
                {"host": ctx["dc"].host, "port": ctx["dc"].imap_port, "security": "starttls",
                 "username": MAILBOX_USER})
    expect(r, 400)


HOSTILE_USERS = [f"hostile{i}" for i in range(12)]  # more than the per-host cap of logins
HOSTILE_PW = "hostile-imap-pw"
HOST_LOGINS_MAX = 8  # MT_IMAP_HOST_LOGINS_MAX (src/lib/limits.h)


def stable(fn, want, what, hold=0.6, timeout=20.0):
    """Waits until fn() == want and stays so for `hold` seconds."""
    deadline = time.monotonic() + timeout
    since = None
    while time.monotonic() < deadline:
        if fn() == want:
            since = since or time.monotonic()
            if time.monotonic() - since >= hold:
                return
        else:
            since = None
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {fn()!r}, want {want!r})")


def case_hostile_host(svc, ctx):
    """Twelve accounts on a host (127.0.0.2, a proxy to Dovecot) that turns into a server that
    greets and then never answers. Their second connections (IDLE on Sent) are cut and come
    back into the stall: like any login, they hold the host's login slots, so at most
    HOST_LOGINS_MAX of them are ever opened there; the accounts' passes go on (Sent polled),
    and Rita, on another host, still gets her push."""
    dc, p = ctx["dc"], ctx["p"]
    proxy = StallProxy(dc.imap_port, host="127.0.0.2")
    names = []
    try:
        for i, user in enumerate(HOSTILE_USERS):
            doc = expect(svc.req("POST", "/v1/users", svc.tok("admin"),
                                 {"email": f"{user}@{ORG_DOMAIN}", "name": user,
                                  "role": "user"}), 201)
            svc.users[user] = {"id": doc["id"], "token": doc["token"],
                               "email": f"{user}@{ORG_DOMAIN}"}
            names.append(user)
            body = {"host": "127.0.0.2", "port": proxy.port, "security": "starttls",
                    "username": user, "password": HOSTILE_PW}
            expect(svc.req("PUT", "/v1/imap", svc.tok(user), body), 200)
            # the live check's connection gone, INBOX and Sent connections open
            stable(lambda: len(proxy.open_relayed()), 2 * (i + 1), f"{user}'s two connections")
        relayed = proxy.open_relayed()
        # Each account opened INBOX's connection, then Sent's after its first pass.
        watches = relayed[1::2]
        proxy.stall = "greet"
        for pair in watches:
            StallProxy.cut(pair)
        stable(lambda: len(proxy.open_relayed()), len(HOSTILE_USERS), "the Sent connections cut")
        time.sleep(2.0)  # past the second connection's back-off (0.5-1.5 s)
        for user in HOSTILE_USERS:
            dc.append(user, "INBOX", make_msg("someone@elsewhere.example",
                                              [f"{user}@{ORG_DOMAIN}"], subject="Wake"))

        def passes_done():
            done = 0
            for user in HOSTILE_USERS:
                doc = expect(svc.req("GET", "/v1/imap", svc.tok(user)), 200)
                inbox = [f for f in doc["folders"] if f["name"] == "INBOX"][0]
                done += inbox["messages_synced"] >= 1
            return done
        stable(passes_done, len(HOSTILE_USERS), "every hostile account's pass", hold=0.1)
        time.sleep(1.0)  # the last passes' second connections, if any, reach the proxy
        assert len(proxy.stalled) == HOST_LOGINS_MAX, \
            f"{len(proxy.stalled)} connections into the stalled host (cap {HOST_LOGINS_MAX})"
        # the INBOX connections were not touched
        assert len(proxy.open_relayed()) == len(HOSTILE_USERS)
        subject = "Despite the hostile host"
        dc.append(MAILBOX_USER, "INBOX", make_msg("push@cand.example", [RITA], subject=subject))
        wait_until("Rita's mail while the hostile host stalls",
                   lambda: [a for a in imap_sources(timeline(svc, "rita", p["push"]))
                            if a["subject"] == subject], timeout=10)
        ctx["total"] += 1
    finally:
        for user in names:
            svc.req("DELETE", "/v1/imap", svc.tok(user))
        proxy.close()


class RewriteProxy:
    """A plaintext TCP proxy to Dovecot that records the client's command lines and, while
    `strip_uidnext` is set, drops the server's "* OK [UIDNEXT n]" lines (a server that sends no
    UIDNEXT: RFC 3501 servers exist that omit it); while `refuse` is set, it closes new
    connections at once."""

    def __init__(self, port):
        self.target = port
        self.strip_uidnext = True
        self.refuse = False
        self.commands = []
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.refuse:
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, False), daemon=True).start()

    def _pump(self, a, b, from_client):
        buf = b""
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                buf += data
                out = []
                while b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    if from_client:
                        with self.lock:
                            self.commands.append(line.decode(errors="replace"))
                    elif self.strip_uidnext and line.startswith(b"* OK [UIDNEXT "):
                        continue
                    out.append(line + b"\r\n")
                if out:
                    b.sendall(b"".join(out))
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def since(self, mark):
        with self.lock:
            return self.commands[mark:]

    def mark(self):
        with self.lock:
            return len(self.commands)

    def close(self):
        self.sock.close()
        with self.lock:
            for x in self.conns:
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def own_service_start(one, org, domain, user, candidate):
    """Starts a service of a case's own: an org of `domain` with imap_sync on, its admin, the
    user `user`@`domain` (one.users[user]) and a profile with the address `candidate`; the
    profile's id."""
    a = one.init(org, f"admin@{domain}")
    one.users["admin"] = {"id": a["user_id"], "token": a["token"]}
    one.start()
    expect(one.req("PUT", "/v1/org", one.tok("admin"),
                   {"domains": [domain], "features": {"imap_sync": True}}), 200)
    doc = expect(one.req("POST", "/v1/users", one.tok("admin"),
                         {"email": f"{user}@{domain}", "name": user.capitalize(),
                          "role": "user"}), 201)
    one.users[user] = {"id": doc["id"], "token": doc["token"]}
    return expect(one.req("POST", "/v1/profiles", one.tok(user),
                          {"kind": "applicant", "name": "Cand", "emails": [candidate]}),
                  201)["id"]


def case_modseq_reconnect(svc, ctx):
    """RFC 7162 (CONDSTORE): a server that sends no UIDNEXT (a proxy strips it from Dovecot's
    answers). A reconnect with HIGHESTMODSEQ unchanged since the last pass sends no UID SEARCH
    nor UID FETCH; with mail that came meanwhile (HIGHESTMODSEQ moved) it does, and logs it."""
    dc = ctx["dc"]
    tmp = os.path.join(ctx["tmp"], "modseq")
    os.makedirs(tmp)
    one = Service(ctx["bin_dir"], tmp, certs=ctx["certs"],
                  env={"MAILTRAIL_IMAP_MAX_CONNECTIONS": "1",
                       "MAILTRAIL_ALLOW_PLAINTEXT_AUTH": "yes"})
    proxy = RewriteProxy(dc.imap_port)
    try:
        pid = own_service_start(one, "Modseq Org", "solo.example", "solo", "modseq@cand.example")
        dc.append("solo", "INBOX", make_msg("modseq@cand.example", ["solo@solo.example"],
                                            subject="Before the first pass"))
        body = {"host": dc.host, "port": proxy.port, "security": "none",
                "username": "solo", "password": SOLO_PW}
        expect(one.req("PUT", "/v1/imap", one.tok("solo"), body), 200)

        def logged(subject):
            acts = expect(one.req("GET", f"/v1/profiles/{pid}/activities?limit=100",
                                  one.tok("solo")), 200)["activities"]
            return [x for x in acts if x["subject"] == subject]

        def inbox():
            doc = expect(one.req("GET", "/v1/imap", one.tok("solo")), 200)
            return [f for f in doc["folders"] if f["name"] == "INBOX"][0]

        def idle_after(mark):
            cmds = [c.split(" ", 1)[1] if " " in c else c for c in proxy.since(mark)]
            return cmds and cmds[-1] == "IDLE"

        wait_until("the first pass logged", lambda: logged("Before the first pass"))
        wait_until("IDLE after the first pass", lambda: idle_after(0))
        first = inbox()
        assert first["highestmodseq"] > 0, first
        assert not any("UIDNEXT" in c for c in proxy.since(0))

        def reconnect():
            mark = proxy.mark()
            subprocess.run(["doveadm", "-c", dc.conf, "kick", "solo"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
            wait_until("the reconnect's login", lambda: any(
                "EXAMINE" in c for c in proxy.since(mark)), timeout=30)
            wait_until("IDLE after the reconnect", lambda: idle_after(mark), timeout=30)
            return [c.split(" ", 1)[1] for c in proxy.since(mark) if " " in c]

        # Nothing changed: EXAMINE of each folder, then IDLE; no UID SEARCH, no UID FETCH.
        cmds = reconnect()
        assert [c for c in cmds if c.startswith("EXAMINE")], cmds
        assert not [c for c in cmds if c.startswith(("UID SEARCH", "UID FETCH"))], \
            (cmds, proxy.since(0), first, inbox())
        assert inbox()["highestmodseq"] == first["highestmodseq"]

        # Mail arrives while the session is away: HIGHESTMODSEQ moved, the pass searches.
        proxy.refuse = True
        mark = proxy.mark()
        subprocess.run(["doveadm", "-c", dc.conf, "kick", "solo"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        dc.append("solo", "INBOX", make_msg("modseq@cand.example", ["solo@solo.example"],
                                            subject="While away"))
        time.sleep(0.5)
        proxy.refuse = False
        wait_until("the mail that came meanwhile", lambda: logged("While away"), timeout=40)
        cmds = [c.split(" ", 1)[1] for c in proxy.since(mark) if " " in c]
        assert [c for c in cmds if c.startswith("UID SEARCH") and c.endswith(f" UID {first['last_uid'] + 1}:*")], cmds
        assert [c for c in cmds if c.startswith("UID FETCH")], cmds
        wait_until("IDLE after the catch-up", lambda: idle_after(mark), timeout=30)
        after = inbox()
        assert after["highestmodseq"] > first["highestmodseq"], (first, after)
        assert after["last_uid"] > first["last_uid"], (first, after)

        # And unchanged again: the cursor's new HIGHESTMODSEQ skips the next reconnect's search.
        cmds = reconnect()
        assert not [c for c in cmds if c.startswith(("UID SEARCH", "UID FETCH"))], \
            (cmds, proxy.since(0), first, after, inbox())
        assert len(logged("While away")) == 1
        text = one.log_text().decode(errors="replace")
        assert SOLO_PW not in text
        assert "Sanitizer" not in text and "runtime error" not in text, text[-3000:]
    finally:
        one.stop()
        proxy.close()


def case_since_paths(svc, ctx):
    """A first pass with `since` (30 days back): INBOX's oldest message is newer, so the pass
    takes every UID (UID SEARCH ALL) and passes over a message APPENDed later with an older
    INTERNALDATE by the date each answer carries; Sent's oldest is older, so the server's
    UID SEARCH SINCE picks the UIDs. Either way exactly the mail since `since` is logged."""
    dc = ctx["dc"]
    tmp = os.path.join(ctx["tmp"], "since")
    os.makedirs(tmp)
    one = Service(ctx["bin_dir"], tmp, certs=ctx["certs"],
                  env={"MAILTRAIL_ALLOW_PLAINTEXT_AUTH": "yes"})
    proxy = RewriteProxy(dc.imap_port)
    proxy.strip_uidnext = False
    try:
        pid = own_service_start(one, "Since Org", "since.example", "since", "dated@cand.example")
        me, cand, old = "since@since.example", "dated@cand.example", NOW - 90 * 86400
        for box, subject, date in (("INBOX", "Inbox recent 1", NOW - 3600),
                                   ("INBOX", "Inbox recent 2", NOW - 1800),
                                   ("INBOX", "Inbox imported old", old),
                                   ("INBOX", "Inbox recent 3", NOW - 600),
                                   ("Sent", "Sent old", old),
                                   ("Sent", "Sent recent", NOW - 900)):
            frm, to = (cand, [me]) if box == "INBOX" else (me, [cand])
            dc.append("since", box, make_msg(frm, to, subject=subject, date=date), date=date)
        body = {"host": dc.host, "port": proxy.port, "security": "none",
                "username": "since", "password": SINCE_PW}
        expect(one.req("PUT", "/v1/imap", one.tok("since"), body), 200)

        def subjects():
            acts = expect(one.req("GET", f"/v1/profiles/{pid}/activities?limit=100",
                                  one.tok("since")), 200)["activities"]
            return sorted(x["subject"] for x in acts)
        want = ["Inbox recent 1", "Inbox recent 2", "Inbox recent 3", "Sent recent"]
        wait_until("the first pass", lambda: subjects() == want, timeout=30)
        wait_until("the pass's end", lambda: expect(one.req("GET", "/v1/imap", one.tok("since")),
                                                    200).get("last_sync_at"), timeout=30)
        cmds = [c.split(" ", 1)[1] for c in proxy.since(0) if " " in c]
        searches = [c for c in cmds if c.startswith("UID SEARCH")]
        probes = [c for c in cmds if c.startswith("UID FETCH") and c.endswith("(UID INTERNALDATE)")]
        # INBOX: ALL and a probe; Sent: ALL, a probe, then SINCE.
        since = "SINCE " + time.strftime("%-d-%b-%Y", time.gmtime(time.time() - 30 * 86400))
        assert len(searches) == 3 and searches[0].endswith(" ALL") and \
            searches[1].endswith(" ALL") and searches[2].endswith(" " + since), cmds
        assert len(probes) == 2, cmds
        assert subjects() == want
    finally:
        one.stop()
        proxy.close()


def case_one_connection(svc, ctx):
    """imap_max_connections 1 (a service of its own): one connection per account, INBOX still
    pushed, Sent read by the passes (polled, or on POST /v1/imap/sync)."""
    dc = ctx["dc"]
    tmp = os.path.join(ctx["tmp"], "one-connection")
    os.makedirs(tmp)
    one = Service(ctx["bin_dir"], tmp, certs=ctx["certs"],
                  env={"MAILTRAIL_IMAP_MAX_CONNECTIONS": "1"})
    proxy = StallProxy(dc.imap_port)
    try:
        pid = own_service_start(one, "Solo Org", "solo.example", "solo", "one@cand.example")
        body = {"host": dc.host, "port": proxy.port, "security": "starttls",
                "username": "solo", "password": SOLO_PW}
        expect(one.req("PUT", "/v1/imap", one.tok("solo"), body), 200)
        stable(lambda: len(proxy.open_relayed()), 1, "one connection", hold=2.0)

        def logged(subject):
            acts = expect(one.req("GET", f"/v1/profiles/{pid}/activities?limit=100",
                                  one.tok("solo")), 200)["activities"]
            return [x for x in acts if x["subject"] == subject]
        dc.append("solo", "INBOX", make_msg("one@cand.example", ["solo@solo.example"],
                                            subject="Solo inbox"))
        wait_until("the INBOX push", lambda: logged("Solo inbox"), timeout=10)
        dc.append("solo", "Sent", make_msg("solo@solo.example", ["one@cand.example"],
                                           subject="Solo sent"))
        time.sleep(1.0)
        assert not logged("Solo sent"), "Sent pushed although it has no connection to watch it"
        expect(one.req("POST", "/v1/imap/sync", one.tok("solo")), 202)
        got = wait_until("the Sent mail after a sync", lambda: logged("Solo sent"))
        assert got[0]["type"] == "email_sent", got
        assert len(proxy.open_relayed()) == 1, "a second connection was opened"
        text = one.log_text().decode(errors="replace")
        assert "Sanitizer" not in text and "runtime error" not in text, text[-3000:]
    finally:
        one.stop()
        proxy.close()


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
    with rig.tempdir("mailtrail-imap-sync-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        dc_dir = os.path.join(tmp, "dovecot")
        dc = stack.enter_context(dovecot.dovecot(certs, dc_dir,
                                                 users={MAILBOX_USER: MAILBOX_PW,
                                                        "bob": BOB_PW, "solo": SOLO_PW, "since": SINCE_PW,
                                                        **{u: HOSTILE_PW
                                                           for u in HOSTILE_USERS}}))
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_SMTP_CONFIRM_DELAY": "2s",
            "MAILTRAIL_LOG_LEVEL": "debug",
        })
        stack.callback(svc.stop)
        ctx = {"certs": certs, "tmp": tmp, "dc": dc, "dc_dir": dc_dir, "bin_dir": a.bin_dir}
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("wrong_password", case_wrong_password),
                         ("feature_off", case_feature_off),
                         ("put_ok", case_put_ok),
                         ("first_sync", case_first_sync),
                         ("resync_idempotent", case_resync_idempotent),
                         ("push", case_push),
                         ("sent_push", case_sent_push),
                         ("feature_switch", case_feature_switch),
                         ("stalled_server", case_stalled_server),
                         ("group_wait", case_group_wait),
                         ("hostile_host", case_hostile_host),
                         ("one_connection", case_one_connection),
                         ("modseq_reconnect", case_modseq_reconnect),
                         ("since_paths", case_since_paths),
                         ("outage", case_outage),
                         ("dovecot_restart", case_dovecot_restart),
                         ("uidvalidity", case_uidvalidity),
                         ("uidvalidity_live", case_uidvalidity_live),
                         ("password_changed", case_password_changed),
                         ("delete_mid_sync", case_delete_mid_sync),
                         ("delete", case_delete)):
            r.run(name, fn, svc, ctx)
        svc.stop()

        def log_clean():
            text = svc.log_text().decode(errors="replace")
            for pw in (MAILBOX_PW, NEW_PW, BOB_PW, HOSTILE_PW):
                assert pw not in text, "an IMAP password in the server log"
                for path in glob.glob(os.path.join(svc.data, "*")):
                    with open(path, "rb") as f:
                        assert pw.encode() not in f.read(), f"an IMAP password in {path}"
            passes = text.count("event=imap.sync_state") and text.count("to=syncing")
            assert passes < 100, f"{passes} sync passes: a session keeps re-running its pass"
            assert "Sanitizer" not in text and "runtime error" not in text, \
                "a sanitizer report in the server log:\n" + text[max(0, text.find("Sanitizer") - 300):][:4000]
        r.run("log_clean", log_clean)
        if r.failed:
            print("--- server log (imap)\n" + "\n".join(l for l in svc.log_text().decode(errors="replace").splitlines() if "imap" in l and "http.request" not in l)[-6000:], flush=True)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
