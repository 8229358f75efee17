#!/usr/bin/python3
"""Runs one scripted-peer case against a client driver: smtp-drive, or imap-drive for IMAP
cases (`@protocol: imap`, or any case under tests/peer/cases_imap/).

  /usr/bin/python3 tests/peer/run_case.py --bin-dir BUILD_DIR tests/peer/cases/NAME.peer
        [--drive PATH] [--keep] [--split]

--split sends every `S:` line one byte per write, as `S/1:` does (S+ stays one write): the
IMAP cases run once as written and once split, so every response is read split at every byte.

A case file is a header of directives, then the peer script (format: see peer.py's docstring).
Directives (lines starting with '@'; may be repeated where it makes sense):

  @protocol: smtp|imap             which client driver runs (default smtp; imap for
                                   cases_imap/): smtp-drive or imap-drive (tests/tools)
  @args: ...                       extra driver arguments, shell-split (repeatable: joined)
  @password: TEXT                  written to a temp file, passed as --password-file FILE
  @expect-exit: N                  smtp-drive's exit status
  @expect-json: EXPR               a Python expression that must be true; variables:
                                     r        the list of JSON objects printed (one per line)
                                     session  the last object that has a "session" key (or None)
                                     msgs     the objects that have a "message" key
  @expect-transcript-lacks: TEXT   the client's masked transcript (--transcript) must not
                                   contain TEXT; neither may its stdout and stderr
  @expect-transcript-contains: TEXT  the masked transcript must contain TEXT
  @expect-stdout-contains: TEXT    smtp-drive's stdout must contain TEXT
  @timeout: SECONDS                kill smtp-drive after this long (default 60)
  @read-timeout: SECONDS           the peer's wait for each client line (default 15)

The harness starts the peer (tests/peer/peer.py) on a free loopback port with the rig's
CA-signed "localhost" certificate, then runs

  BUILD_DIR/tests/smtp-drive --host 127.0.0.1 --port PORT --transcript T.txt
                             --ca-file RIG-CA.pem [--password-file F] <@args>

and checks: the peer script ran to its end without a mismatch, no connection beyond the
script's was opened, smtp-drive's stdout is JSON lines, and every expectation. It prints a
readable report and exits 0 (pass) or 1 (fail).
"""

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "rig"))
import peer as peerlib  # noqa: E402
import rig  # noqa: E402

DRIVE_NAMES = {"smtp": ("smtp-drive", "smtp_drive"), "imap": ("imap-drive", "imap_drive")}
SHOW_MAX = 6000


class Case:
    def __init__(self, path):
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        with open(path, encoding="utf-8") as f:
            self.text = f.read()
        self.args = []
        self.protocol = "imap" if os.path.basename(os.path.dirname(os.path.abspath(path))) \
            == "cases_imap" else "smtp"
        self.password = None
        self.expect_exit = None
        self.expect_json = []
        self.lacks = []
        self.contains = []
        self.stdout_contains = []
        self.timeout = 60.0
        self.read_timeout = peerlib.DEFAULT_READ_TIMEOUT
        for lineno, line in enumerate(self.text.splitlines(), 1):
            if not line.startswith("@"):
                continue
            key, sep, value = line[1:].partition(":")
            if not sep:
                raise peerlib.ScriptError(f"line {lineno}: directive without ':': {line!r}")
            key = key.strip()
            value = value[1:] if value.startswith(" ") else value
            if key == "protocol":
                if value.strip() not in DRIVE_NAMES:
                    raise peerlib.ScriptError(f"line {lineno}: unknown protocol {value!r}")
                self.protocol = value.strip()
            elif key == "args":
                self.args += shlex.split(value)
            elif key == "password":
                self.password = value
            elif key == "expect-exit":
                self.expect_exit = int(value)
            elif key == "expect-json":
                compile(value, f"{path}:{lineno}", "eval")  # syntax errors show up early
                self.expect_json.append((lineno, value.strip()))
            elif key == "expect-transcript-lacks":
                self.lacks.append(value)
            elif key == "expect-transcript-contains":
                self.contains.append(value)
            elif key == "expect-stdout-contains":
                self.stdout_contains.append(value)
            elif key == "timeout":
                self.timeout = float(value)
            elif key == "read-timeout":
                self.read_timeout = float(value)
            else:
                raise peerlib.ScriptError(f"line {lineno}: unknown directive @{key}")
        self.blocks = peerlib.parse_script(self.text)


