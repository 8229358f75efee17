#!/usr/bin/python3
"""Webhooks (issue 16; docs/webhooks.md, docs/api.md "Webhooks").

  /usr/bin/python3 tests/integration/test_webhooks.py --bin-dir BUILD [--only NAME]...
                                                       [--messages N] [--keep]

A receiver in this process (http.server on 127.0.0.1, allowed plain http through
MAILTRAIL_WEBHOOK_HTTP_HOSTS=127.0.0.1) checks every delivery's X-Mailtrail-Signature (HMAC-SHA256
with the secret shown at creation over "<t>.<body>") and records it. One recruiter sends through
a custom SMTP account on the rig's aiosmtpd sink (security none, auth none). Cases:

  create_secret_once   POST /v1/webhooks answers 201 with `secret` (whsec_...); GET one and the
                       list never show it; a user (not admin) gets 403
  refused_urls         http:// to a host not in webhook_http_hosts -> 400 naming it; https to a
                       private address (10.1.2.3) -> 400 from the SSRF rule; ftp:// and bad
                       event patterns -> 400
  run                  MESSAGES (default 1,000) messages to profiles' addresses while the
                       receiver answers 500 (a few seconds); then it answers 204, and once a
                       third of the expected events arrived `serve` is killed with SIGKILL and
                       restarted on the same data dir. Then: every activity of the feed arrived
                       (activity.created, data.id), each message's message.sent arrived, the
                       account's account.connected arrived; after dedup by event id every
                       activity and message has exactly one event; per object, events arrived
                       in feed order; every signature verified; duplicates (before dedup) are
                       printed
  delivery_log         GET /v1/webhooks/{id}/deliveries shows "retrying" attempts with status
                       500 and "delivered" ones with 204, paged by cursor
  replay               POST /v1/webhooks/{id}/replay {since_event} delivers that event again
                       (same id, valid signature); an id of no event -> 400
  https                two more webhooks on https receivers: the one whose certificate the rig's
                       CA (MAILTRAIL_CA_FILE) signed gets the account.connected of a PUT
                       /v1/smtp, signed; the self-signed one gets nothing, its log shows a
                       "retrying" attempt with no status and a certificate error
  delete               DELETE -> 204, then GET -> 404
  clean_stop           SIGTERM stops the server with nothing from the sanitizers in its log

Prints one PASS/FAIL line per case and "N passed, N failed"; exits 1 if any failed. Standard
library only.
"""

import argparse
import collections
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import rig  # noqa: E402
from service import Service, expect  # noqa: E402

REC = "rec@hooks-staffing.example"
PROFILES = 50
EVENTS = ["activity.*", "message.*", "account.*", "notification"]


