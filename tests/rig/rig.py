#!/usr/bin/python3
"""Test rig for mailtrail: certificates, ports and private SMTP servers on loopback.

Import it with:

    sys.path.insert(0, os.path.join(<repo>, "tests", "rig"))
    import rig

Everything here is standard library only and must run with Debian's /usr/bin/python3 (the
pyenv python on PATH does not see python3-aiosmtpd).

What it offers:
  free_port() / closed_port()          a port that is free now / one that refuses connections
  make_certs(dir) -> Certs              test CA, "localhost" server cert signed by it, and a
                                        separate self-signed server cert (for pinning tests)
  cert_sha256(pem) / spki_sha256(pem)   "sha256:<hex>" of the DER, "spki-sha256:<hex>" of the key
  colon_upper(pin)                      "sha256:AB:CD:..." form of a pin
  auth_sink(...)                        context manager: tests/rig/auth_sink.py (aiosmtpd) on
                                        free ports, waits for READY, stops it at the end
  smtp_sink(...)                        context manager: Postfix's /usr/sbin/smtp-sink
  dovecot.dovecot(certs, dir, ...)      (tests/rig/dovecot.py, `import dovecot`) context manager:
                                        a private Dovecot IMAP server (STARTTLS + implicit TLS,
                                        users, special-use mailboxes, APPEND / Maildir fill
                                        helpers); see that module's docstring
  install_signal_cleanup()              SIGTERM/SIGHUP/SIGINT -> SystemExit so that every
                                        `finally` (and so every server stop) runs
  tempdir(prefix)                       context manager: a temp dir removed at the end

Every server is started in its own process group and killed (group-wide) when its context
manager exits, on failure too; an atexit hook kills whatever is still registered. auth_sink also
exits by itself when its stdin (a pipe from us) closes, so it cannot outlive a killed test.
The Postfix daemon itself is never started: only the standalone smtp-sink binary is run.
"""

import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

RIG_DIR = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
SMTP_SINK = "/usr/sbin/smtp-sink"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

# Generous on a slow, shared CI machine; each wait returns as soon as the thing is ready.
READY_TIMEOUT = 30.0

_live = set()  # Popen objects still to be killed at exit


def _kill_proc(proc, grace=3.0):
    """Terminates a process started by the rig (its whole process group), then reaps it."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            except PermissionError:
                proc.send_signal(sig)
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    else:
        # The leader is gone; members of its group may not be.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream:
            try:
                stream.close()
            except OSError:
                pass
    _live.discard(proc)


@atexit.register
def _kill_all():
    for proc in list(_live):
        _kill_proc(proc, grace=1.0)


def install_signal_cleanup():
    """Turns SIGTERM/SIGHUP/SIGINT into SystemExit so finally blocks stop the servers."""

    def handler(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)


def parent_death_signal(sig):
    """A preexec_fn: the child gets `sig` when the thread that started it dies."""

    def preexec():
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, sig)  # PR_SET_PDEATHSIG
        except Exception:
            pass

    return preexec


_pdeathsig = parent_death_signal(signal.SIGKILL)


def start_process(argv, **kwargs):
    """Popen in a new process group, registered for cleanup at exit."""
    kwargs.setdefault("start_new_session", True)
    kwargs.setdefault("preexec_fn", _pdeathsig)
    proc = subprocess.Popen(argv, **kwargs)
    _live.add(proc)
    return proc


def stop_process(proc):
    _kill_proc(proc)


# ---------------------------------------------------------------------------------------------
# Ports


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def closed_port(host="127.0.0.1"):
    """A port that refuses connections: bound once (so it is not in use), then closed without
    listening. Connecting to it gets ECONNREFUSED (unless something grabs it meanwhile)."""
    for _ in range(20):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            if probe.connect_ex((host, port)) != 0:
                return port
    raise RuntimeError("could not find a closed port")


def wait_port(host, port, timeout=READY_TIMEOUT, proc=None):
    """Waits until host:port accepts a TCP connection; False on timeout or if proc died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def tempdir(prefix="mailtrail-rig-"):
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_traversable(path):
    """Gives path and every directory above it o+x (search only, no listing), so that a server
    running as its own system user reaches files under it (rig.tempdir's mkdtemp makes 0700
    directories)."""
    p = os.path.abspath(path)
    while p != "/":
        st = os.stat(p)
        if not st.st_mode & 0o001:
            os.chmod(p, (st.st_mode & 0o7777) | 0o001)
        p = os.path.dirname(p)


