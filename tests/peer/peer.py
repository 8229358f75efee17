#!/usr/bin/python3
r"""Scripted SMTP peer (curl-style): a TCP server on 127.0.0.1 that plays one script against
the client under test and records everything the client sent.

SCRIPT FORMAT (one step per line; the file of a test case, tests/peer/cases/*.peer, is the same
with `@directive:` header lines that this module ignores, see run_case.py)

  S: text          send text + CRLF
  S+: text         send text with escapes decoded (\r \n \t \\ \xNN), exactly as written and
                   nothing added, as ONE write (one TCP segment): for injection tests, e.g.
                   `S+: 220 go ahead\r\n250 injected\r\n`; `\*N:c` is the character c
                   repeated N times (an over-cap line without a huge case file)
  S/1: text        send text + CRLF one byte per write (TCP_NODELAY, ~2 ms between bytes), to
                   exercise replies split across reads
  C: pattern       read one client line (must end in CRLF; a bare LF is a failure) and check
                   it matches the fnmatch-style pattern, case-sensitively: `*` any text, `?` one
                   character, `[...]` a set (write a literal `[` as `[[]`). `C: ` (nothing after
                   the colon and its space) expects an empty line.
  C*: pattern      read client lines until one matches the pattern (skips a DATA body up to
                   `C*: .`); every line read is recorded
  !starttls        wrap the connection in TLS as a server (the rig's CA-signed "localhost"
                   certificate); client bytes already buffered before the handshake are a
                   failure (the client must wait for the 220)
  !close           close the connection
  !sleep SECONDS   pause (fractions allowed)
  !expect-close    wait up to 5 s for the client to close; anything it sends instead fails
  !drain-close     wait up to 5 s for the client to close, recording (not judging) any lines
                   it sends first (e.g. a QUIT after a timeout)
  !expect-quit     the client is to end the session now: it may send RSET (answered
                   "250 2.0.0 Ok") and QUIT (answered "221 2.0.0 bye") and must then close
                   within 5 s; any other line (MAIL, RCPT, AUTH...) fails
  !lockstep        from here on in this connection, after each `C:` line the client must not
                   have sent anything more before our reply (checked with a 50 ms grace): a
                   client without PIPELINING sends one command and waits. `C*:` is exempt.
  !timeout SECONDS how long each following read may wait (default 15 s)
  # comment        ignored, as are blank lines (a `#` only starts a comment at the line start)
  ---              ends one connection block; the next block serves the next connection

  The text after "S:", "C:" etc. starts after one space; trailing spaces are kept.
  If a block ends while its connection is still open, the peer closes it.

TRANSCRIPT: every client line is written as "C: line", every server write as "S: text"
(S+ shown with its escapes), events as "! ..." and "--- connection N" at each block start.

The run is good when every step of every block ran without a mismatch. After the script, a
further connection the script did not plan for is reported by run_case.py (check_extra()).

Command line (standalone use; run_case.py imports the Peer class instead):
  peer.py SCRIPT [--port 0] [--cert PEM --key PEM] [--transcript FILE] [--read-timeout S]
  prints "READY port=N" once listening; exits 0 if the script ran to its end, 1 otherwise.
"""

import argparse
import fnmatch
import os
import re
import socket
import ssl
import sys
import threading
import time

DEFAULT_READ_TIMEOUT = 15.0
ACCEPT_TIMEOUT = 30.0
CLOSE_WAIT = 5.0
LINE_MAX = 1 << 20
BYTE_DELAY = 0.002


class ScriptError(Exception):
    pass


class Step:
    __slots__ = ("lineno", "kind", "arg", "raw")

    def __init__(self, lineno, kind, arg, raw):
        self.lineno = lineno
        self.kind = kind
        self.arg = arg
        self.raw = raw

    def __repr__(self):
        return f"line {self.lineno}: {self.raw}"


_ESCAPE = re.compile(r"\\(\*[0-9]+:.|x[0-9A-Fa-f]{2}|.)")


def decode_escapes(text, lineno=0):
    """Decodes \\r \\n \\t \\\\ \\xNN; other text is sent as UTF-8."""
    out = bytearray()
    pos = 0
    for m in _ESCAPE.finditer(text):
        out += text[pos:m.start()].encode("utf-8")
        pos = m.end()
        e = m.group(1)
        simple = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\"}
        if e in simple:
            out += simple[e]
        elif e[0] == "*" and len(e) > 3:
            count, _, ch = e[1:].partition(":")
            out += ch.encode("utf-8") * int(count)
        elif e[0] == "x" and len(e) == 3:
            out.append(int(e[1:], 16))
        else:
            raise ScriptError(f"line {lineno}: unknown escape \\{e}")
    rest = text[pos:]
    if "\\" in rest:
        raise ScriptError(f"line {lineno}: dangling backslash")
    out += rest.encode("utf-8")
    return bytes(out)