class Receiver:
    """Records deliveries in arrival order; answers `self.status`."""

    def __init__(self, tls=None):
        self.lock = threading.Lock()
        self.status = 204
        self.secret = None
        self.deliveries = []  # (event id, type, object id, seq, body doc)
        self.bad_signatures = []
        self.answered = collections.Counter()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                status = outer.take(self.headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            # The handshake happens at accept: a client that refuses the certificate fails
            # there (socketserver drops the connection) and no request is recorded.
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def verify(self, headers, body):
        sig = headers.get("X-Mailtrail-Signature") or ""
        parts = dict(p.split("=", 1) for p in sig.split(",") if "=" in p)
        t, v1 = parts.get("t"), parts.get("v1")
        if not t or not v1 or self.secret is None:
            return False
        want = hmac.new(self.secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, v1) and abs(time.time() - int(t)) < 300

    def take(self, headers, body):
        with self.lock:
            status = self.status
            self.answered[status] += 1
            if status >= 300:
                return status
            try:
                doc = json.loads(body)
            except ValueError:
                self.bad_signatures.append(("not json", body[:200]))
                return 400
            if not self.verify(headers, body):
                self.bad_signatures.append((headers.get("X-Mailtrail-Signature"), doc.get("id")))
            if headers.get("X-Mailtrail-Event-Id") != doc.get("id"):
                self.bad_signatures.append(("event id header", doc.get("id")))
            data = doc.get("data") or {}
            obj = data.get("id") if not doc["type"].startswith("account.") else \
                data.get("protocol", "") + ":" + data.get("user_id", "")
            seq = int(doc["id"].rsplit("_", 1)[1])
            self.deliveries.append((doc["id"], doc["type"], obj, seq, doc))
            return status

    def snapshot(self):
        with self.lock:
            return list(self.deliveries)

    def unique_ids(self):
        with self.lock:
            return len({d[0] for d in self.deliveries})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def feed(svc, token):
    """Every activity of the org's feed, in feed order."""
    out, since = [], None
    while True:
        path = "/v1/activities?limit=1000" + (f"&since={since}" if since else "")
        doc = expect(svc.req("GET", path, token), 200)
        out.extend(doc["activities"])
        if not doc["activities"]:
            return out
        since = doc["next_cursor"]


def wait_for(pred, timeout, what, svc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s\n{svc.log_tail(40)}")


def case_setup(svc, ctx, sink, recv):
    doc = svc.init("Hooks Org", "admin@hooks-staffing.example")
    svc.users["admin"] = {"id": doc["user_id"], "token": doc["token"]}
    ctx["org_id"] = doc["org_id"]
    svc.start()
    admin = svc.tok("admin")
    expect(svc.req("PUT", "/v1/org", admin, {"domains": ["hooks-staffing.example"]}), 200)
    expect(svc.req("PUT", "/v1/org/features", admin, {"custom_smtp": True}), 200)
    u = expect(svc.req("POST", "/v1/users", admin, {"email": REC, "name": "Rec Ruiter", "role": "user"}), 201)
    svc.users["rec"] = {"id": u["id"], "token": u["token"]}
    csv = "kind,name,emails\n" + "".join(
        f"applicant,Cand {n},c{n}@hooks-cand.example\n" for n in range(PROFILES))
    r = svc.req("POST", "/v1/profiles/import", admin, raw=csv.encode(), content_type="text/csv")
    assert expect(r, 200)["imported"] == PROFILES, r.show()


def case_create_secret_once(svc, ctx, sink, recv):
    admin = svc.tok("admin")
    r = svc.req("POST", "/v1/webhooks", admin, {"url": recv.url(), "events": EVENTS})
    doc = expect(r, 201)
    assert doc["id"].startswith("whk_") and doc["secret"].startswith("whsec_"), doc
    assert len(doc["secret"]) == 6 + 64, doc
    assert doc["events"] == EVENTS and doc["url"] == recv.url() and doc["active"] is True, doc
    recv.secret = doc["secret"]
    ctx["hook"] = doc["id"]
    one = expect(svc.req("GET", f"/v1/webhooks/{doc['id']}", admin), 200)
    assert "secret" not in one and one["id"] == doc["id"], one
    lst = expect(svc.req("GET", "/v1/webhooks", admin), 200)
    assert [h["id"] for h in lst["webhooks"]] == [doc["id"]], lst
    assert all("secret" not in h for h in lst["webhooks"]), lst
    assert recv.secret not in json.dumps(lst) and recv.secret not in json.dumps(one)
    # Admin only.
    expect(svc.req("GET", "/v1/webhooks", svc.tok("rec")), 403)
    expect(svc.req("POST", "/v1/webhooks", svc.tok("rec"), {"url": recv.url(), "events": EVENTS}), 403)
    assert recv.secret.encode() not in svc.log_text(), "the secret is in the log"


def case_refused_urls(svc, ctx, sink, recv):
    admin = svc.tok("admin")
    r = svc.req("POST", "/v1/webhooks", admin, {"url": "http://hooks.example.com/in", "events": EVENTS})
    expect(r, 400)
    assert "webhook_http_hosts" in r.err()[1], r.show()
    r = svc.req("POST", "/v1/webhooks", admin, {"url": "https://10.1.2.3/in", "events": EVENTS})
    expect(r, 400)
    assert "10.1.2.3" in r.err()[1] or "private" in r.err()[1].lower() or "network" in r.err()[1], r.show()
    r = svc.req("POST", "/v1/webhooks", admin, {"url": "ftp://127.0.0.1/in", "events": EVENTS})
    expect(r, 400)
    r = svc.req("POST", "/v1/webhooks", admin, {"url": recv.url(), "events": ["activity.deleted"]})
    expect(r, 400)
    r = svc.req("POST", "/v1/webhooks", admin, {"url": recv.url(), "events": []})
    expect(r, 400)
    lst = expect(svc.req("GET", "/v1/webhooks", admin), 200)
    assert len(lst["webhooks"]) == 1, lst


def send_all(svc, token, n):
    import http.client
    ids = [None] * n
    lock = threading.Lock()
    it = iter(range(n))

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=60)
        try:
            while True:
                with lock:
                    i = next(it, None)
                if i is None:
                    return
                body = json.dumps({"to": [f"Cand {i % PROFILES} <c{i % PROFILES}@hooks-cand.example>"],
                                   "subject": f"hook test {i}", "text": f"message {i}"})
                conn.request("POST", "/v1/messages", body=body,
                             headers={"Authorization": "Bearer " + token,
                                      "Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                assert r.status == 202, f"POST {i} -> {r.status} {raw[:200]!r}"
                ids[i] = json.loads(raw)["id"]
        finally:
            conn.close()

    ts = [threading.Thread(target=worker, daemon=True) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(ids), "some POSTs failed"
    return ids


def case_run(svc, ctx, sink, recv, count):
    admin, token = svc.tok("admin"), svc.tok("rec")
    t = {}
    recv.status = 500  # the receiver is down for a while
    expect(svc.req("PUT", "/v1/smtp", token,
                   {"host": "127.0.0.1", "port": sink.port_plain, "security": "none",
                    "auth": "none", "from": REC, "accept_disclaimer": True}), 200)
    t0 = time.monotonic()
    ids = send_all(svc, token, count)
    t["enqueue"] = time.monotonic() - t0
    time.sleep(max(0.0, 4.0 - (time.monotonic() - t0)))
    assert recv.answered[500] >= 1, f"no delivery was tried while the receiver failed\n{svc.log_tail()}"
    recv.status = 204
    expected = 2 * count + 1  # activities, message.sent, account.connected
    wait_for(lambda: recv.unique_ids() >= expected // 3, 90, f"a third of {expected} events", svc)
    svc.proc.send_signal(signal.SIGKILL)
    svc.proc.wait(10)
    at_kill = recv.unique_ids()
    t["to_kill"] = time.monotonic() - t0
    svc.start()

    def all_sent():
        done = 0
        for mid in ids[::max(1, count // 50)]:
            doc = expect(svc.req("GET", f"/v1/messages/{mid}", token), 200)
            done += doc["state"] in ("sent", "partial", "failed", "cancelled")
        return done == len(ids[::max(1, count // 50)])

    wait_for(all_sent, 120, "every message final", svc)
    acts = feed(svc, admin)
    assert len(acts) == count, f"{len(acts)} activities in the feed for {count} messages"
    act_ids = {a["id"] for a in acts}
    msg_ids = set(ids)

    def have_all():
        got = recv.snapshot()
        seen_acts = {d[2] for d in got if d[1].startswith("activity.")}
        seen_msgs = {d[2] for d in got if d[1] == "message.sent"}
        return act_ids <= seen_acts and msg_ids <= seen_msgs
    try:
        wait_for(have_all, 30, "every activity and message.sent delivered", svc)
    except AssertionError:
        got = recv.snapshot()
        types = collections.Counter(d[1] for d in got)
        missing_a = act_ids - {d[2] for d in got if d[1].startswith("activity.")}
        missing_m = msg_ids - {d[2] for d in got if d[1] == "message.sent"}
        raise AssertionError(f"received {types}; {len(missing_a)} activities and "
                             f"{len(missing_m)} messages missing, e.g. "
                             f"{sorted(missing_a)[:2]} {sorted(missing_m)[:2]}")
    t["total"] = time.monotonic() - t0
    got = recv.snapshot()
    assert not recv.bad_signatures, f"bad signatures: {recv.bad_signatures[:5]}"
    first = {}
    for d in got:
        first.setdefault(d[0], d)
    dups = len(got) - len(first)
    uniq = list(first.values())
    per_obj = collections.defaultdict(list)
    for d in uniq:
        per_obj[(d[1].split(".")[0], d[2])].append(d[3])
    for key, seqs in per_obj.items():
        assert seqs == sorted(seqs), f"{key}: events out of order {seqs}"
    created = collections.Counter(d[2] for d in uniq if d[1] == "activity.created")
    assert set(created) == act_ids and all(v == 1 for v in created.values()), \
        f"activity.created per activity: {collections.Counter(created.values())}"
    sent = collections.Counter(d[2] for d in uniq if d[1] == "message.sent")
    assert set(sent) == msg_ids and all(v == 1 for v in sent.values()), "message.sent per message"
    acct = [d for d in uniq if d[1] == "account.connected"]
    assert len(acct) == 1 and acct[0][4]["data"]["protocol"] == "smtp", acct
    # Same content as the feed: the activity's data is the API's activity.
    by_id = {d[2]: d[4]["data"] for d in uniq if d[1] == "activity.created"}
    a0 = acts[0]
    assert by_id[a0["id"]]["profile_id"] == a0["profile_id"] and \
        by_id[a0["id"]]["subject"] == a0["subject"], (by_id[a0["id"]], a0)
    ctx["first_event"] = uniq[0]
    print(f"     {count} messages: {len(uniq)} events, {dups} duplicate deliveries "
          f"({at_kill} unique before the kill), 500s answered {recv.answered[500]}; "
          f"enqueue {t['enqueue']:.1f}s, kill at {t['to_kill']:.1f}s, all in {t['total']:.1f}s",
          flush=True)


def case_delivery_log(svc, ctx, sink, recv):
    admin = svc.tok("admin")
    hook = ctx["hook"]
    outcomes = collections.Counter()
    statuses = collections.Counter()
    cursor, pages = None, 0
    while True:
        path = f"/v1/webhooks/{hook}/deliveries?limit=100" + (f"&cursor={cursor}" if cursor else "")
        doc = expect(svc.req("GET", path, admin), 200)
        pages += 1
        for d in doc["deliveries"]:
            outcomes[d["outcome"]] += 1
            statuses[d["status"]] += 1
            assert d["event_id"].startswith("evt_") and d["attempt"] >= 1, d
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert pages >= 2, pages
    assert outcomes["retrying"] >= 1 and statuses[500] >= 1, (outcomes, statuses)
    assert outcomes["delivered"] >= 2 * 100 and statuses[204] == outcomes["delivered"], (outcomes, statuses)
    one = expect(svc.req("GET", f"/v1/webhooks/{hook}", admin), 200)
    assert one["failed_attempts"] == 0, one
    expect(svc.req("GET", f"/v1/webhooks/{hook}/deliveries?cursor=nope", admin), 400)
    expect(svc.req("GET", "/v1/webhooks/whk_nothere/deliveries", admin), 404)


def case_replay(svc, ctx, sink, recv):
    admin = svc.tok("admin")
    hook = ctx["hook"]
    first = ctx["first_event"]
    before = sum(1 for d in recv.snapshot() if d[0] == first[0])
    n_before = len(recv.snapshot())
    doc = expect(svc.req("POST", f"/v1/webhooks/{hook}/replay", admin, {"since_event": first[0]}), 200)
    assert doc["id"] == hook, doc
    wait_for(lambda: sum(1 for d in recv.snapshot() if d[0] == first[0]) > before, 30,
             "the replayed event", svc)
    # Everything after it comes again too, in order.
    wait_for(lambda: len(recv.snapshot()) - n_before >= 10, 30, "the events after it", svc)
    assert not recv.bad_signatures, recv.bad_signatures[:3]
    expect(svc.req("POST", f"/v1/webhooks/{hook}/replay", admin,
                   {"since_event": f"evt_{ctx['org_id'].split('_', 1)[1]}_999999999"}), 400)
    expect(svc.req("POST", f"/v1/webhooks/{hook}/replay", admin, {"since_event": "evt_other_1"}), 400)


def case_https(svc, ctx, sink, recv):
    """HTTPS verified: a receiver whose certificate the CA file vouches for gets the event; one
    with a self-signed certificate gets nothing, and the log says why."""
    admin, token = svc.tok("admin"), svc.tok("rec")
    good, bad = ctx["https_good"], ctx["https_bad"]
    ids = {}
    for name, rv in (("good", good), ("bad", bad)):
        doc = expect(svc.req("POST", "/v1/webhooks", admin,
                             {"url": rv.url(), "events": ["account.*"]}), 201)
        rv.secret = doc["secret"]
        ids[name] = doc["id"]
    expect(svc.req("PUT", "/v1/smtp", token,
                   {"host": "127.0.0.1", "port": sink.port_plain, "security": "none",
                    "auth": "none", "from": REC, "accept_disclaimer": True}), 200)
    wait_for(lambda: any(d[1] == "account.connected" for d in good.snapshot()), 30,
             "account.connected at the https receiver", svc)
    assert not good.bad_signatures, good.bad_signatures

    def bad_logged():
        doc = expect(svc.req("GET", f"/v1/webhooks/{ids['bad']}/deliveries", admin), 200)
        return [d for d in doc["deliveries"] if d["outcome"] == "retrying"]
    wait_for(bad_logged, 30, "a failed attempt at the self-signed receiver", svc)
    d = bad_logged()[0]
    assert d["status"] is None and d["error"] and (
        "certificate" in d["error"].lower() or "ssl" in d["error"].lower()), d
    assert bad.snapshot() == [], bad.snapshot()
    one = expect(svc.req("GET", f"/v1/webhooks/{ids['bad']}", admin), 200)
    assert one["failed_attempts"] >= 1 and one["next_attempt_at"] is not None, one
    for i in ids.values():
        expect(svc.req("DELETE", f"/v1/webhooks/{i}", admin), 204)


def case_delete(svc, ctx, sink, recv):
    admin = svc.tok("admin")
    hook = ctx["hook"]
    expect(svc.req("DELETE", f"/v1/webhooks/{hook}", admin), 204)
    expect(svc.req("GET", f"/v1/webhooks/{hook}", admin), 404)
    expect(svc.req("DELETE", f"/v1/webhooks/{hook}", admin), 404)


def case_clean_stop(svc):
    """SIGTERM: the server stops; an ASan/UBSan build's reports would be in the log."""
    svc.stop()
    log = svc.log_text()
    assert b"serve.stopped" in log, svc.log_tail()
    assert b"Sanitizer" not in log and b"runtime error" not in log, \
        log.decode(errors="replace")[-3000:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    t0 = time.monotonic()
    with rig.tempdir("mailtrail-webhooks-") as tmp, contextlib.ExitStack() as stack:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        sink = stack.enter_context(rig.auth_sink(certs, os.path.join(tmp, "sink"), starttls=False,
                                                 tls=False, plain=True))
        recv = Receiver()
        stack.callback(recv.close)
        ctx = {}
        ctx["https_good"] = Receiver(rig.server_ssl_context(certs.server_cert, certs.server_key))
        ctx["https_bad"] = Receiver(rig.server_ssl_context(certs.selfsigned_cert, certs.selfsigned_key))
        for rv in (ctx["https_good"], ctx["https_bad"]):
            stack.callback(rv.close)
        svc = Service(a.bin_dir, tmp, certs=certs, env={
            "MAILTRAIL_NO_AUTH_HOSTS": "127.0.0.1",
            "MAILTRAIL_WEBHOOK_HTTP_HOSTS": "127.0.0.1",
            "MAILTRAIL_LOG_LEVEL": "info",
        })
        stack.callback(svc.stop)
        only, r.only = r.only, None
        r.run("setup", case_setup, svc, ctx, sink, recv)
        r.run("create_secret_once", case_create_secret_once, svc, ctx, sink, recv)
        r.only = only
        if r.failed:
            print(svc.log_tail(40))
            return r.exit_code()
        r.run("refused_urls", case_refused_urls, svc, ctx, sink, recv)
        r.run("run", case_run, svc, ctx, sink, recv, a.messages)
        if "first_event" in ctx:
            r.run("delivery_log", case_delivery_log, svc, ctx, sink, recv)
            r.run("replay", case_replay, svc, ctx, sink, recv)
        r.run("https", case_https, svc, ctx, sink, recv)
        r.run("delete", case_delete, svc, ctx, sink, recv)
        r.run("clean_stop", case_clean_stop, svc)
        if r.failed:
            print("--- server log (tail)\n" + svc.log_tail(40), flush=True)
        if a.keep:
            shutil.copytree(tmp, tmp + ".kept", symlinks=True)
            print("kept in " + tmp + ".kept")
    print(f"     total {time.monotonic() - t0:.1f}s")
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
