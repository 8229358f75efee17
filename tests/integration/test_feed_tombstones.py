#!/usr/bin/python3
"""Deletions in the activity feed (issue 16): a removed activity leaves a tombstone
{id, profile_id, deleted: true, reason, deleted_at} at a new feed position, so a CRM that
upserts by id and deletes on tombstones converges; tombstones follow record_retention_days.

  setup         org A (domain staffing.example, a recruiter) and org B; profiles Jack and Jill
                in A; three add-in messages: to both, to Jack, to Jill (4 activities)
  erase         DELETE Jill: the feed after the CRM's cursor holds exactly her two activities
                as tombstones (reason profile_erased), at new positions, nothing else; her
                activity ids are nowhere in a mirror that followed the feed
  replay        a CRM replaying the feed from 0, in pages of 1, 2 and 1000, ends with Jack's
                two activities and no trace of Jill's; positions rise strictly
  other_org     org B's feed is empty: A's tombstones are A's
  retention     the server stopped, the tombstones aged past record_retention_days (1) in the
                store, a fresh erasure (Jack) left young; restarted with the first purge after
                1 s (MAILTRAIL_TEST_RETENTION_FIRST_S): the old tombstones go, the young ones
                stay, a replay from 0 still converges and an old cursor is still accepted

Run: /usr/bin/python3 tests/integration/test_feed_tombstones.py --bin-dir build
"""
import argparse
import contextlib
import os
import sqlite3
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

TOMBSTONE_KEYS = {"id", "profile_id", "deleted", "reason", "deleted_at"}


def message(to, subject):
    return "\r\n".join([
        "From: Rec <rec@staffing.example>",
        "To: " + ", ".join(to),
        f"Subject: {subject}",
        "Date: " + time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(time.time() - 60)),
        f"Message-ID: <{uuid.uuid4().hex}@staffing.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        f"About {subject}.",
        "",
    ]).encode()


def feed_page(svc, who, since, limit):
    q = f"/v1/activities?limit={limit}" + (f"&since={since}" if since is not None else "")
    return expect(svc.req("GET", q, svc.tok(who)), 200)


class Mirror:
    """A CRM's copy of the feed: upsert by id, delete on a tombstone."""

    def __init__(self):
        self.items = {}
        self.cursor = None
        self.last_pos = 0
        self.tombstones = []

    def follow(self, svc, who, limit=1000):
        while True:
            doc = feed_page(svc, who, self.cursor, limit)
            acts = doc["activities"]
            assert isinstance(doc["next_cursor"], str), doc
            if not acts:
                assert self.cursor is None or doc["next_cursor"] == str(self.cursor), doc
                return self
            assert len(acts) <= limit, doc
            pos = int(doc["next_cursor"])
            assert pos > self.last_pos, f"next_cursor {pos} after {self.last_pos}"
            self.last_pos = pos
            self.cursor = doc["next_cursor"]
            for a in acts:
                if a.get("deleted"):
                    assert set(a) == TOMBSTONE_KEYS, a
                    assert a["deleted"] is True and a["deleted_at"], a
                    self.tombstones.append(a)
                    self.items.pop(a["id"], None)
                else:
                    assert "deleted" not in a, a
                    self.items[a["id"]] = a


def case_setup(svc, ctx):
    for org, admin in (("A", "admin@staffing.example"), ("B", "admin@b.example")):
        a = svc.init(f"Org {org}", admin)
        svc.users["admin" + org] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    expect(svc.req("PUT", "/v1/org", svc.tok("adminA"), {"domains": ["staffing.example"]}), 200)
    doc = expect(svc.req("POST", "/v1/users", svc.tok("adminA"),
                         {"email": "rec@staffing.example", "name": "Rec", "role": "user"}), 201)
    svc.users["rec"] = {"id": doc["id"], "token": doc["token"]}
    for name in ("jack", "jill"):
        doc = expect(svc.req("POST", "/v1/profiles", svc.tok("rec"),
                             {"kind": "applicant", "name": name.title(),
                              "emails": [f"{name}@cand.example"]}), 201)
        ctx[name] = doc["id"]
    for to, subject in ((["jack@cand.example", "jill@cand.example"], "both"),
                        (["jack@cand.example"], "jack only"),
                        (["jill@cand.example"], "jill only")):
        r = svc.req("POST", "/v1/addin/log", svc.tok("rec"), raw=message(to, subject),
                    content_type="message/rfc822")
        assert expect(r, 200)["outcome"] == "logged", r.show()
    m = Mirror().follow(svc, "rec")
    assert len(m.items) == 4 and not m.tombstones, m.items
    ctx["mirror"] = m
    ctx["ids"] = {name: sorted(a["id"] for a in m.items.values() if a["profile_id"] == ctx[name])
                  for name in ("jack", "jill")}
    assert len(ctx["ids"]["jack"]) == 2 and len(ctx["ids"]["jill"]) == 2, ctx["ids"]