# ---------------------------------------------------------------------------------------------
# IMAP


def imap_append(client, mailbox, raw, flags=(), date=None):
    """APPENDs raw bytes on a logged-in imaplib client (mailbox quoted as the server needs);
    returns the new message's UID (from APPENDUID)."""
    fl = "(" + " ".join(flags) + ")" if flags else None
    typ, data = client.append(mailbox, fl, date or time.time(), raw)
    if typ != "OK":
        raise RuntimeError(f"APPEND failed: {data}")
    m = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
    if not m:
        raise RuntimeError(f"APPEND without APPENDUID: {data}")
    return int(m.group(1))


# ---------------------------------------------------------------------------------------------
# Certificates


class Certs:
    """Paths of the generated PEM files."""

    def __init__(self, directory):
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self.server_cert = os.path.join(directory, "server.pem")
        self.server_key = os.path.join(directory, "server.key")
        self.selfsigned_cert = os.path.join(directory, "selfsigned.pem")
        self.selfsigned_key = os.path.join(directory, "selfsigned.key")

    def __repr__(self):
        return f"Certs({self.dir!r})"


def _openssl(*args, cwd=None):
    res = subprocess.run([OPENSSL, *args], cwd=cwd, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, timeout=60)
    if res.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), res.stderr.decode(errors="replace")))
    return res.stdout


def make_certs(directory, days=7):
    """Writes a test CA, a server certificate for "localhost" (SAN DNS:localhost, IP:127.0.0.1,
    IP:127.0.0.2: the second loopback address is where dovecot.py's STARTTLS-required listener
    is) signed by it, and a separate self-signed server certificate with the same SAN.
    RSA 2048."""
    os.makedirs(directory, exist_ok=True)
    c = Certs(directory)
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2"
    # CA
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", c.ca_key,
             "-out", c.ca_cert, "-days", str(days), "-subj", "/CN=mailtrail test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    # Server certificate signed by the CA
    csr = os.path.join(directory, "server.csr")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", c.server_key,
             "-out", csr, "-subj", "/CN=localhost")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                f"{san}\n")
    _openssl("x509", "-req", "-in", csr, "-CA", c.ca_cert, "-CAkey", c.ca_key,
             "-CAcreateserial", "-out", c.server_cert, "-days", str(days), "-extfile", ext,
             cwd=directory)
    # Separate self-signed certificate (not trusted by anything: for pinning)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", c.selfsigned_key,
             "-out", c.selfsigned_cert, "-days", str(days), "-subj", "/CN=localhost",
             "-addext", san)
    for key in (c.ca_key, c.server_key, c.selfsigned_key):
        os.chmod(key, 0o600)
    return c


def cert_der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def cert_sha256(pem_path):
    """"sha256:" + lower-case hex of the certificate's DER (the pin / reported fingerprint)."""
    return "sha256:" + hashlib.sha256(cert_der(pem_path)).hexdigest()


def spki_sha256(pem_path):
    """"spki-sha256:" + lower-case hex of the SHA-256 of the DER SubjectPublicKeyInfo."""
    pub_pem = _openssl("x509", "-in", pem_path, "-noout", "-pubkey")
    proc = subprocess.run([OPENSSL, "pkey", "-pubin", "-outform", "DER"], input=pub_pem,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60,
                          check=True)
    return "spki-sha256:" + hashlib.sha256(proc.stdout).hexdigest()


def colon_upper(pin):
    """"sha256:abcd..." -> "sha256:AB:CD:..." (the alternative pin form DESIGN.md accepts)."""
    kind, hexdigits = pin.split(":", 1)
    hexdigits = hexdigits.upper()
    return kind + ":" + ":".join(hexdigits[i:i + 2] for i in range(0, len(hexdigits), 2))


def server_ssl_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


# ---------------------------------------------------------------------------------------------
# Authenticating sink (aiosmtpd)


def xoauth2_blob(user, token):
    """base64 of the XOAUTH2 initial response for user/token."""
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


