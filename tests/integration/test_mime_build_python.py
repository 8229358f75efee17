#!/usr/bin/python3
"""Messages from mime_build_message() (src/mime/build.c) read back by an independent parser,
Python's `email` package with the modern policy, so that what GMime writes is checked against a
second implementation and not only against our own GMime-based reader.

  /usr/bin/python3 tests/integration/test_mime_build_python.py --bin-dir BUILD [--only NAME]...

BUILD/tests/mime-build-dump (tests/tools/mime_build_dump.c) writes six fixed messages; the
expected values below mirror its inputs. No server needed. Prints one PASS/FAIL line per case
and "N passed, N failed"; exits 1 if any failed.
"""

import argparse
import email.policy
import os
import subprocess
import sys
import tempfile
import traceback
from email.headerregistry import Address
from email.parser import BytesParser

DATE = "Tue, 14 Nov 2023 22:13:20 +0000"
PDF = bytes((i * 7 + 3) & 0xFF for i in range(3000))
PNG = bytes(255 - i for i in range(70))
JOHN = ("Smith, John (Boss)", "john@example.com")
LI = ("李小龙", "li@example.cn")
ANNA = ("Anna Smith", "anna@example.com")
JUERGEN = ("Jürgen Müller", "juergen@example.de")
UNSUBSCRIBE = (
    "<https://mailtrail.example.com/u/"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef>, "
    "<mailto:unsubscribe@mailtrail.example.com?subject=0123456789abcdef>")


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def equal(got, want, what):
    if got != want:
        raise CheckFailed(f"{what}: got {got!r}, want {want!r}")


def wire_checks(raw):
    """The promise of build.h: CRLF line ends, 7-bit, lines within 998 octets."""
    check(raw.endswith(b"\r\n"), "ends with CRLF")
    check(all(b < 0x80 for b in raw), "7-bit")
    check(b"\r\n" in raw, "has CRLF")
    check(raw.replace(b"\r\n", b"").find(b"\n") < 0, "no bare LF")
    check(raw.replace(b"\r\n", b"").find(b"\r") < 0, "no bare CR")
    for n, line in enumerate(raw.split(b"\r\n")):
        check(len(line) <= 998, f"line {n + 1} is {len(line)} octets")
    check(b"\r\nMIME-Version: 1.0\r\n" in raw, "MIME-Version: 1.0")


def mailboxes(msg, name):
    header = msg[name]
    check(header is not None, f"{name} present")
    check(not header.defects, f"{name} without defects: {header.defects}")
    return [(a.display_name, a.addr_spec) for a in header.addresses]


def common(msg, subject, from_, to, message_id, mailtrail_id):
    equal(str(msg["Subject"]), subject, "Subject")
    equal(mailboxes(msg, "From"), [from_], "From")
    equal(mailboxes(msg, "To"), to, "To")
    equal(str(msg["Message-ID"]), f"<{message_id}>", "Message-ID")
    equal(str(msg["X-Mailtrail-Id"]), mailtrail_id, "X-Mailtrail-Id")
    equal(str(msg["Date"]), DATE, "Date")
    equal(msg["Date"].datetime.timestamp(), 1700000000, "Date as seconds")
    check(msg["Bcc"] is None, "no Bcc")
    for name in ("From", "To", "Subject", "Message-ID", "Date", "MIME-Version"):
        equal(len(msg.get_all(name, [])), 1, f"one {name}")
    check(not msg.defects, f"message without defects: {msg.defects}")


def text_of(part, subtype):
    equal(part.get_content_type(), f"text/{subtype}", "text part type")
    equal(part.get_content_charset(), "utf-8", "charset")
    # the wire form has CRLF line ends, which Python's content manager keeps as they are
    return part.get_content().replace("\r\n", "\n")


def case_ascii_text(msg):
    common(msg, "Hello there", ANNA, [JOHN], "ascii.1@mailtrail.example.com", "msg_ascii1")
    equal(msg["Content-Transfer-Encoding"], "7bit", "CTE")
    equal(text_of(msg, "plain"), "Hi John,\n\nshort ASCII lines only.\n", "text")


def case_unicode_text(msg):
    common(msg, "Zusammenfassung – Übersicht 🎉", JUERGEN, [JOHN, LI],
           "unicode.1@mailtrail.example.com", "msg_unicode1")
    equal(mailboxes(msg, "Cc"), [("", "cc@example.org")], "Cc")
    equal(msg["Content-Transfer-Encoding"], "quoted-printable", "CTE")
    equal(text_of(msg, "plain"), "Grüße aus Köln – 🎉\nZweite Zeile.\n", "text")


