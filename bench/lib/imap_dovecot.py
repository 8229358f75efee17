#!/usr/bin/python3
"""bench/lib/imap_dovecot.py DIR MESSAGES: a private Dovecot for bench/imap-fetch.

Starts tests/rig/dovecot.py's Dovecot under DIR (maildirs in /dev/shm when it has room),
fills the INBOX of user "bench" with MESSAGES messages of 2-4 KB (From / To / Cc / Subject /
Date / Message-ID, every fifth subject an RFC 2047 encoded-word, some names quoted), opens the
INBOX once so that Dovecot builds its index (the first SELECT of 100,000 new messages), then
prints one line

    ready HOST IMAP_PORT IMAPS_PORT USER PASSWORD_FILE CA_FILE FILL_MS INDEX_MS

and keeps Dovecot running until its stdin closes (or it is killed: rig's PR_SET_PDEATHSIG and
process group take Dovecot down with it). Debian's /usr/bin/python3, root."""

import base64
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "rig"))
import dovecot  # noqa: E402
import rig  # noqa: E402

USER = "bench"
PASSWORD = "bench-pw"

FIRST = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
         "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter"]
LAST = ["Smith", "Jones", "Müller", "O'Brien", "García", "Nguyen", "Kowalski", "Rossi", "Dubois"]
DOMAINS = ["example.com", "example.org", "bench.example", "mail.example.net", "corp.example"]
WORDS = ("quarterly report meeting agenda invoice proposal review update schedule budget "
         "contract draft follow-up question launch roadmap notes summary feedback").split()
ENCODED = ["=?UTF-8?B?w4RuZGVydW5nIGRlcyBWZXJ0cmFncw==?=",
           "=?UTF-8?Q?R=C3=A9union_de_l=27=C3=A9quipe?=",
           "=?ISO-8859-1?Q?Gr=FC=DFe_aus_M=FCnchen?=",
           "=?UTF-8?B?5Lya6K2w44Gu5qGI5YaF?="]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def address(rnd):
    """A display name and address; non-ASCII names as RFC 2047 encoded-words, some quoted."""
    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    ascii_last = last.replace("ü", "ue").replace("í", "i").replace("'", "")
    mail = f"{first.lower()}.{ascii_last.lower()}@{rnd.choice(DOMAINS)}"
    name = f"{first} {last}"
    if not name.isascii():
        return f"=?UTF-8?B?{base64.b64encode(name.encode()).decode()}?= <{mail}>"
    if "'" in name or rnd.random() < 0.2:
        return f'"{last}, {first}" <{mail}>'
    return f"{name} <{mail}>"


def messages(count, seed=13):
    rnd = random.Random(seed)
    body_words = WORDS * 4
    for i in range(count):
        if i % 5 == 0:
            subject = rnd.choice(ENCODED)
        else:
            subject = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 9))).capitalize()
        t = time.gmtime(1700000000 + i * 37)
        date = "%s, %d %s %d %02d:%02d:%02d +0000" % (DAYS[t.tm_wday], t.tm_mday,
                                                      MONTHS[t.tm_mon - 1], t.tm_year,
                                                      t.tm_hour, t.tm_min, t.tm_sec)
        to = ", ".join(address(rnd) for _ in range(rnd.randint(1, 3)))
        cc = ", ".join(address(rnd) for _ in range(rnd.randint(0, 2)))
        head = (f"Return-Path: <bounce-{i}@bench.example>\r\n"
                f"Received: from mx.bench.example (mx.bench.example [192.0.2.{i % 250 + 1}])\r\n"
                f"\tby imap.bench.example with ESMTPS id {i:08x}; {date}\r\n"
                f"From: {address(rnd)}\r\n"
                f"To: {to}\r\n"
                + (f"Cc: {cc}\r\n" if cc else "") +
                f"Subject: {subject}\r\n"
                f"Date: {date}\r\n"
                f"Message-ID: <{i:x}.{rnd.getrandbits(48):012x}@bench.example>\r\n"
                + (f"In-Reply-To: <{i - 1:x}.0@bench.example>\r\n" if i % 3 == 1 else "") +
                "MIME-Version: 1.0\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: 8bit\r\n\r\n")
        size = rnd.randint(2048, 4096) - len(head)
        lines = []
        n = 0
        while n < size:
            line = " ".join(rnd.choice(body_words) for _ in range(12))
            lines.append(line)
            n += len(line) + 2
        yield (head + "\r\n".join(lines) + "\r\n").encode()


def main():
    directory, count = sys.argv[1], int(sys.argv[2])
    certs = rig.make_certs(os.path.join(directory, "certs"))
    password_file = os.path.join(directory, "password")
    with open(password_file, "w") as f:
        f.write(PASSWORD)
    with dovecot.dovecot(certs, os.path.join(directory, "dovecot"), users={USER: PASSWORD},
                         shm=True) as dc:
        start = time.monotonic()
        dc.fill_maildir(USER, "INBOX", messages(count))
        fill_ms = int((time.monotonic() - start) * 1000)
        start = time.monotonic()
        with dc.connect(USER, tls="plain") as imap:
            typ, data = imap.select("INBOX", readonly=True)
            if typ != "OK" or int(data[0]) != count:
                raise SystemExit(f"imap_dovecot: SELECT INBOX: {typ} {data}")
        index_ms = int((time.monotonic() - start) * 1000)
        print("ready", dc.host, dc.imap_port, dc.imaps_port, USER, password_file, dc.ca_file,
              fill_ms, index_ms, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
