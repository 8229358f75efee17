#!/usr/bin/python3
"""Profiles keyed by the CRM's own id, and shared addresses said aloud (issue 16 item 2).

  setup              two orgs, a recruiter in each
  create_external    POST with external_id: echoed; the same external_id again: 409
  shared_with        a second profile with an address the first has: allowed, and its reply
                     names the first in shared_with (the first's own reply had none)
  upsert             PUT /v1/profiles/by-external-id/{id}: 201 created, then 200 with the same
                     id and every field replaced; GET by external id; unknown: 404
  odd_ids            external ids with '/', spaces, non-ASCII and the word "activities" round
                     trip through the path (percent-encoded)
  patch_external     PATCH sets, moves (another's id: 409, nothing changed) and clears ("")
  bad_external       control characters, 129 bytes, a body id differing from the path: 400
  per_org            another org may use the same external id; neither sees the other's

Run: /usr/bin/python3 tests/integration/test_profiles_external.py --bin-dir build
"""
import argparse
import contextlib
import os
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402


def path_of(external_id):
    return "/v1/profiles/by-external-id/" + urllib.parse.quote(external_id, safe="")


def case_setup(svc, ctx):
    for org, admin in (("A", "admin@a.example"), ("B", "admin@b.example")):
        a = svc.init(f"Org {org}", admin)
        svc.users["admin" + org] = {"id": a["user_id"], "token": a["token"]}
    svc.start()
    for org in ("A", "B"):
        doc = expect(svc.req("POST", "/v1/users", svc.tok("admin" + org),
                             {"email": f"rec@{org.lower()}.example", "name": "Rec",
                              "role": "user"}), 201)
        svc.users["rec" + org] = {"id": doc["id"], "token": doc["token"]}


def create(svc, who, body, status=201):
    return expect(svc.req("POST", "/v1/profiles", svc.tok(who), body), status)


def case_create_external(svc, ctx):
    doc = create(svc, "recA", {"kind": "applicant", "name": "Jack", "external_id": "cand-1",
                               "emails": ["jack@cand.example"]})
    assert doc["external_id"] == "cand-1" and doc["shared_with"] == [], doc
    ctx["jack"] = doc["id"]
    got = expect(svc.req("GET", f"/v1/profiles/{doc['id']}", svc.tok("recA")), 200)
    assert got["external_id"] == "cand-1", got
    err = create(svc, "recA", {"kind": "applicant", "name": "Jack Again",
                               "external_id": "cand-1", "emails": ["other@cand.example"]}, 409)
    assert "conflicts" in err["error"]["message"], err
    plain = create(svc, "recA", {"kind": "contact", "name": "No Id",
                                 "emails": ["noid@client.example"]})
    assert plain["external_id"] is None, plain


def case_shared_with(svc, ctx):
    doc = create(svc, "recA", {"kind": "contact", "name": "Jack at work",
                               "emails": ["Jack@Cand.example", "jack.work@client.example"]})
    assert doc["shared_with"] == [ctx["jack"]], doc
    # a change that adds a shared address says so too
    doc2 = create(svc, "recA", {"kind": "contact", "name": "Solo",
                                "emails": ["solo@client.example"]})
    assert doc2["shared_with"] == [], doc2
    patched = expect(svc.req("PATCH", f"/v1/profiles/{doc2['id']}", svc.tok("recA"),
                             {"emails": ["solo@client.example", "jack.work@client.example"]}),
                     200)
    assert patched["shared_with"] == [doc["id"]], patched


def case_upsert(svc, ctx):
    p = path_of("ats-42")
    expect(svc.req("GET", p, svc.tok("recA")), 404)
    a = expect(svc.req("PUT", p, svc.tok("recA"),
                       {"kind": "applicant", "name": "Anna", "emails": ["anna@cand.example"]}),
               201)
    assert a["external_id"] == "ats-42" and a["name"] == "Anna", a
    b = expect(svc.req("PUT", p, svc.tok("recA"),
                       {"kind": "contact", "name": "Anna B.",
                        "emails": ["anna.b@cand.example", "anna@cand.example"]}), 200)
    assert b["id"] == a["id"], (a, b)
    assert (b["kind"], b["name"], b["emails"]) == (
        "contact", "Anna B.", ["anna.b@cand.example", "anna@cand.example"]), b
    got = expect(svc.req("GET", p, svc.tok("recA")), 200)
    assert got["id"] == a["id"] and got["name"] == "Anna B.", got
    # the same external_id in the body is fine; a PUT needs every field
    expect(svc.req("PUT", p, svc.tok("recA"), {"kind": "contact", "name": "Anna C.",
                                               "external_id": "ats-42",
                                               "emails": ["anna@cand.example"]}), 200)
    expect(svc.req("PUT", p, svc.tok("recA"), {"name": "No kind",
                                               "emails": ["anna@cand.example"]}), 400)