def case_erase(svc, ctx):
    m = ctx["mirror"]
    before = int(m.cursor)
    expect(svc.req("DELETE", f"/v1/profiles/{ctx['jill']}", svc.tok("rec")), 204)
    doc = feed_page(svc, "rec", m.cursor, 1000)
    acts = doc["activities"]
    assert len(acts) == 2 and all(a.get("deleted") is True for a in acts), doc
    assert sorted(a["id"] for a in acts) == ctx["ids"]["jill"], doc
    assert all(a["reason"] == "profile_erased" and a["profile_id"] == ctx["jill"]
               for a in acts), doc
    assert int(doc["next_cursor"]) > before, doc
    m.follow(svc, "rec")
    assert sorted(m.items) == ctx["ids"]["jack"], m.items
    assert not set(ctx["ids"]["jill"]) & set(m.items)
    # Her timeline is gone with her; Jack's is whole.
    expect(svc.req("GET", f"/v1/profiles/{ctx['jill']}/activities", svc.tok("rec")), 404)
    tl = expect(svc.req("GET", f"/v1/profiles/{ctx['jack']}/activities", svc.tok("rec")), 200)
    assert sorted(a["id"] for a in tl["activities"]) == ctx["ids"]["jack"], tl


def case_replay(svc, ctx):
    for limit in (1, 2, 1000):
        m = Mirror().follow(svc, "rec", limit)
        assert sorted(m.items) == ctx["ids"]["jack"], (limit, m.items)
        assert sorted(t["id"] for t in m.tombstones) == ctx["ids"]["jill"], (limit, m.tombstones)
        assert m.cursor == ctx["mirror"].cursor, (limit, m.cursor, ctx["mirror"].cursor)
        # What is left is what the profile's timeline shows, field for field.
        tl = expect(svc.req("GET", f"/v1/profiles/{ctx['jack']}/activities", svc.tok("rec")),
                    200)
        assert {a["id"]: a for a in tl["activities"]} == m.items, limit


def case_other_org(svc, ctx):
    doc = feed_page(svc, "adminB", None, 1000)
    assert doc["activities"] == [], doc


def tombstone_count(svc):
    db = sqlite3.connect(f"file:{os.path.join(svc.data, 'mailtrail.db')}?mode=ro", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM activity_tombstones").fetchone()[0]
    finally:
        db.close()


def case_retention(svc, ctx):
    old_cursor = ctx["mirror"].cursor
    svc.stop()
    db = sqlite3.connect(os.path.join(svc.data, "mailtrail.db"), timeout=10)
    db.execute("UPDATE activity_tombstones SET created_at = created_at - 2 * 86400")
    db.commit()
    db.close()
    svc.extra_env.update(MAILTRAIL_RECORD_RETENTION_DAYS="1",
                         MAILTRAIL_TEST_RETENTION_FIRST_S="3600")  # no purge yet
    svc.start()
    # A fresh erasure: young tombstones, which the purge must keep.
    expect(svc.req("DELETE", f"/v1/profiles/{ctx['jack']}", svc.tok("rec")), 204)
    assert tombstone_count(svc) == 4
    svc.stop()
    svc.extra_env["MAILTRAIL_TEST_RETENTION_FIRST_S"] = "1"
    seen = len(svc.log_text())
    svc.start()
    deadline = time.monotonic() + 20
    while b"maintenance.purged" not in svc.log_text()[seen:] and time.monotonic() < deadline:
        time.sleep(0.2)
    line = [x for x in svc.log_text()[seen:].decode(errors="replace").splitlines()
            if "maintenance.purged" in x]
    assert line and "tombstones=2" in line[-1] and "result=ok" in line[-1], line
    assert tombstone_count(svc) == 2
    m = Mirror().follow(svc, "rec", 1)
    assert m.items == {}, m.items
    assert sorted(t["id"] for t in m.tombstones) == ctx["ids"]["jack"], m.tombstones
    # A cursor handed out before the purge is still ours.
    doc = feed_page(svc, "rec", old_cursor, 1000)
    assert sorted(a["id"] for a in doc["activities"]) == ctx["ids"]["jack"], doc


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
    with rig.tempdir("mailtrail-tombstones-") as tmp, contextlib.ExitStack() as stack:
        svc = Service(a.bin_dir, tmp)
        stack.callback(svc.stop)
        ctx = {}
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("erase", case_erase),
                         ("replay", case_replay),
                         ("other_org", case_other_org),
                         ("retention", case_retention)):
            r.run(name, fn, svc, ctx)
        if r.failed:
            print(svc.log_tail(40))
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
