#!/usr/bin/python3
"""docs/quickstart.md, run as written (issue 16 item 7): the page's `sh` blocks, in order, in one
bash with `set -e`, against `scripts/run` (what `make run` starts after its build) started with
the environment the page gives, and Postfix's smtp-sink as the test mailbox. Only the port of
the API, the sink's port and the data directory are swapped for free ones.

  setup     smtp-sink on a free port; scripts/run with MAILTRAIL_DATA, MAILTRAIL_HTTP and the
            two settings the page names; the admin token file appears
  session   every sh block of the page runs and exits 0 (curl -f: any 4xx/5xx fails it)
  feed      the page's feed call answered an email_sent (source outbox) and an email_received
            (source addin) on the profile with external id crm-1001; the message is sent

Run: /usr/bin/python3 tests/integration/test_quickstart.py --bin-dir build
"""
import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "rig"))
import rig  # noqa: E402

PAGE = os.path.join(REPO, "docs", "quickstart.md")


def blocks(text, lang):
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, re.S | re.M)


def case_setup(ctx):
    page = open(PAGE).read()
    console = "\n".join(blocks(page, "console"))
    # The settings the page starts `make run` with, taken from the page itself.
    env_line = [line for line in console.splitlines() if line.rstrip().endswith("make run")]
    assert len(env_line) == 1, console
    settings = dict(re.findall(r"(MAILTRAIL_[A-Z_]+)=(\S+)", env_line[0]))
    assert set(settings) == {"MAILTRAIL_ALLOW_PRIVATE_HOSTS", "MAILTRAIL_NO_AUTH_HOSTS"}, settings
    assert "127.0.0.1:2525" in console, "the page's smtp-sink command changed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRAIL_")}
    env.update(settings)
    ctx["port"] = rig.free_port()
    env["MAILTRAIL_HTTP"] = f"127.0.0.1:{ctx['port']}"
    env["MAILTRAIL_DATA"] = ctx["data"]
    log = open(os.path.join(ctx["tmp"], "run.log"), "wb")
    ctx["log"] = log.name
    ctx["proc"] = rig.start_process([os.path.join(REPO, "scripts", "run")], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    assert rig.wait_port("127.0.0.1", ctx["port"], timeout=20, proc=ctx["proc"]), \
        open(ctx["log"]).read()
    assert os.path.getsize(os.path.join(ctx["data"], "admin.token")) > 20


def case_session(ctx):
    page = open(PAGE).read()
    script = "\n".join(blocks(page, "sh"))
    assert script.count("curl ") >= 7, script
    script = (script.replace("127.0.0.1:8025", f"127.0.0.1:{ctx['port']}")
              .replace("var/", ctx["data"] + "/")
              .replace('"port":2525', f'"port":{ctx["sink"].port}'))
    r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=REPO,
                       capture_output=True, timeout=120)
    ctx["out"] = r.stdout.decode()
    assert r.returncode == 0, (r.returncode, r.stdout.decode()[-2000:], r.stderr.decode()[-2000:])


def case_feed(ctx):
    docs = []
    dec = json.JSONDecoder()
    text, i = ctx["out"], 0
    while i < len(text):
        if text[i] in " \r\n\t":
            i += 1
            continue
        doc, i = dec.raw_decode(text, i)
        docs.append(doc)
    profile = [d for d in docs if d.get("external_id") == "crm-1001"]
    assert len(profile) == 1, docs
    feed = [d for d in docs if "activities" in d and "next_cursor" in d]
    assert len(feed) == 1, docs
    got = sorted((a["type"], a["source"]) for a in feed[0]["activities"]
                 if a["profile_id"] == profile[0]["id"])
    assert got == [("email_received", "addin"), ("email_sent", "outbox")], feed
    messages = [d for d in docs if "messages" in d]
    assert messages and messages[0]["messages"][0]["state"] == "sent", messages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    r = rig.Runner(a.only)
    if os.path.realpath(a.bin_dir) != os.path.realpath(os.path.join(REPO, "build")):
        # scripts/run starts build/mailtrail, as `make run` does.
        print("SKIP quickstart: scripts/run serves build/ only\n0 passed, 0 failed")
        return 0
    with rig.tempdir("mailtrail-quickstart-") as tmp, contextlib.ExitStack() as stack:
        ctx = {"tmp": tmp, "data": os.path.join(tmp, "var")}
        ctx["sink"] = stack.enter_context(rig.smtp_sink(backlog=100))
        stack.callback(lambda: ctx.get("proc") and rig.stop_process(ctx["proc"]))
        for name, fn in (("setup", case_setup), ("session", case_session), ("feed", case_feed)):
            r.run(name, fn, ctx)
            if r.failed:
                break
        if r.failed and ctx.get("log"):
            time.sleep(0.2)
            print(open(ctx["log"]).read()[-3000:])
    return r.exit_code()


if __name__ == "__main__":
    sys.exit(main())