def case_odd_ids(svc, ctx):
    for ext in ("crm/lead/7", "with space", "Zoë-ü", "activities", "a%2Fb"):
        doc = expect(svc.req("PUT", path_of(ext), svc.tok("recA"),
                             {"kind": "applicant", "name": "Odd " + ext,
                              "emails": [f"odd{abs(hash(ext)) % 100000}@cand.example"]}), 201)
        assert doc["external_id"] == ext, (ext, doc)
        got = expect(svc.req("GET", path_of(ext), svc.tok("recA")), 200)
        assert got["id"] == doc["id"], (ext, got)


def case_patch_external(svc, ctx):
    doc = create(svc, "recA", {"kind": "applicant", "name": "Lea",
                               "emails": ["lea@cand.example"]})
    pid = doc["id"]
    got = expect(svc.req("PATCH", f"/v1/profiles/{pid}", svc.tok("recA"),
                         {"external_id": "cand-lea"}), 200)
    assert got["external_id"] == "cand-lea" and got["name"] == "Lea", got
    # another profile's id: 409, nothing changed
    expect(svc.req("PATCH", f"/v1/profiles/{pid}", svc.tok("recA"),
                   {"external_id": "cand-1", "name": "Renamed"}), 409)
    got = expect(svc.req("GET", f"/v1/profiles/{pid}", svc.tok("recA")), 200)
    assert got["external_id"] == "cand-lea" and got["name"] == "Lea", got
    got = expect(svc.req("PATCH", f"/v1/profiles/{pid}", svc.tok("recA"),
                         {"external_id": ""}), 200)
    assert got["external_id"] is None, got
    expect(svc.req("GET", path_of("cand-lea"), svc.tok("recA")), 404)
    # freed: another profile may take it
    create(svc, "recA", {"kind": "applicant", "name": "Lea 2", "external_id": "cand-lea",
                         "emails": ["lea2@cand.example"]})


def case_bad_external(svc, ctx):
    for ext in ("tab\there", "x" * 129, "nul\u0001"):
        r = svc.req("POST", "/v1/profiles", svc.tok("recA"),
                    {"kind": "applicant", "name": "Bad", "external_id": ext,
                     "emails": ["bad@cand.example"]})
        doc = expect(r, 400)
        assert "external_id" in doc["error"]["message"], doc
    doc = expect(svc.req("PUT", path_of("ats-1"), svc.tok("recA"),
                         {"kind": "applicant", "name": "Mismatch", "external_id": "ats-2",
                          "emails": ["m@cand.example"]}), 400)
    assert "differs" in doc["error"]["message"], doc
    expect(svc.req("GET", path_of("ats-1"), svc.tok("recA")), 404)


def case_per_org(svc, ctx):
    doc = expect(svc.req("PUT", path_of("cand-1"), svc.tok("recB"),
                         {"kind": "applicant", "name": "B's Jack",
                          "emails": ["jack@cand.example"]}), 201)
    assert doc["id"] != ctx["jack"] and doc["shared_with"] == [], doc
    got = expect(svc.req("GET", path_of("cand-1"), svc.tok("recA")), 200)
    assert got["id"] == ctx["jack"], got
    expect(svc.req("GET", path_of("ats-42"), svc.tok("recB")), 404)


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
    with rig.tempdir("mailtrail-profiles-ext-") as tmp, contextlib.ExitStack() as stack:
        svc = Service(a.bin_dir, tmp)
        stack.callback(svc.stop)
        ctx = {}
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx)
        r.only = only
        if r.failed:
            print("setup failed\n" + svc.log_tail(40))
            return r.exit_code()
        for name, fn in (("create_external", case_create_external),
                         ("shared_with", case_shared_with),
                         ("upsert", case_upsert),
                         ("odd_ids", case_odd_ids),
                         ("patch_external", case_patch_external),
                         ("bad_external", case_bad_external),
                         ("per_org", case_per_org)):
            r.run(name, fn, svc, ctx)
        if r.failed:
            print(svc.log_tail(40))
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