def case_html_only(msg):
    common(msg, "HTML only", ANNA, [JOHN], "html.1@mailtrail.example.com", "msg_html1")
    check(not msg.is_multipart(), "single part")
    equal(text_of(msg, "html"), "<p>Hello <b>world</b> &amp; Grüße</p>\n", "html")


def check_alternative(part, plain, html):
    equal(part.get_content_type(), "multipart/alternative", "alternative")
    subparts = part.get_payload()
    equal(len(subparts), 2, "alternative parts")
    equal(text_of(subparts[0], "plain"), plain, "plain first")
    equal(text_of(subparts[1], "html"), html, "html second")


def case_alternative(msg):
    common(msg, "Both parts", JUERGEN, [JOHN], "alt.1@mailtrail.example.com", "msg_alt1")
    check_alternative(msg, "Plain version\n", "<p>HTML version</p>\n")
    equal(text_of(msg.get_body(("html",)), "html"), "<p>HTML version</p>\n", "get_body html")
    equal(text_of(msg.get_body(("plain",)), "plain"), "Plain version\n", "get_body plain")


def case_attachments(msg):
    common(msg, "Bewerbung", JUERGEN, [JOHN], "att.1@mailtrail.example.com", "msg_att1")
    equal(msg.get_content_type(), "multipart/mixed", "mixed")
    parts = msg.get_payload()
    equal(len(parts), 3, "mixed parts")
    check_alternative(parts[0], "Anbei mein Lebenslauf.\n", "<p>Anbei mein Lebenslauf.</p>\n")
    atts = list(msg.iter_attachments())
    equal(len(atts), 2, "attachments")
    want = [("Lebenslauf Jürgen €.pdf", "application/pdf", PDF),
            ('photo "me".png', "image/png", PNG)]
    for att, (name, ctype, data) in zip(atts, want):
        equal(att.get_filename(), name, "filename")
        equal(att.get_content_disposition(), "attachment", "disposition")
        equal(att.get_content_type(), ctype, "type")
        equal(att["Content-Transfer-Encoding"], "base64", "CTE")
        equal(att.get_content(), data, f"payload of {name}")
        check(not att.defects, f"attachment without defects: {att.defects}")


def case_headers(msg):
    common(msg, "Newsletter with a rather long subject line that GMime has to fold somewhere "
           "along the way, ümlaut included", ANNA, [JOHN], "hdr.1@mailtrail.example.com",
           "msg_hdr1")
    equal(mailboxes(msg, "Sender"), [("Relay", "relay@example.net")], "Sender")
    equal(mailboxes(msg, "Reply-To"), [("Ånswers", "replies@example.com")], "Reply-To")
    equal(str(msg["List-Unsubscribe"]), UNSUBSCRIBE, "List-Unsubscribe")
    equal(str(msg["List-Unsubscribe-Post"]), "List-Unsubscribe=One-Click",
          "List-Unsubscribe-Post")
    equal(msg["Content-Transfer-Encoding"], "7bit", "CTE")
    equal(text_of(msg, "plain"),
          "A line that is longer than seventy-eight characters but still well under the "
          "limit of 998 octets, so it stays 7bit.\n", "text")


CASES = {
    "ascii_text": case_ascii_text,
    "unicode_text": case_unicode_text,
    "html_only": case_html_only,
    "alternative": case_alternative,
    "attachments": case_attachments,
    "headers": case_headers,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", action="append")
    args = ap.parse_args()
    dump = os.path.join(args.bin_dir, "tests", "mime-build-dump")
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="mime-build-") as tmp:
        proc = subprocess.run([dump, tmp], capture_output=True)
        if proc.returncode != 0:
            print(f"FAIL mime-build-dump exited {proc.returncode}: "
                  f"{proc.stderr.decode('utf-8', 'backslashreplace')}")
            return 1
        for name, fn in CASES.items():
            if args.only and name not in args.only:
                continue
            try:
                with open(os.path.join(tmp, name + ".eml"), "rb") as f:
                    raw = f.read()
                wire_checks(raw)
                fn(BytesParser(policy=email.policy.default).parsebytes(raw))
                print(f"PASS {name}")
                passed += 1
            except CheckFailed as e:
                print(f"FAIL {name}: {e}")
                failed += 1
            except Exception:  # a parser crash is a failure of the case, not of the run
                print(f"FAIL {name}:\n{traceback.format_exc()}")
                failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