def find_drive(bin_dir, override, protocol="smtp"):
    if override:
        return override
    for name in DRIVE_NAMES[protocol]:
        p = os.path.join(bin_dir, "tests", name)
        if os.access(p, os.X_OK):
            return p
    return None


def shorten(text, limit=SHOW_MAX):
    if len(text) <= limit:
        return text
    return text[:limit // 2] + f"\n... [{len(text) - limit} characters cut] ...\n" + text[-limit // 2:]


def indent(text, prefix="    "):
    return "".join(prefix + line + "\n" for line in text.splitlines()) or prefix + "(empty)\n"


def run(case, bin_dir, drive_override, keep):
    checks = []  # (ok, text)

    def check(ok, text):
        checks.append((bool(ok), text))

    drive = find_drive(bin_dir, drive_override, case.protocol)
    dname = DRIVE_NAMES[case.protocol][0]
    report = {"stdout": "", "stderr": "", "transcript": "", "peer": "", "cmd": "", "exit": None,
              "elapsed": 0.0}
    with rig.tempdir(f"mailtrail-peer-{case.name}-") as tmp:
        certs = rig.make_certs(os.path.join(tmp, "certs"))
        transcript = os.path.join(tmp, "client-transcript.txt")
        peer_transcript = os.path.join(tmp, "peer-transcript.txt")
        peer = peerlib.Peer(case.blocks, cert=certs.server_cert, key=certs.server_key,
                            transcript=peer_transcript, read_timeout=case.read_timeout)
        port = peer.start()
        try:
            if drive is None:
                check(False, f"{dname} is built (looked for "
                      + " and ".join(os.path.join(bin_dir, "tests", n)
                                     for n in DRIVE_NAMES[case.protocol]) + ")")
            else:
                cmd = [drive, "--host", "127.0.0.1", "--port", str(port),
                       "--transcript", transcript, "--ca-file", certs.ca_cert]
                if case.password is not None:
                    pw_file = os.path.join(tmp, "password")
                    with open(pw_file, "w") as f:
                        f.write(case.password)
                    os.chmod(pw_file, 0o600)
                    cmd += ["--password-file", pw_file]
                cmd += case.args
                report["cmd"] = " ".join(shlex.quote(c) for c in cmd)
                start = time.monotonic()
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, start_new_session=True)
                try:
                    out, err = proc.communicate(timeout=case.timeout)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    out, err = proc.communicate()
                    timed_out = True
                finally:
                    if proc.poll() is None:  # we are being stopped: take the client along
                        try:
                            os.killpg(proc.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        proc.wait()
                report["elapsed"] = time.monotonic() - start
                report["exit"] = proc.returncode
                report["stdout"] = out.decode("utf-8", "backslashreplace")
                report["stderr"] = err.decode("utf-8", "backslashreplace")
                check(not timed_out, f"{dname} finished within {case.timeout:g} s")
                if proc.returncode is not None and proc.returncode < 0:
                    check(False, f"{dname} was not killed by a signal (got signal "
                          f"{-proc.returncode})")
            # The client is done; give the peer a moment to reach the end of its script.
            peer.wait(5.0 if drive else 0.0)
            extra = peer.check_extra()
        finally:
            peer.stop()
        report["peer"] = "\n".join(peer.lines)
        if os.path.exists(transcript):
            with open(transcript, encoding="utf-8", errors="backslashreplace") as f:
                report["transcript"] = f.read()
        if keep:
            import shutil

            kept = os.path.join("/tmp", f"peer-case-{case.name}")
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(tmp, kept)
            report["kept"] = kept

    # Peer script
    for e in peer.errors:
        check(False, "peer script: " + e)
    if not peer.errors:
        check(peer.finished, "peer script ran to its end" +
              ("" if peer.finished else f" (stuck: {peer.where})"))
    check(extra is None, extra or "no connection beyond the script's")

    if drive is not None:
        # JSON lines
        objs = []
        bad = []
        for line in report["stdout"].splitlines():
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except ValueError:
                bad.append(line)
        check(not bad, "stdout is JSON lines" + (f" (not JSON: {bad[0][:200]!r})" if bad else ""))
        if case.expect_exit is not None:
            check(report["exit"] == case.expect_exit,
                  f"exit status {case.expect_exit} (got {report['exit']})")
        env = {
            "r": objs,
            "session": next((o for o in reversed(objs) if isinstance(o, dict) and "session" in o), None),
            "msgs": [o for o in objs if isinstance(o, dict) and "message" in o],
        }
        for lineno, expr in case.expect_json:
            try:
                ok = eval(expr, {"__builtins__": __builtins__}, dict(env))  # noqa: S307
                check(ok, f"@expect-json {expr}")
            except Exception as e:
                check(False, f"@expect-json {expr}  ({type(e).__name__}: {e})")
        for text in case.lacks:
            if not os.path.exists(transcript) and not report["transcript"]:
                check(False, f"transcript lacks {text!r} (no transcript was written)")
                continue
            where = [n for n in ("transcript", "stdout", "stderr") if text in report[n]]
            check(not where, f"transcript/stdout/stderr lack {text!r}" +
                  (f" (found in {', '.join(where)})" if where else ""))
        for text in case.contains:
            check(text in report["transcript"], f"transcript contains {text!r}")
        for text in case.stdout_contains:
            check(text in report["stdout"], f"stdout contains {text!r}")

    ok = all(c[0] for c in checks)
    print(f"== peer case {case.name}: {'PASS' if ok else 'FAIL'}")
    print(f"   file: {case.path}")
    if report["cmd"]:
        print(f"   command: {report['cmd']}")
        print(f"   exit: {report['exit']} after {report['elapsed']:.2f} s")
    print("-- checks")
    for good, text in checks:
        print(("   ok    " if good else "   FAIL  ") + text.replace("\n", "\n         "))
    print("-- peer transcript (what the peer saw and did)")
    print(indent(shorten(report["peer"])), end="")
    if drive is not None:
        print("-- client transcript (--transcript)")
        print(indent(shorten(report["transcript"])), end="")
        print("-- stdout")
        print(indent(shorten(report["stdout"])), end="")
        print("-- stderr")
        print(indent(shorten(report["stderr"])), end="")
    if report.get("kept"):
        print(f"-- files kept in {report['kept']}")
    print(f"== {case.name}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description="run one scripted-peer case")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--drive", help="use this client binary instead of BIN_DIR/tests/smtp-drive (or imap-drive)")
    ap.add_argument("--keep", action="store_true", help="copy the temp dir to /tmp/peer-case-NAME")
    ap.add_argument("--split", action="store_true", help="send every S: line byte by byte")
    ap.add_argument("case")
    a = ap.parse_args()
    rig.install_signal_cleanup()
    try:
        case = Case(a.case)
        if a.split:
            for block in case.blocks:
                for step in block:
                    if step.kind == "S":
                        step.kind = "S/1"
            case.name += "-split"
    except (peerlib.ScriptError, OSError, ValueError, SyntaxError) as e:
        print(f"== peer case {a.case}: FAIL (bad case file: {e})")
        return 1
    return run(case, a.bin_dir, a.drive, a.keep)


if __name__ == "__main__":
    sys.exit(main())