_PREFIXES = ("S+:", "S/1:", "S:", "C*:", "C:")


def parse_script(text):
    """Returns a list of blocks, each a list of Steps. Lines starting with '@' (run_case.py
    directives) are skipped."""
    blocks = [[]]
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or line.startswith("@"):
            continue
        if stripped == "---":
            blocks.append([])
            continue
        for prefix in _PREFIXES:
            if line.startswith(prefix):
                arg = line[len(prefix):]
                if arg.startswith(" "):
                    arg = arg[1:]
                kind = prefix[:-1]
                if kind == "S+":
                    arg = decode_escapes(arg, lineno)
                blocks[-1].append(Step(lineno, kind, arg, line))
                break
        else:
            if line.startswith("!"):
                word, _, rest = line[1:].partition(" ")
                rest = rest.strip()
                if word in ("starttls", "close", "expect-close", "drain-close", "expect-quit",
                            "lockstep"):
                    if rest:
                        raise ScriptError(f"line {lineno}: !{word} takes no argument")
                    blocks[-1].append(Step(lineno, word, None, line))
                elif word in ("sleep", "timeout"):
                    try:
                        value = float(rest)
                    except ValueError:
                        raise ScriptError(f"line {lineno}: !{word} needs a number of seconds")
                    blocks[-1].append(Step(lineno, word, value, line))
                else:
                    raise ScriptError(f"line {lineno}: unknown directive {line!r}")
            else:
                raise ScriptError(f"line {lineno}: cannot parse {line!r}")
    blocks = [b for b in blocks if b] or [[]]
    if blocks == [[]]:
        raise ScriptError("the script has no steps")
    return blocks


def printable(data):
    """Client bytes for the transcript: text as is, binary (a TLS record...) escaped."""
    text = data.decode("utf-8", "backslashreplace")
    if any(ord(ch) < 32 and ch != "\t" for ch in text):
        return repr(data)[2:-1] + "  [binary]"
    return text


class Mismatch(Exception):
    pass


