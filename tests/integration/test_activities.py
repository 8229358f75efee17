#!/usr/bin/python3
"""Activities end to end (DESIGN.md §1 Activity, Message records, Never-log list, Profile; §2
POST /v1/addin/log, GET /v1/profiles/{id}/activities, GET /v1/activities, /v1/never-log;
docs/api.md "Activities").

  /usr/bin/python3 tests/integration/test_activities.py --bin-dir BUILD [--only NAME]... [--keep]

One store, one server (MAILTRAIL_MAX_MESSAGE_BYTES=65536 so that 413 is cheap to test). Org A
has domains ["staffing.example"] and the recruiters a@ and b@staffing.example; org B is there
for isolation; the corpus cases make a fresh org per file and direction. Cases run in order and
share org A (--only is for reading output). Covers: the parsed corpus (tests/data/*.eml with
NAME.expected.json) logged through the add-in with every activity field checked, twice; two
recruiters logging one message (one activity, both users); the direction rule; identity by
Message-ID, X-Mailtrail-Id and the SHA-256 fallback; never-log lists (org/user scope, domains
covering subdomains, normalisation, admin-only org scope, no record kept); internal-only mail;
backfill on profile create/patch and erasure on delete; timeline order and paging; add-in
errors (400/413); org isolation.

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed. Standard
library only (Debian's /usr/bin/python3).
"""

import argparse
import contextlib
import email.utils
import glob
import json
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402
from service import RFC3339, Service, expect, expect_input, urlquote  # noqa: E402

MAX_MESSAGE_BYTES = 65536
DATA_DIR = os.path.join(REPO, "tests", "data")
ORG_DOMAIN = "staffing.example"
A_ADDR = "a@staffing.example"
B_ADDR = "b@staffing.example"
ACTIVITY_KEYS = {"id", "profile_id", "type", "source", "subject", "date", "from", "to", "cc",
                 "message_id", "snippet", "attachments", "users", "logged_at", "outbox_id",
                 "in_reply_to", "thread_id"}


# --- building messages ----------------------------------------------------------------------

def new_mid(tag="m"):
    return f"{tag}.{uuid.uuid4().hex}@test.mailtrail.example"


def rfc2822(ts):
    return email.utils.formatdate(ts, localtime=False, usegmt=True)