class AuthSink:
    """A running tests/rig/auth_sink.py. Ports are None for listeners not started."""

    def __init__(self, proc, ports, store, user, password, token, log_path):
        self.proc = proc
        self.port_starttls = ports.get("starttls")
        self.port_tls = ports.get("tls")
        self.port_plain = ports.get("plain")
        self.store = store
        self.user = user
        self.password = password
        self.token = token
        self.log_path = log_path
        self.host = "127.0.0.1"

    def messages(self):
        """Stored messages, oldest first: list of dicts with the JSON metadata plus "data"
        (bytes of the .eml) and "n"."""
        out = []
        if not os.path.isdir(self.store):
            return out
        for name in os.listdir(self.store):
            if not name.endswith(".json"):
                continue
            n = int(name[:-5])
            with open(os.path.join(self.store, name)) as f:
                meta = json.load(f)
            with open(os.path.join(self.store, f"{n}.eml"), "rb") as f:
                meta["data"] = f.read()
            meta["n"] = n
            out.append(meta)
        out.sort(key=lambda m: m["n"])
        return out

    def wait_messages(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.messages()
            if len(msgs) >= count:
                return msgs
            time.sleep(0.05)
        return self.messages()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


@contextlib.contextmanager
def auth_sink(certs, store, user="user@example.test", password="s3cret-pw",
              token="ya29.good-token", starttls=True, tls=True, plain=True,
              require_auth=False, refuse=(), cert=None, key=None, exclude_mechs=(),
              fail_file=None, timeout=READY_TIMEOUT, password_file=None, ports=None,
              token_file=None):
    """Starts auth_sink.py on free ports (it binds port 0 itself and reports the ports, so no
    race) and yields an AuthSink. cert/key default to the CA-signed server certificate;
    exclude_mechs=("PLAIN",) makes it offer LOGIN (and XOAUTH2) only; fail_file: see
    auth_sink.py --fail-file (a file the test creates to make RCPT or MAIL fail on demand).
    password_file: the password is that file's first line, read again on every AUTH (instead
    of `password`). ports: {"starttls": P, ...} to listen on given ports (a restart on the same
    ports) instead of free ones. token_file: the XOAUTH2 tokens accepted are that file's lines,
    read again on every AUTH (instead of `token`)."""
    os.makedirs(store, exist_ok=True)
    cert = cert or certs.server_cert
    key = key or certs.server_key
    argv = [PYTHON, os.path.join(RIG_DIR, "auth_sink.py"), "--cert", cert, "--key", key,
            "--user", user, "--password", password, "--token", token, "--store", store,
            "--exit-on-stdin-eof"]
    if password_file is not None:
        argv += ["--password-file", password_file]
    if token_file is not None:
        argv += ["--token-file", token_file]
    want = ports or {}
    if starttls:
        argv += ["--port-starttls", str(want.get("starttls", 0))]
    if tls:
        argv += ["--port-tls", str(want.get("tls", 0))]
    if plain:
        argv += ["--port-plain", str(want.get("plain", 0))]
    if require_auth:
        argv.append("--require-auth")
    for r in refuse:
        argv += ["--refuse", r]
    for m in exclude_mechs:
        argv += ["--exclude-mech", m]
    if fail_file:
        argv += ["--fail-file", fail_file]
    log_path = os.path.normpath(store) + ".log"  # the sink's stderr, next to the store
    with open(log_path, "ab") as log:
        proc = start_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    try:
        ports = _wait_ready(proc, timeout)
        yield AuthSink(proc, ports, store, user, password, token, log_path)
    finally:
        stop_process(proc)


def _wait_ready(proc, timeout):
    """Reads the sink's stdout until "READY starttls=P tls=P plain=P"."""
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, min(0.5, deadline - time.monotonic()))):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.split(b"\n"):
                if line.startswith(b"READY"):
                    ports = {}
                    for item in line.decode().split()[1:]:
                        k, _, v = item.partition("=")
                        ports[k] = int(v)
                    return ports
    finally:
        sel.close()
    raise RuntimeError("auth_sink did not become ready (exit %r, output %r)" % (proc.poll(), buf))


# ---------------------------------------------------------------------------------------------
# A loopback SMTP server that stalls on demand (faults smtp-sink does not produce)