class Conn:
    """One accepted connection with a line reader that survives the switch to TLS."""

    def __init__(self, sock, peer):
        self.sock = sock
        self.buf = b""
        self.peer = peer
        self.lockstep = False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data, what):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise Mismatch(f"could not send {what}: {e} (did the client close the connection?)")

    def send_bytewise(self, data, what):
        for i in range(len(data)):
            self.send(data[i:i + 1], what)
            time.sleep(BYTE_DELAY)

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""
        except ssl.SSLError as e:
            # An unexpected EOF / alert from the client counts as a close.
            if "EOF" in str(e) or "UNEXPECTED_EOF" in str(e):
                return b""
            raise

    def readline(self, timeout, expected):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            if len(self.buf) > LINE_MAX:
                raise Mismatch(f"client line longer than {LINE_MAX} bytes without LF")
            left = deadline - time.monotonic()
            if left <= 0:
                raise Mismatch(f"timed out after {timeout:g} s waiting for a client line; "
                               f"expected {expected}" + self._pending())
            try:
                chunk = self._recv(left)
            except socket.timeout:
                continue
            if not chunk:
                raise Mismatch(f"client closed the connection; expected {expected}" + self._pending())
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        if not line.endswith(b"\r"):
            text = printable(line)
            self.peer.record(f"C: {text}  [bare LF]")
            raise Mismatch(f"client line ended with a bare LF (no CR): {text!r}; expected {expected}")
        text = line[:-1].decode("utf-8", "surrogateescape")
        self.peer.record("C: " + printable(line[:-1]))
        return text

    def sent_ahead(self, grace=0.05):
        """Bytes the client sent beyond the line just read, waiting `grace` for more."""
        if not self.buf:
            try:
                chunk = self._recv(grace)
            except socket.timeout:
                chunk = b""
            except ssl.SSLError:
                chunk = b""
            self.buf += chunk
        return self.buf

    def expect_quit(self, read_timeout):
        deadline = time.monotonic() + CLOSE_WAIT
        while True:
            line = self._quit_or_close(deadline, read_timeout)
            if line is None:
                return
            if line.upper() == "RSET":
                self.peer.record("S: 250 2.0.0 Ok")
                self.send(b"250 2.0.0 Ok\r\n", "250 after RSET")
                continue
            if line.upper() != "QUIT":
                raise Mismatch(f"client sent {line!r}; expected RSET, QUIT or a close")
            self.peer.record("S: 221 2.0.0 bye")
            self.send(b"221 2.0.0 bye\r\n", "221 after QUIT")
            self.wait_close(strict=True)
            return

    def _quit_or_close(self, deadline, read_timeout):
        """The next client line, or None when the client closed."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Mismatch(f"client neither sent QUIT nor closed within {CLOSE_WAIT:g} s")
            try:
                chunk = self._recv(left)
            except socket.timeout:
                continue
            if not chunk:
                if self.buf:
                    raise Mismatch(f"client sent {self.buf[:200]!r} then closed; expected QUIT or close")
                self.peer.record("! client closed (without QUIT)")
                return None
            self.buf += chunk
        return self.readline(read_timeout, "RSET, QUIT or close")

    def _pending(self):
        return f" (partial data received: {self.buf[:200]!r})" if self.buf else ""

    def wait_close(self, strict):
        deadline = time.monotonic() + CLOSE_WAIT
        if self.buf:
            if strict:
                raise Mismatch(f"client sent {self.buf[:200]!r} instead of closing")
            self._record_lines(self.buf)
            self.buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Mismatch(f"client did not close the connection within {CLOSE_WAIT:g} s")
            try:
                chunk = self._recv(left)
            except socket.timeout:
                continue
            except ssl.SSLError as e:
                raise Mismatch(f"TLS error while waiting for the client to close: {e}")
            if not chunk:
                self.peer.record("! client closed")
                return
            if strict:
                self._record_lines(chunk)
                raise Mismatch(f"client sent {chunk[:200]!r} instead of closing")
            self._record_lines(chunk)

    def _record_lines(self, data):
        for piece in data.split(b"\n"):
            if piece:
                self.peer.record("C: " + printable(piece.rstrip(b"\r")))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class Peer:
    """Plays a parsed script. start() returns the port; the script runs in a thread."""

    def __init__(self, blocks, cert=None, key=None, transcript=None, host="127.0.0.1",
                 read_timeout=DEFAULT_READ_TIMEOUT, accept_timeout=ACCEPT_TIMEOUT):
        self.blocks = blocks
        self.cert = cert
        self.key = key
        self.host = host
        self.read_timeout = read_timeout
        self.accept_timeout = accept_timeout
        self.transcript_path = transcript
        self.lines = []  # the transcript, also kept in memory
        self.errors = []
        self.finished = False  # every step of every block ran
        self.where = "not started"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None
        self._listener = None
        self._conn = None
        self._tfile = open(transcript, "w", encoding="utf-8") if transcript else None

    # -- public ---------------------------------------------------------------------------
    def start(self, port=0):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, port))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="peer", daemon=True)
        self._thread.start()
        return self.port

    def wait(self, timeout):
        """True when the script thread has ended within timeout."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self):
        """Ends the script thread (an unfinished script stays unfinished) and closes sockets."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            conn.close()
        if self._thread is not None:
            self._thread.join(10)
        if self._listener is not None:
            try:
                self._listener.close()
            except OSError:
                pass
        if self._tfile:
            self._tfile.close()
            self._tfile = None

    def check_extra(self):
        """After the client is done: a connection the script did not plan for, if any."""
        if self._listener is None:
            return None
        try:
            self._listener.settimeout(0)
            s, _ = self._listener.accept()
        except (BlockingIOError, socket.timeout, OSError):
            return None
        try:
            s.close()
        except OSError:
            pass
        return f"the client opened a connection beyond the script's {len(self.blocks)}"

    def record(self, line):
        with self._lock:
            self.lines.append(line)
            if self._tfile:
                self._tfile.write(line + "\n")
                self._tfile.flush()

    # -- script -----------------------------------------------------------------------------
    def _tls_context(self):
        if not (self.cert and self.key):
            raise Mismatch("!starttls but no certificate was given to the peer")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def _accept(self, n):
        deadline = time.monotonic() + self.accept_timeout
        while not self._stop.is_set():
            if time.monotonic() > deadline:
                raise Mismatch(f"connection {n} never came (waited {self.accept_timeout:g} s)")
            try:
                s, _ = self._listener.accept()
                s.setblocking(True)
                return s
            except socket.timeout:
                continue
            except OSError as e:
                if self._stop.is_set():
                    break
                raise Mismatch(f"accept failed: {e}")
        raise Mismatch(f"stopped while waiting for connection {n} (the client never opened it)")

    def _run(self):
        step = None
        try:
            for n, block in enumerate(self.blocks, 1):
                self.where = f"waiting for connection {n}"
                sock = self._accept(n)
                self._conn = Conn(sock, self)
                self.record(f"--- connection {n}")
                read_timeout = self.read_timeout
                for step in block:
                    if self._stop.is_set():
                        raise Mismatch("stopped")
                    self.where = f"connection {n}, {step!r}"
                    read_timeout = self._do(step, read_timeout)
                self._conn.close()
                self._conn = None
                step = None
            self.finished = True
            self.where = "script finished"
        except Mismatch as e:
            where = f"script {step!r}: " if step is not None else ""
            self.errors.append(where + str(e))
        except Exception as e:  # a harness bug: still report it as a failure
            where = f"script {step!r}: " if step is not None else ""
            self.errors.append(f"{where}peer error {type(e).__name__}: {e}")
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _do(self, step, read_timeout):
        c = self._conn
        k = step.kind
        if k == "S":
            self.record("S: " + step.arg)
            c.send(step.arg.encode("utf-8") + b"\r\n", step.raw)
        elif k == "S+":
            shown = step.arg.decode("latin-1").encode("unicode_escape").decode("ascii")
            self.record("S+: " + shown)
            c.send(step.arg, step.raw)
        elif k == "S/1":
            self.record("S/1: " + step.arg)
            c.send_bytewise(step.arg.encode("utf-8") + b"\r\n", step.raw)
        elif k == "C":
            line = c.readline(read_timeout, f"`C: {step.arg}`")
            if not fnmatch.fnmatchcase(line, step.arg):
                raise Mismatch("client line does not match\n"
                               f"      expected: {step.arg}\n"
                               f"      got:      {line}")
            if c.lockstep:
                ahead = c.sent_ahead()
                if ahead:
                    raise Mismatch("client sent more before our reply (no PIPELINING was "
                                   f"advertised): {ahead[:200]!r}")
        elif k == "C*":
            while True:
                line = c.readline(read_timeout, f"`C*: {step.arg}`")
                if fnmatch.fnmatchcase(line, step.arg):
                    break
        elif k == "starttls":
            if c.buf:
                raise Mismatch("client sent data before the TLS handshake (after the STARTTLS "
                               f"reply it must wait): {c.buf[:200]!r}")
            self.record("! starttls")
            ctx = self._tls_context()
            c.sock.settimeout(read_timeout)
            try:
                c.sock = ctx.wrap_socket(c.sock, server_side=True)
            except (ssl.SSLError, OSError) as e:
                raise Mismatch(f"TLS handshake failed: {e}")
            self.record(f"! tls up ({c.sock.version()})")
        elif k == "close":
            self.record("! close")
            c.close()
        elif k == "sleep":
            self.record(f"! sleep {step.arg:g}")
            end = time.monotonic() + step.arg
            while not self._stop.is_set() and time.monotonic() < end:
                time.sleep(min(0.05, max(0.0, end - time.monotonic())))
        elif k == "expect-close":
            c.wait_close(strict=True)
        elif k == "drain-close":
            c.wait_close(strict=False)
        elif k == "expect-quit":
            c.expect_quit(read_timeout)
        elif k == "lockstep":
            self.record("! lockstep")
            c.lockstep = True
        elif k == "timeout":
            return step.arg
        return read_timeout


def load_script(path):
    with open(path, encoding="utf-8") as f:
        return parse_script(f.read())


def main(argv):
    ap = argparse.ArgumentParser(description="scripted SMTP peer")
    ap.add_argument("script")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--transcript")
    ap.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT)
    a = ap.parse_args(argv)
    try:
        blocks = load_script(a.script)
    except ScriptError as e:
        print(f"{a.script}: {e}", file=sys.stderr)
        return 2
    peer = Peer(blocks, cert=a.cert, key=a.key, transcript=a.transcript,
                read_timeout=a.read_timeout)
    port = peer.start(a.port)
    print(f"READY port={port}", flush=True)
    try:
        while not peer.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        peer.stop()
    for e in peer.errors:
        print("MISMATCH " + e, file=sys.stderr)
    if peer.finished and not peer.errors:
        print("OK script finished", flush=True)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
