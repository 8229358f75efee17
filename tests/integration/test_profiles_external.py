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
  csv_external       CSV import with a 4th column external_id: new ids created, a known one
                     replaces its profile (the upsert's rule; a repeated id in the file applies
                     in order), no id always creates; every stored row answered in `profiles`
                     {line, id, external_id, created}; bad ids and 3-field rows rejected; the
                     same file again updates the same profiles; per org
  csv_answer_cap     1,001 rows: `profiles` lists the first 1,000, `imported` counts them all;
                     the 3-column header still works (external_id null); a wrong header: 400

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


def import_csv(svc, who, text, status=200):
    return expect(svc.req("POST", "/v1/profiles/import", svc.tok(who), raw=text.encode(),
                          content_type="text/csv"), status)


CSV_EXTERNAL = (
    "Kind, Name, Emails, External_ID\n"
    "applicant,Ann,ann@csv.example,crm-ann\n"                    # 2: created
    "contact,Bob,bob@csv.example,\n"                              # 3: no id: created
    "contact,Anna C. again,anna.csv@cand.example, ats-42 \n"      # 4: case_upsert's: updated
    "applicant,Long," + "l@csv.example," + "x" * 129 + "\n"        # 5: rejected
    'applicant,"Ann, renamed",ann.new@csv.example;ann@csv.example,crm-ann\n'  # 6: updates 2
    "applicant,Three,three@csv.example\n"                         # 7: 3 fields: rejected
)


def case_csv_external(svc, ctx):
    anna = expect(svc.req("GET", path_of("ats-42"), svc.tok("recA")), 200)
    doc = import_csv(svc, "recA", CSV_EXTERNAL)
    assert doc["imported"] == 4 and doc["updated"] == 2, doc
    assert [(x["line"], x["external_id"], x["created"]) for x in doc["profiles"]] == [
        (2, "crm-ann", True), (3, None, True), (4, "ats-42", False), (6, "crm-ann", False)], doc
    by_line = {x["line"]: x["id"] for x in doc["profiles"]}
    assert by_line[2] == by_line[6] and by_line[4] == anna["id"], doc
    assert len(set(by_line.values())) == 3, doc
    assert [x["line"] for x in doc["rejected"]] == [5, 7] and doc["rejected_total"] == 2, doc
    assert "external_id" in doc["rejected"][0]["error"], doc
    assert "expected 4 fields" in doc["rejected"][1]["error"], doc
    ann = expect(svc.req("GET", path_of("crm-ann"), svc.tok("recA")), 200)
    assert ann["id"] == by_line[2] and ann["name"] == "Ann, renamed", ann
    assert ann["emails"] == ["ann.new@csv.example", "ann@csv.example"], ann
    got = expect(svc.req("GET", path_of("ats-42"), svc.tok("recA")), 200)
    assert (got["kind"], got["name"], got["emails"]) == (
        "contact", "Anna C. again", ["anna.csv@cand.example"]), got
    bob = expect(svc.req("GET", f"/v1/profiles/{by_line[3]}", svc.tok("recA")), 200)
    assert bob["name"] == "Bob" and bob["external_id"] is None, bob
    # The same file again: the rows with an id land on the same profiles; Bob is new again.
    again = import_csv(svc, "recA", CSV_EXTERNAL)
    assert again["imported"] == 4 and again["updated"] == 3, again
    ids2 = {x["line"]: x["id"] for x in again["profiles"]}
    assert (ids2[2], ids2[4], ids2[6]) == (by_line[2], by_line[4], by_line[6]), again
    assert ids2[3] != by_line[3], again
    # Per org: B's import of crm-ann creates B's own profile; A's is untouched.
    b = import_csv(svc, "recB", "kind,name,emails,external_id\n"
                                "applicant,B Ann,ann@csv.example,crm-ann\n")
    assert b["imported"] == 1 and b["updated"] == 0 and b["profiles"][0]["created"], b
    assert b["profiles"][0]["id"] != by_line[2], b
    ann = expect(svc.req("GET", path_of("crm-ann"), svc.tok("recA")), 200)
    assert ann["name"] == "Ann, renamed", ann


def case_csv_answer_cap(svc, ctx):
    rows = "".join(f"applicant,Cap {n},cap{n}@csv.example,cap-{n}\n" for n in range(1001))
    doc = import_csv(svc, "recA", "kind,name,emails,external_id\n" + rows)
    assert doc["imported"] == 1001 and doc["updated"] == 0, {k: doc[k] for k in ("imported",
                                                                                "updated")}
    assert len(doc["profiles"]) == 1000, len(doc["profiles"])
    assert [x["line"] for x in doc["profiles"]] == list(range(2, 1002))
    last = expect(svc.req("GET", path_of("cap-1000"), svc.tok("recA")), 200)
    assert last["name"] == "Cap 1000", last
    doc = import_csv(svc, "recA", "kind,name,emails\napplicant,Plain,plain@csv.example\n")
    assert doc["imported"] == 1 and doc["profiles"][0]["external_id"] is None, doc
    assert doc["profiles"][0]["created"] is True, doc
    for header in ("kind,name,external_id,emails", "kind,name,emails,external_id,x"):
        err = import_csv(svc, "recA", header + "\n", 400)
        assert "external_id" in err["error"]["message"], err


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
                         ("per_org", case_per_org),
                         ("csv_external", case_csv_external),
                         ("csv_answer_cap", case_csv_answer_cap)):
            r.run(name, fn, svc, ctx)
        if r.failed:
            print(svc.log_tail(40))
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