def rfc3339(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


NOW = int(time.time())


def make_msg(frm, to=(), cc=(), bcc=(), subject="Hello", date=None, mid="auto", mtid=None,
             text="Hi there,\nthis is a test.\n", extra=(), date_header=None):
    """A small RFC 5322 message (CRLF). mid="auto" -> a fresh Message-ID; None -> none."""
    if mid == "auto":
        mid = new_mid()
    h = [f"From: {frm}"]
    if to:
        h.append("To: " + ", ".join(to))
    if cc:
        h.append("Cc: " + ", ".join(cc))
    if bcc:
        h.append("Bcc: " + ", ".join(bcc))
    h.append(f"Subject: {subject}")
    h.append("Date: " + (date_header or rfc2822(date if date is not None else NOW - 3600)))
    if mid is not None:
        h.append(f"Message-ID: <{mid}>")
    if mtid is not None:
        h.append(f"X-Mailtrail-Id: {mtid}")
    h += list(extra)
    h += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
          "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(h) + "\r\n\r\n" + text.replace("\n", "\r\n")).encode()


# --- API helpers ----------------------------------------------------------------------------

def addin(svc, who, raw, status=200):
    r = svc.req("POST", "/v1/addin/log", svc.tok(who) if isinstance(who, str) else who[0],
                raw=raw, content_type="message/rfc822")
    doc = expect(r, status)
    if status == 200:
        assert isinstance(doc, dict), r.show()
        for k in ("outcome", "activities", "created"):
            assert k in doc, f"the add-in answer lacks {k}" + r.show()
        assert isinstance(doc["activities"], list) and isinstance(doc["created"], int), r.show()
        for a in doc["activities"]:
            check_shape(a, r)
    return doc, r


def make_profile(svc, who, emails, name=None, kind="applicant"):
    if isinstance(emails, str):
        emails = [emails]
    r = svc.req("POST", "/v1/profiles", svc.tok(who),
                {"kind": kind, "name": name or emails[0].split("@")[0].title(), "emails": emails})
    return expect(r, 201)["id"]


def timeline(svc, who, pid, limit=1000, status=200):
    """Every activity of the profile, following next_cursor."""
    out = []
    cursor = None
    for _ in range(1000):
        path = f"/v1/profiles/{pid}/activities?limit={limit}"
        if cursor:
            path += "&cursor=" + urlquote(cursor)
        r = svc.req("GET", path, svc.tok(who))
        doc = expect(r, status)
        if status != 200:
            return r
        assert isinstance(doc.get("activities"), list) and "next_cursor" in doc, r.show()
        for a in doc["activities"]:
            check_shape(a, r)
            assert a["profile_id"] == pid, "another profile's activity in the timeline" + r.show()
        out.extend(doc["activities"])
        cursor = doc["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("timeline paging never ended")


def feed_all(svc, who, since=None, limit=1000):
    """The feed from `since` (or the start) to its current end; (activities, last cursor)."""
    out = []
    for _ in range(10000):
        path = f"/v1/activities?limit={limit}"
        if since is not None:
            path += "&since=" + urlquote(str(since))
        r = svc.req("GET", path, svc.tok(who))
        doc = expect(r, 200)
        assert isinstance(doc.get("activities"), list), r.show()
        assert doc.get("next_cursor") is not None, "the feed must always return next_cursor" + r.show()
        out.extend(doc["activities"])
        if not doc["activities"]:
            return out, doc["next_cursor"]
        since = doc["next_cursor"]
    raise AssertionError("the feed never ended")


def check_shape(a, r=None):
    where = r.show() if r is not None else f"\n    {a}"
    assert isinstance(a, dict), where
    missing = ACTIVITY_KEYS - set(a)
    assert not missing, f"activity lacks {sorted(missing)}" + where
    assert a["type"] in ("email_sent", "email_received"), where
    assert a["source"] in ("outbox", "imap", "bcc", "addin"), where
    assert a["date"] is None or RFC3339.match(a["date"]), "date not RFC 3339 UTC" + where
    assert isinstance(a["from"], dict) and set(a["from"]) >= {"address", "name"}, where
    for k in ("to", "cc", "attachments", "users"):
        assert isinstance(a[k], list), f"{k} is not a list" + where
    for u in a["users"]:
        assert set(u) >= {"id", "email"}, where


def users_of(a):
    return sorted((u["id"], u["email"]) for u in a["users"])


def only_activity(svc, who, pid):
    acts = timeline(svc, who, pid)
    assert len(acts) == 1, f"profile {pid}: {len(acts)} activities, expected exactly 1: {acts}"
    return acts[0]


# --- setup ----------------------------------------------------------------------------------

def case_setup(svc):
    a = svc.init("Staffing A", "admin@staffing.example")
    b = svc.init("Org B", "admin@orgb.example")
    svc.orgs["A"], svc.orgs["B"] = a, b
    svc.users["adminA"] = {"id": a["user_id"], "token": a["token"], "email": "admin@staffing.example"}
    svc.users["adminB"] = {"id": b["user_id"], "token": b["token"], "email": "admin@orgb.example"}
    svc.start()
    doc = expect(svc.req("PUT", "/v1/org", svc.tok("adminA"), {"domains": [ORG_DOMAIN]}), 200)
    assert doc["domains"] == [ORG_DOMAIN], doc
    for name, addr, admin in (("A", A_ADDR, "adminA"), ("B", B_ADDR, "adminA"),
                              ("userB", "user@orgb.example", "adminB")):
        doc = expect(svc.req("POST", "/v1/users", svc.tok(admin),
                             {"email": addr, "name": f"Recruiter {name}", "role": "user"}), 201)
        svc.users[name] = {"id": doc["id"], "token": doc["token"], "email": addr}


# --- the corpus -----------------------------------------------------------------------------

def corpus_files():
    out = []
    for eml in sorted(glob.glob(os.path.join(DATA_DIR, "*.eml"))):
        exp = eml[:-4] + ".expected.json"
        if os.path.exists(exp):
            out.append((eml, exp))
    return out


def _mbox(m):
    if m is None:
        return {"address": "", "name": ""}
    if isinstance(m, str):
        return {"address": m, "name": ""}
    return {"address": m.get("address") or "", "name": m.get("name") or ""}


def _mlist(v):
    return [_mbox(m) for m in (v or [])]


def _exp_date(v):
    if v in (None, 0, ""):
        return None
    if isinstance(v, (int, float)):
        return rfc3339(int(v))
    if RFC3339.match(v):
        return v
    t = email.utils.parsedate_tz(v)
    assert t is not None, f"expected date {v!r} is not understood by the test"
    return rfc3339(email.utils.mktime_tz(t))


def _clean_mbox(m):
    return {"address": m.get("address") or "", "name": m.get("name") or ""}


def check_corpus_file(svc, index, eml, exp_path, sent):
    """Logs one corpus file through the add-in in a fresh org; `sent`: the From is an alias of
    recruiter A (email_sent), else nobody's (email_received). Returns a list of problems."""
    name = os.path.basename(eml)[:-4]
    with open(eml, "rb") as f:
        raw = f.read()
    with open(exp_path) as f:
        exp = json.load(f)
    variant = "sent" if sent else "received"
    tag = f"{name}/{variant}"
    if len(raw) > MAX_MESSAGE_BYTES:
        return [f"{tag}: the file is {len(raw)} bytes, above the test server's "
                f"max_message_bytes {MAX_MESSAGE_BYTES}: make it smaller"]
    org = svc.init(f"Corpus {index} {variant}", f"admin@corpus{index}{variant[0]}.example")
    admin_tok = org["token"]
    frm = _mbox(exp.get("from"))
    user_addr = f"rec@corpus{index}{variant[0]}.example"
    body = {"email": user_addr, "name": "Corpus Recruiter"}
    if sent:
        if not frm["address"]:
            return []  # no From: no sent variant
        body["aliases"] = [frm["address"]]
    r = svc.req("POST", "/v1/users", admin_tok, body)
    doc = expect(r, 201)
    rec = {"id": doc["id"], "token": doc["token"], "email": user_addr}
    user_addrs = {user_addr, f"admin@corpus{index}{variant[0]}.example"}
    if sent:
        user_addrs.add(frm["address"])

    if exp.get("error") is not None:
        r = svc.req("POST", "/v1/addin/log", rec["token"], raw=raw, content_type="message/rfc822")
        return [] if r.status == 400 else [f"{tag}: expected 400 (not a message)" + r.show()]

    to, cc, bcc = _mlist(exp.get("to")), _mlist(exp.get("cc")), _mlist(exp.get("bcc"))
    participants = []
    for m in [frm] + to + cc + bcc:
        a = m["address"]
        if a and a not in user_addrs and a not in participants:
            participants.append(a)
    profiles = {}  # address -> profile id
    for a in participants:
        r = svc.req("POST", "/v1/profiles", admin_tok,
                    {"kind": "applicant", "name": f"P {a}", "emails": [a]})
        if r.status != 201:
            return [f"{tag}: cannot create a profile for participant {a!r}" + r.show()]
        profiles[a] = r.json["id"]

    r1 = svc.req("POST", "/v1/addin/log", rec["token"], raw=raw, content_type="message/rfc822")
    if r1.status != 200 or not isinstance(r1.json, dict):
        return [f"{tag}: add-in" + r1.show()]
    d1 = r1.json
    problems = []
    if profiles and d1.get("outcome") != "logged":
        problems.append(f"{tag}: outcome {d1.get('outcome')!r}, expected logged" + r1.show())
    if d1.get("created") != len(profiles):
        problems.append(f"{tag}: created {d1.get('created')}, expected {len(profiles)}" + r1.show())

    want = {
        "type": "email_sent" if sent else "email_received",
        "source": "addin",
        "subject": exp.get("subject", ""),
        "date": _exp_date(exp.get("date")),
        "from": frm,
        "to": to,
        "cc": cc,
        "message_id": exp.get("message_id") or None,
        "snippet": exp.get("snippet", ""),
        "attachments": [{"name": x.get("name") or "", "type": x.get("type"), "size": x.get("size")}
                        for x in exp.get("attachments", [])],
        "users": [{"id": rec["id"], "email": user_addr}],
    }
    seen = {}
    for addr, pid in profiles.items():
        r = svc.req("GET", f"/v1/profiles/{pid}/activities", admin_tok)
        if r.status != 200:
            problems.append(f"{tag}: timeline of {addr}" + r.show())
            continue
        acts = r.json["activities"]
        if len(acts) != 1:
            problems.append(f"{tag}: {addr} has {len(acts)} activities, expected 1" + r.show())
            continue
        a = acts[0]
        seen[a["id"]] = a
        got = {k: a.get(k) for k in want}
        got["from"] = _clean_mbox(a["from"])
        got["to"] = [_clean_mbox(m) for m in a["to"]]
        got["cc"] = [_clean_mbox(m) for m in a["cc"]]
        got["attachments"] = [{"name": x.get("name") or "", "type": x.get("type"),
                               "size": x.get("size")} for x in a["attachments"]]
        got["users"] = [{"id": u.get("id"), "email": u.get("email")} for u in a["users"]]
        for k in want:
            if got[k] != want[k]:
                problems.append(f"{tag}: {addr}: {k} is {got[k]!r}, expected {want[k]!r}")
    answer = {a["id"]: a for a in d1["activities"]}
    if answer != seen and not problems:
        problems.append(f"{tag}: the add-in answer differs from the timelines:\n"
                        f"      answer    {sorted(answer)}\n      timelines {sorted(seen)}"
                        + r1.show())
    # The same file again: nothing new, the same activities.
    r2 = svc.req("POST", "/v1/addin/log", rec["token"], raw=raw, content_type="message/rfc822")
    if r2.status != 200 or not isinstance(r2.json, dict):
        problems.append(f"{tag}: second add-in" + r2.show())
    else:
        if r2.json.get("created") != 0:
            problems.append(f"{tag}: the second POST created {r2.json.get('created')}" + r2.show())
        ids2 = sorted(a["id"] for a in r2.json.get("activities", []))
        if ids2 != sorted(answer):
            problems.append(f"{tag}: the second POST lists {ids2}, the first {sorted(answer)}")
    for addr, pid in profiles.items():
        r = svc.req("GET", f"/v1/profiles/{pid}/activities", admin_tok)
        if r.status == 200 and len(r.json["activities"]) != 1:
            problems.append(f"{tag}: after the second POST {addr} has "
                            f"{len(r.json['activities'])} activities")
    return problems


def case_corpus(svc):
    files = corpus_files()
    assert files, f"no corpus: {DATA_DIR}/*.eml with NAME.expected.json"
    problems = []
    checked = 0
    for i, (eml, exp) in enumerate(files):
        for sent in (False, True):
            problems += check_corpus_file(svc, i, eml, exp, sent)
            checked += 1
    print(f"     ({len(files)} corpus files, {checked} runs)", flush=True)
    assert not problems, f"{len(problems)} problems:\n    " + "\n    ".join(problems)


# --- two recruiters, direction -------------------------------------------------------------

def case_two_recruiters(svc):
    jack = make_profile(svc, "A", "jack@candidates.example", "Jack Jones")
    svc.jack = jack
    mid = new_mid("two")
    raw = make_msg(f"Recruiter A <{A_ADDR}>", ["Jack Jones <jack@candidates.example>"],
                   cc=[f"Recruiter B <{B_ADDR}>"], subject="Your application", mid=mid,
                   date=NOW - 7200)
    d, r = addin(svc, "A", raw)
    assert d["outcome"] == "logged" and d["created"] == 1, r.show()
    assert len(d["activities"]) == 1, "one profile among the participants, one activity" + r.show()
    ids = {d["activities"][0]["id"]}
    _, cursor = feed_all(svc, "A")
    for who, n in (("A", 2), ("B", 3), ("B", 4)):
        d, r = addin(svc, who, raw)
        assert d["outcome"] == "logged" and d["created"] == 0, f"copy {n} (by {who})" + r.show()
        assert {a["id"] for a in d["activities"]} == ids, f"copy {n} (by {who})" + r.show()
        # The feed is a feed of changes (docs/api.md): the activity comes again when another
        # user's copy is added to it, and only then.
        moved, cursor = feed_all(svc, "A", since=cursor)
        want_moved = [] if n != 3 else list(ids)
        assert [a["id"] for a in moved] == want_moved, \
            f"copy {n} (by {who}): the feed shows {[(a['id'], users_of(a)) for a in moved]}, expected {want_moved}"
    a = only_activity(svc, "A", jack)
    assert a["type"] == "email_sent" and a["source"] == "addin", a
    assert a["message_id"] == mid and a["subject"] == "Your application", a
    assert a["from"]["address"] == A_ADDR and a["from"]["name"] == "Recruiter A", a
    assert [m["address"] for m in a["to"]] == ["jack@candidates.example"], a
    assert [m["address"] for m in a["cc"]] == [B_ADDR], a
    want = sorted([(svc.users["A"]["id"], A_ADDR), (svc.users["B"]["id"], B_ADDR)])
    assert users_of(a) == want, f"users {users_of(a)}, expected A and B {want}"
    assert a["date"] == rfc3339(NOW - 7200), a
    # B sees the same through its own token.
    assert only_activity(svc, "B", jack) == a
    # Jack's reply: email_received.
    rmid = new_mid("reply")
    reply = make_msg("Jack Jones <jack@candidates.example>", [f"Recruiter A <{A_ADDR}>"],
                     subject="Re: Your application", mid=rmid, date=NOW - 3600,
                     extra=[f"In-Reply-To: <{mid}>", f"References: <{mid}>"])
    d, r = addin(svc, "A", reply)
    assert d["outcome"] == "logged" and d["created"] == 1, r.show()
    acts = timeline(svc, "A", jack)
    assert [x["message_id"] for x in acts] == [rmid, mid], f"timeline {acts}"
    assert acts[0]["type"] == "email_received", acts[0]
    assert users_of(acts[0]) == [(svc.users["A"]["id"], A_ADDR)], acts[0]
    assert acts[0]["from"]["address"] == "jack@candidates.example", acts[0]
    # The same reply seen by B: still email_received (the org-wide rule), users A and B.
    d, r = addin(svc, "B", reply)
    assert d["created"] == 0, r.show()
    acts = timeline(svc, "A", jack)
    assert len(acts) == 2 and acts[0]["type"] == "email_received", acts
    assert users_of(acts[0]) == want, acts[0]
    # A user's alias counts as the user: mail From A's alias is email_sent.
    expect(svc.req("PATCH", f"/v1/users/{svc.users['A']['id']}", svc.tok("adminA"),
                   {"aliases": ["a.private@alias-a.example"]}), 200)
    amid = new_mid("alias")
    d, r = addin(svc, "A", make_msg("A <A.Private@Alias-A.Example>", ["jack@candidates.example"],
                                    subject="From my alias", mid=amid, date=NOW - 1800))
    assert d["created"] == 1, r.show()
    a = d["activities"][0]
    assert a["type"] == "email_sent" and a["from"]["address"] == "a.private@alias-a.example", r.show()


def case_shared_address(svc):
    """Several profiles may share an address (a team inbox): each gets the activity, also past
    the matcher's first batch of 8."""
    pids = [make_profile(svc, "A", ["team@shared-inbox.example", f"member{i}@shared-inbox.example"],
                         f"Member {i}", kind="contact") for i in range(11)]
    d, r = addin(svc, "A", make_msg("team@shared-inbox.example", [A_ADDR], subject="From the team"))
    assert d["outcome"] == "logged" and d["created"] == 11, r.show()
    assert sorted(a["profile_id"] for a in d["activities"]) == sorted(pids), r.show()
    for pid in pids:
        assert only_activity(svc, "A", pid)["type"] == "email_received"
    # A later profile with the address is backfilled too.
    late = make_profile(svc, "A", "team@shared-inbox.example", "Late member", kind="contact")
    assert only_activity(svc, "A", late)["subject"] == "From the team"


# --- identity ------------------------------------------------------------------------------

def case_aliases_identity(svc):
    pid = make_profile(svc, "A", "alias.case@candidates3.example")
    m1, m2, t1 = new_mid("m1"), new_mid("m2"), "t1-" + uuid.uuid4().hex
    to = ["alias.case@candidates3.example"]
    copies = [
        ("M1 + T1", make_msg(A_ADDR, to, subject="Identity", mid=m1, mtid=t1)),
        ("M2 + T1 (provider rewrote the Message-ID)",
         make_msg(A_ADDR, to, subject="Identity", mid=m2, mtid=t1)),
        ("M1 only", make_msg(A_ADDR, to, subject="Identity", mid=m1)),
        ("M2 only", make_msg(A_ADDR, to, subject="Identity", mid=m2)),
        ("T1 only", make_msg(A_ADDR, to, subject="Identity", mid=None, mtid=t1)),
    ]
    ids = set()
    for n, (what, raw) in enumerate(copies):
        d, r = addin(svc, "A", raw)
        assert d["outcome"] == "logged", what + r.show()
        assert d["created"] == (1 if n == 0 else 0), f"{what}: created {d['created']}" + r.show()
        ids |= {a["id"] for a in d["activities"]}
        assert len(ids) == 1, f"{what}: a second activity {ids}" + r.show()
    a = only_activity(svc, "A", pid)
    assert a["message_id"] in (m1, m2), a
    # A message with another Message-ID and no X-Mailtrail-Id is another message.
    d, r = addin(svc, "A", make_msg(A_ADDR, to, subject="Identity", mid=new_mid("m3")))
    assert d["created"] == 1, r.show()
    assert len(timeline(svc, "A", pid)) == 2


def case_identity_without_ids(svc):
    """No Message-ID and no X-Mailtrail-Id: SHA-256 of Date (UTC seconds), From address, sorted
    To addresses and the decoded Subject. Display names, the order of To, the Date's zone and
    the Subject's encoding do not matter; another To set or another second does."""
    p1 = make_profile(svc, "A", "sha.one@candidates4.example")
    p2 = make_profile(svc, "A", "sha.two@candidates4.example")
    ts = NOW - 5000
    # The same instant written in +0200.
    local = time.strftime("%a, %d %b %Y %H:%M:%S +0200", time.gmtime(ts + 7200))
    copies = [
        make_msg(A_ADDR, ["sha.one@candidates4.example", "sha.two@candidates4.example"],
                 subject="Caf\u00e9 chat", mid=None, date=ts),
        make_msg(f"Recruiter A <{A_ADDR}>",
                 ["Two <Sha.Two@Candidates4.Example>", "One <sha.one@candidates4.example>"],
                 subject="=?UTF-8?Q?Caf=C3=A9_chat?=", mid=None, date_header=local),
    ]
    ids = set()
    for n, raw in enumerate(copies):
        d, r = addin(svc, "A", raw)
        assert d["created"] == (2 if n == 0 else 0), f"copy {n + 1}: created {d['created']}" + r.show()
        ids |= {a["id"] for a in d["activities"]}
    assert len(ids) == 2, f"two profiles, {len(ids)} activities: {ids}"
    a = only_activity(svc, "A", p1)
    assert a["message_id"] is None and a["subject"] == "Caf\u00e9 chat", a
    assert a["date"] == rfc3339(ts), a
    # One second later: another message.
    d, r = addin(svc, "A", make_msg(A_ADDR, ["sha.one@candidates4.example", "sha.two@candidates4.example"],
                                    subject="Caf\u00e9 chat", mid=None, date=ts + 1))
    assert d["created"] == 2, r.show()
    assert len(timeline(svc, "A", p2)) == 2


# --- never-log ------------------------------------------------------------------------------

def never_log_put(svc, who, scope, entries, status=200):
    r = svc.req("PUT", "/v1/never-log", svc.tok(who), {"scope": scope, "entries": entries})
    return expect(r, status), r


def never_log_get(svc, who, scope, status=200):
    r = svc.req("GET", f"/v1/never-log?scope={scope}", svc.tok(who))
    return expect(r, status)


def case_never_log(svc):
    jack = svc.jack
    before = timeline(svc, "A", jack)
    fine = make_profile(svc, "A", "fine@ok-domain.example")
    lookalike = make_profile(svc, "A", "x@notcandidates.example")
    # Admin-only org scope; entries normalised and returned by GET.
    never_log_put(svc, "A", "org", ["candidates.example"], status=403)
    never_log_get(svc, "A", "org", status=403)
    doc, r = never_log_put(svc, "adminA", "org", ["Candidates.EXAMPLE"])
    assert doc == {"scope": "org", "entries": ["candidates.example"]}, r.show()
    assert never_log_get(svc, "adminA", "org")["entries"] == ["candidates.example"]
    assert never_log_get(svc, "adminB", "org")["entries"] == [], "org B sees org A's list"
    assert never_log_get(svc, "A", "user")["entries"] == []
    try:
        # Jack's domain: not logged at all, even with another (fine) participant.
        mid = new_mid("nl")
        d, r = addin(svc, "A", make_msg(A_ADDR, ["jack@candidates.example", "fine@ok-domain.example"],
                                        subject="Suppressed", mid=mid))
        assert d["outcome"] == "never_log" and d["activities"] == [] and d["created"] == 0, r.show()
        assert timeline(svc, "A", jack) == before, "an activity was logged for a never-log domain"
        assert timeline(svc, "A", fine) == [], "the message was partly logged"
        # A subdomain is covered; a look-alike domain is not.
        d, r = addin(svc, "B", make_msg(B_ADDR, ["x@mail.candidates.example"], subject="Sub",
                                        cc=["fine@ok-domain.example"]))
        assert d["outcome"] == "never_log", "a subdomain of a never-log domain was logged" + r.show()
        d, r = addin(svc, "B", make_msg(B_ADDR, ["x@notcandidates.example"], subject="Lookalike"))
        assert d["outcome"] == "logged" and d["created"] == 1, \
            "notcandidates.example is not a subdomain of candidates.example" + r.show()
        assert len(timeline(svc, "A", lookalike)) == 1
        # Mail From the suppressed domain as well.
        d, r = addin(svc, "A", make_msg("jack@candidates.example", [A_ADDR], subject="Inbound"))
        assert d["outcome"] == "never_log", r.show()
        # Suppressed mail leaves no record: a profile created later gets nothing.
        d, r = addin(svc, "A", make_msg(A_ADDR, ["newguy@candidates.example"], subject="Nothing kept"))
        assert d["outcome"] == "never_log", r.show()
    finally:
        never_log_put(svc, "adminA", "org", [])
    assert never_log_get(svc, "adminA", "org")["entries"] == []
    newguy = make_profile(svc, "A", "newguy@candidates.example")
    assert timeline(svc, "A", newguy) == [], "a never-log message was kept and backfilled"
    # Jack (re-allowed) and fine: still nothing from the suppressed message.
    assert [a["message_id"] for a in timeline(svc, "A", jack)] == [a["message_id"] for a in before]
    assert all(a["message_id"] != mid for a in timeline(svc, "A", fine))

    # User scope: A's entries apply to A's logging only.
    priv = make_profile(svc, "A", "private@personal.example")
    doc, r = never_log_put(svc, "A", "user", ["Private@Personal.Example", ".B\u00fccher.Example",
                                              "private@personal.example"])
    assert doc == {"scope": "user",
                   "entries": ["private@personal.example", "xn--bcher-kva.example"]}, r.show()
    assert never_log_get(svc, "A", "user")["entries"] == ["private@personal.example",
                                                          "xn--bcher-kva.example"]
    assert never_log_get(svc, "B", "user")["entries"] == [], "B sees A's user list"
    assert never_log_get(svc, "adminA", "user")["entries"] == [], "the admin sees A's user list"
    mid = new_mid("user-nl")
    raw = make_msg(A_ADDR, ["private@personal.example"], cc=[B_ADDR], subject="Personal", mid=mid)
    d, r = addin(svc, "A", raw)
    assert d["outcome"] == "never_log" and d["activities"] == [], r.show()
    assert timeline(svc, "A", priv) == []
    d, r = addin(svc, "B", raw)
    assert d["outcome"] == "logged" and d["created"] == 1, "A's list applied to B" + r.show()
    a = only_activity(svc, "A", priv)
    assert a["type"] == "email_sent" and users_of(a) == [(svc.users["B"]["id"], B_ADDR)], a
    # A's IDN domain entry covers a subdomain written in Unicode.
    d, r = addin(svc, "A", make_msg(A_ADDR, ["fine@ok-domain.example", "x@shop.b\u00fccher.example"],
                                    subject="IDN"))
    assert d["outcome"] == "never_log", r.show()
    # Bad input.
    for bad in (["not a domain"], ["a@@b.example"], "x.example", [5]):
        r = svc.req("PUT", "/v1/never-log", svc.tok("A"), {"scope": "user", "entries": bad})
        assert r.status == 400, f"entries {bad!r}" + r.show()
    expect_input(svc.req("PUT", "/v1/never-log", svc.tok("A"), {"scope": "team", "entries": []}))
    expect_input(svc.req("GET", "/v1/never-log?scope=team", svc.tok("A")))
    assert never_log_get(svc, "A", "user")["entries"] == ["private@personal.example",
                                                          "xn--bcher-kva.example"]
    never_log_put(svc, "A", "user", [])


# --- internal-only mail ----------------------------------------------------------------------

def case_internal_only(svc):
    colleague = make_profile(svc, "A", "colleague1@staffing.example", kind="employee")
    d, r = addin(svc, "A", make_msg(A_ADDR, [B_ADDR, "colleague1@staffing.example"],
                                    cc=["admin@staffing.example"], subject="Team lunch"))
    assert d["outcome"] == "internal_only" and d["activities"] == [] and d["created"] == 0, r.show()
    assert timeline(svc, "A", colleague) == []
    d, r = addin(svc, "A", make_msg("Colleague Two <COLLEAGUE2@Staffing.Example>", [A_ADDR],
                                    subject="Internal too"))
    assert d["outcome"] == "internal_only", r.show()
    later = make_profile(svc, "A", "colleague2@staffing.example", kind="employee")
    assert timeline(svc, "A", later) == [], "internal mail was kept and backfilled"
    # One outside participant makes it loggable.
    outsider = make_profile(svc, "A", "outsider@elsewhere.example")
    d, r = addin(svc, "A", make_msg(A_ADDR, ["colleague1@staffing.example", "outsider@elsewhere.example"],
                                    subject="Mixed"))
    assert d["outcome"] == "logged" and d["created"] == 2, r.show()
    assert len(timeline(svc, "A", outsider)) == 1 and len(timeline(svc, "A", colleague)) == 1


# --- backfill and erasure -------------------------------------------------------------------

def case_backfill(svc):
    jim = make_profile(svc, "A", "jim@candidates2.example")
    mid = new_mid("bf")
    raw = make_msg(A_ADDR, ["Jill <jill@candidates2.example>", "jim@candidates2.example"],
                   cc=["jess@candidates2.example"], subject="Backfill me", mid=mid, date=NOW - 86400)
    d, r = addin(svc, "A", raw)
    assert d["outcome"] == "logged" and d["created"] == 1, r.show()
    jim_act = only_activity(svc, "A", jim)
    # Jill's profile is created afterwards: her timeline has the message at once.
    jill = make_profile(svc, "A", "Jill@Candidates2.Example", "Jill")
    a = only_activity(svc, "A", jill)
    assert a["message_id"] == mid and a["type"] == "email_sent" and a["subject"] == "Backfill me", a
    assert a["source"] == "addin" and users_of(a) == [(svc.users["A"]["id"], A_ADDR)], a
    assert a["id"] != jim_act["id"] and a["date"] == jim_act["date"], (a, jim_act)
    # ... and it is in the feed.
    feed, _ = feed_all(svc, "A")
    assert a["id"] in {x["id"] for x in feed}, "the backfilled activity is not in the feed"
    # A third profile gains a participant's address by PATCH.
    jo = make_profile(svc, "A", "jo@other.example", "Jo")
    assert timeline(svc, "A", jo) == []
    r = svc.req("PATCH", f"/v1/profiles/{jo}", svc.tok("B"),
                {"emails": ["jo@other.example", "JESS@candidates2.example"]})
    expect(r, 200)
    a = only_activity(svc, "A", jo)
    assert a["message_id"] == mid, a
    # Logging the message again creates nothing (all three have it).
    d, r = addin(svc, "A", raw)
    assert d["created"] == 0 and len(d["activities"]) == 3, r.show()
    # Delete Jill: 204, her timeline 404, her activities gone from the feed; others intact.
    expect(svc.req("DELETE", f"/v1/profiles/{jill}", svc.tok("A")), 204)
    r = timeline(svc, "A", jill, status=404)
    expect(r, 404)
    feed, _ = feed_all(svc, "A")
    leaked = [x for x in feed if x["profile_id"] == jill and not x.get("deleted")]
    assert not leaked, f"the erased profile's activities are still in the feed: {leaked}"
    # ... but her activity's id is, as a tombstone (a CRM deletes its copy).
    tombs = [x for x in feed if x["profile_id"] == jill]
    assert len(tombs) == 1 and tombs[0]["reason"] == "profile_erased", tombs
    assert only_activity(svc, "A", jim)["id"] == jim_act["id"]
    assert only_activity(svc, "A", jo)["message_id"] == mid
    d, r = addin(svc, "A", raw)
    assert d["created"] == 0 and len(d["activities"]) == 2, r.show()
    svc.backfill = {"mid": mid, "raw": raw, "jim": jim, "jo": jo}


def case_erasure_of_all_participants(svc):
    """Deleting every profile among a message's participants erases the message record (right
    to erasure): a profile made later for one of them gets nothing back."""
    bf = svc.backfill
    for pid in (bf["jim"], bf["jo"]):
        expect(svc.req("DELETE", f"/v1/profiles/{pid}", svc.tok("A")), 204)
    feed, _ = feed_all(svc, "A")
    left = [x for x in feed if not x.get("deleted") and x["message_id"] == bf["mid"]]
    assert not left, f"activities of the erased profiles are still in the feed: {left}"
    jill2 = make_profile(svc, "A", "jill@candidates2.example", "Jill again")
    acts = timeline(svc, "A", jill2)
    assert acts == [], (
        "after every participant's profile was deleted, a new profile for jill@ got the message "
        f"back from its record (the record outlived the erasure): {[a['message_id'] for a in acts]}")


# --- timeline order and paging ---------------------------------------------------------------

def case_timeline_paging(svc):
    pid = make_profile(svc, "A", "tim@timeline.example")
    # Dates out of posting order; two messages share one date (the tie sits on a page boundary).
    offsets = [5, 1, 9, 3, 3, 7, 2, 8]
    mids = {}
    for i, off in enumerate(offsets):
        mid = new_mid(f"tl{i}")
        ts = NOW - off * 86400
        mids[mid] = ts
        d, r = addin(svc, "A" if i % 2 else "B", make_msg(A_ADDR, ["tim@timeline.example"],
                                                          subject=f"Timeline {i}", mid=mid, date=ts))
        assert d["created"] == 1, r.show()
    full = timeline(svc, "A", pid, limit=1000)
    assert len(full) == len(offsets), f"{len(full)} activities, expected {len(offsets)}"
    dates = [a["date"] for a in full]
    assert dates == sorted(dates, reverse=True), f"not newest first: {dates}"
    assert [a["date"] for a in full] == [rfc3339(t) for t in sorted(mids.values(), reverse=True)]
    for limit in (1, 3, 4):
        seen, pages, cursor = [], 0, None
        while True:
            path = f"/v1/profiles/{pid}/activities?limit={limit}"
            if cursor:
                path += "&cursor=" + urlquote(cursor)
            r = svc.req("GET", path, svc.tok("A"))
            doc = expect(r, 200)
            assert len(doc["activities"]) <= limit, r.show()
            seen += [a["id"] for a in doc["activities"]]
            pages += 1
            cursor = doc["next_cursor"]
            if cursor is None:
                break
            assert len(doc["activities"]) == limit, "a short page before the end" + r.show()
            assert pages <= len(offsets) + 1, "paging does not end"
        assert seen == [a["id"] for a in full], f"limit {limit}: paging saw {seen}, one page {[a['id'] for a in full]}"
        want_pages = -(-len(offsets) // limit)
        assert pages in (want_pages, want_pages + 1), f"limit {limit}: {pages} pages"
    for bad in ("limit=0", "limit=1001", "limit=x", "cursor=garbage", "cursor=12%3A"):
        expect_input(svc.req("GET", f"/v1/profiles/{pid}/activities?{bad}", svc.tok("A")))
    expect(svc.req("GET", "/v1/profiles/prf_doesnotexist000000/activities", svc.tok("A")), 404)


# --- add-in errors ---------------------------------------------------------------------------

def case_addin_errors(svc):
    feed_before, cur = feed_all(svc, "A")
    t = svc.tok("A")
    expect_input(svc.req("POST", "/v1/addin/log", t, raw=b"", content_type="message/rfc822"))
    expect_input(svc.req("POST", "/v1/addin/log", t, raw=b"hello", content_type="message/rfc822"))
    expect_input(svc.req("POST", "/v1/addin/log", t, raw=b"hello\r\nworld\r\n\r\nbody",
                         content_type="message/rfc822"))
    pid = make_profile(svc, "A", "big@bigmail.example")
    pad = "x" * 76 + "\n"  # 78 bytes on the wire (CRLF)
    body = pad * (MAX_MESSAGE_BYTES // (len(pad) + 1) + 10)
    big = make_msg(A_ADDR, ["big@bigmail.example"], subject="Too big", text=body)
    assert len(big) > MAX_MESSAGE_BYTES, f"test bug: {len(big)} bytes is not too big"
    expect(svc.req("POST", "/v1/addin/log", t, raw=big, content_type="message/rfc822"), 413)
    # Just under the cap is fine.
    small = make_msg(A_ADDR, ["big@bigmail.example"], subject="Just fits",
                     text=pad * ((MAX_MESSAGE_BYTES - 1024) // (len(pad) + 1)))
    assert len(small) <= MAX_MESSAGE_BYTES, f"test bug: {len(small)} bytes is too big"
    d, r = addin(svc, "A", small)
    assert d["created"] == 1, r.show()
    a = only_activity(svc, "A", pid)
    assert a["subject"] == "Just fits", a
    assert len(a["snippet"]) <= 500, f"snippet of {len(a['snippet'])} characters"
    expect(svc.req("POST", "/v1/addin/log", None, raw=small, content_type="message/rfc822"), 401)
    feed_after, _ = feed_all(svc, "A", since=cur)
    assert [x["profile_id"] for x in feed_after] == [pid], \
        f"the refused requests changed the feed: {feed_after}"


# --- org isolation ---------------------------------------------------------------------------

def case_org_isolation(svc):
    jack = svc.jack
    a_ids = {a["id"] for a in feed_all(svc, "A")[0]}
    assert a_ids, "org A's feed is empty"
    for who in ("userB", "adminB"):
        expect(svc.req("GET", f"/v1/profiles/{jack}/activities", svc.tok(who)), 404)
        got = {a["id"] for a in feed_all(svc, who)[0]}
        assert not (got & a_ids), f"{who} sees org A's activities in its feed"
    # The same message logged in org B is org B's own activity; org A's is untouched.
    before = timeline(svc, "A", jack)
    jack_b = make_profile(svc, "userB", "jack@candidates.example", "Jack in B")
    raw = make_msg("Jack <jack@candidates.example>", ["user@orgb.example"],
                   subject="Hello B", mid=before[-1]["message_id"])
    d, r = addin(svc, "userB", raw)
    assert d["outcome"] == "logged" and d["created"] == 1, r.show()
    b_act = only_activity(svc, "userB", jack_b)
    assert b_act["id"] not in a_ids and b_act["subject"] == "Hello B", b_act
    assert users_of(b_act) == [(svc.users["userB"]["id"], "user@orgb.example")], b_act
    assert timeline(svc, "A", jack) == before, "org B's copy changed org A's activities"
    got_b = feed_all(svc, "userB")[0]
    assert [x["id"] for x in got_b] == [b_act["id"]], f"org B's feed: {got_b}"
    assert b_act["id"] not in {a["id"] for a in feed_all(svc, "A")[0]}
    expect(svc.req("GET", f"/v1/profiles/{jack_b}/activities", svc.tok("A")), 404)


# --- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this")
    ap.add_argument("--keep", action="store_true", help="print the temp dir and keep it")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    mailtrail = os.path.join(a.bin_dir, "mailtrail")
    if not os.access(mailtrail, os.X_OK):
        print(f"FAIL setup: {mailtrail} is not built")
        print("0 passed, 1 failed")
        return 1
    with rig.tempdir("mailtrail-activities-") as tmp, contextlib.ExitStack() as stack:
        svc = Service(a.bin_dir, tmp, env={"MAILTRAIL_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES)})
        stack.callback(svc.stop)
        svc.jack = None
        svc.backfill = None
        only, r.only = r.only, None
        r.run("setup_orgs_users_serve", case_setup, svc)
        r.only = only
        if r.failed:
            print("setup failed; the other cases need it\n" + svc.log_tail())
            return r.exit_code()
        cases = [
            ("corpus_addin_every_field", case_corpus),
            ("two_recruiters_one_activity_direction", case_two_recruiters),
            ("shared_address_many_profiles", case_shared_address),
            ("identity_message_id_and_mailtrail_id", case_aliases_identity),
            ("identity_sha256_without_ids", case_identity_without_ids),
            ("never_log_org_user_domains", case_never_log),
            ("internal_only_nothing_stored", case_internal_only),
            ("backfill_create_patch_delete", case_backfill),
            ("erasure_all_participants_no_backfill", case_erasure_of_all_participants),
            ("timeline_newest_first_paging", case_timeline_paging),
            ("addin_errors_400_413", case_addin_errors),
            ("org_isolation", case_org_isolation),
        ]
        for name, fn in cases:
            if name.startswith(("never_log", "org_isolation")) and svc.jack is None:
                try:  # the two-recruiters case failed before making Jack
                    svc.jack = make_profile(svc, "A", "jack@candidates.example", "Jack Jones")
                except AssertionError as e:
                    print(f"     (could not make Jack's profile: {e})")
            r.run(name, fn, svc)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        if a.keep:
            keep = tmp + ".kept"
            import shutil
            shutil.copytree(tmp, keep, symlinks=True)
            print("kept in " + keep)
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