class StallingSmtp:
    """An SMTP server on a free loopback port, one thread per connection, advertising
    PIPELINING, 8BITMIME and SIZE. `mode` (may change while it runs; a connection reads it as
    it goes): "answer" answers everything (a live check passes), "greeting" never greets,
    "data" never answers a DATA, "dot" answers DATA with 354 and never the final dot. `bytes`
    counts the message data received. close() shuts every connection down."""

    def __init__(self, mode="answer"):
        import threading
        self.mode = mode
        self.bytes = 0
        self.conns = []
        self.closed = False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread
        self._thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self._thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self._converse(c)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                c.close()

    def _converse(self, c):
        if self.mode == "greeting":
            while c.recv(65536):  # read on, answer nothing
                pass
            return
        c.sendall(b"220 stall.test ESMTP\r\n")
        buf, in_data, silent = b"", False, False
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return
            if silent:
                self.bytes += len(chunk) if in_data else 0
                continue
            buf += chunk
            while not silent:
                if in_data:
                    end = buf.find(b"\r\n.\r\n")
                    if end < 0:
                        self.bytes += max(len(buf) - 4, 0)
                        buf = buf[max(len(buf) - 4, 0):]
                        break
                    self.bytes += end
                    buf, in_data = buf[end + 5:], False
                    c.sendall(b"250 2.0.0 Ok\r\n")
                    continue
                if b"\r\n" not in buf:
                    break
                line, buf = buf.split(b"\r\n", 1)
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    c.sendall(b"250-stall.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                              b"250 SIZE 104857600\r\n")
                elif verb == b"DATA" and self.mode == "data":
                    silent = True
                elif verb == b"DATA":
                    c.sendall(b"354 go on\r\n")
                    in_data = True
                    if self.mode == "dot":
                        self.bytes += len(buf)
                        silent = True
                    else:
                        buf = b"\r\n" + buf  # the data's first line may be the dot
                elif verb == b"QUIT":
                    c.sendall(b"221 bye\r\n")
                    return
                else:
                    c.sendall(b"250 Ok\r\n")

    def close(self):
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                # shutdown, not close alone: a serving thread still holds the socket
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()


# ---------------------------------------------------------------------------------------------
# Postfix smtp-sink


class SmtpSink:
    def __init__(self, proc, port):
        self.proc = proc
        self.port = port
        self.host = "127.0.0.1"


@contextlib.contextmanager
def smtp_sink(backlog=1024, extra_args=(), timeout=READY_TIMEOUT):
    """Runs `/usr/sbin/smtp-sink [-u nobody] 127.0.0.1:PORT BACKLOG` (no STARTTLS, advertises
    PIPELINING; answers 250 to everything) on a free port, waits until it accepts, kills it at
    the end. Only the standalone binary: the Postfix daemon is never started."""
    if not os.access(SMTP_SINK, os.X_OK):
        raise RuntimeError(f"{SMTP_SINK} missing (apt-get install postfix)")
    last_err = ""
    for _attempt in range(5):
        port = free_port()
        argv = [SMTP_SINK]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # required when run as root
        argv += [*extra_args, f"127.0.0.1:{port}", str(backlog)]
        proc = start_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        try:
            if wait_port("127.0.0.1", port, timeout=timeout, proc=proc):
                yield SmtpSink(proc, port)
                return
            last_err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None else "timeout"
        finally:
            stop_process(proc)
    raise RuntimeError("smtp-sink did not start: " + last_err)


# ---------------------------------------------------------------------------------------------
# A tiny case runner for the integration scripts


class Runner:
    """Runs named cases, prints "PASS name (0.4s)" / "FAIL name: why" per case and a closing
    "N passed, N failed" line; exit status via .exit_code()."""

    def __init__(self, only=None):
        self.only = only
        self.passed = []
        self.failed = []

    def run(self, name, fn, *args, **kwargs):
        if self.only and not any(o in name for o in self.only):
            return
        start = time.monotonic()
        try:
            fn(*args, **kwargs)
        except AssertionError as e:
            self.failed.append(name)
            print(f"FAIL {name}: {e}  ({time.monotonic() - start:.1f}s)", flush=True)
        except Exception as e:  # a rig or harness problem is a failure too, told apart
            self.failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}  ({time.monotonic() - start:.1f}s)",
                  flush=True)
        else:
            self.passed.append(name)
            print(f"PASS {name}  ({time.monotonic() - start:.1f}s)", flush=True)

    def exit_code(self):
        print(f"{len(self.passed)} passed, {len(self.failed)} failed", flush=True)
        if self.failed:
            print("failed: " + " ".join(self.failed), flush=True)
        return 1 if self.failed or not self.passed else 0


if __name__ == "__main__":
    # Smoke use: python3 rig.py -> generates certs and prints their pins.
    with tempdir() as d:
        c = make_certs(d)
        print("server", cert_sha256(c.server_cert), spki_sha256(c.server_cert))
        print("selfsigned", cert_sha256(c.selfsigned_cert), colon_upper(cert_sha256(c.selfsigned_cert)))
        print("closed port", closed_port(), "free port", free_port())
    sys.exit(0)
