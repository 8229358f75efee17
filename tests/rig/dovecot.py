#!/usr/bin/python3
"""A private Dovecot (IMAP) for the test rig: its own config, dirs and ports under a temp dir.

    sys.path.insert(0, os.path.join(<repo>, "tests", "rig"))
    import rig, dovecot

    certs = rig.make_certs(os.path.join(tmp, "certs"))
    with dovecot.dovecot(certs, os.path.join(tmp, "dovecot")) as dc:
        uid = dc.append("alice", "INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        dc.fill_maildir("alice", "Archive", [raw1, raw2, ...])
        with dc.connect("alice") as imap:          # imaplib, STARTTLS verified against the CA
            imap.select("INBOX")

Standard library only, Debian's /usr/bin/python3; needs dovecot-core + dovecot-imapd
(scripts/install-deps) and root (Dovecot's mail processes run as a dedicated system user,
MAIL_USER, created here if missing: Dovecot refuses to access mail as root).

Dovecot runs in the foreground (`dovecot -F -c FILE`) in its own process group under rig's
process management, so the context manager, rig's atexit hook and PR_SET_PDEATHSIG all stop it
(and its children, which stay in that group); nothing is daemonised.

What the instance has (see Dovecot.__doc__ for the helpers):
  - listen = 127.0.0.1; an `imap` listener (plaintext + STARTTLS) and an `imaps` listener
    (implicit TLS) on free high ports; ssl = yes with the CA-signed "localhost" cert
    (selfsigned=True: rig's self-signed cert, for pinning tests).
  - passwd-file passdb ({PLAIN} passwords, `users` dict), static userdb, maildir per user
    under the temp dir, inbox namespace with separator "/" and special-use mailboxes
    Sent (\\Sent), Drafts (\\Drafts), Trash (\\Trash), Junk (\\Junk), Archive (\\Archive),
    all auto = subscribe.
  - auth_mechanisms = plain login; auth_failure_delay = 0; mail_max_userip_connections and the
    imap / imap-login process and client limits raised (parameters).
  - extra_conf: text appended to the config (e.g. an oauth2 passdb and
    `auth_mechanisms = plain login oauthbearer xoauth2`).
  - strict_listener=True: one more plaintext+STARTTLS listener, on STRICT_HOST (127.0.0.2),
    where LOGIN/AUTHENTICATE are refused until STARTTLS (LOGINDISABLED is advertised). Dovecot
    treats a connection whose remote IP equals its local IP as secure (so on 127.0.0.1 from
    127.0.0.1 plaintext login is always allowed); a listener on 127.0.0.2 reached from the
    default source 127.0.0.1 is not. Connecting to the ordinary port from a bound source
    127.0.0.2 has the same effect (connect(source="127.0.0.2")). rig.make_certs puts
    IP:127.0.0.2 in the certificates, so the strict listener verifies by address too.

Quirks (Dovecot 2.3.19, checked here):
  - Failed logins are delayed per remote IP by the auth penalty, whatever auth_failure_delay
    (0 here), login_trusted_networks or a `nodelay` passdb field say: the first failure from an
    address takes ~0.5 s, each further one ~4.5 s and growing (to 15 s). The count lives in
    the instance's anvil: give wrong-password tests their own source address
    (connect(source="127.0.0.N")) or their own instance (it starts in ~0.1 s).
  - Connections from 127.0.0.1 to 127.0.0.1 count as secure: LOGINDISABLED never shows there
    (see strict_listener above).
  - `dovecot -F` keeps the master in the foreground and the children in its process group;
    its stderr is a file in the temp dir (Dovecot keeps the stderr it was started with open).
    When the master is killed with SIGKILL (PR_SET_PDEATHSIG when a test dies) its children
    notice and exit by themselves. They exit a moment after the master on SIGTERM: stop()
    waits for the whole group.
  - Maildir file names for bulk fills must not repeat the counter (as in "M<n>P<pid>Q<n>"):
    such names collide in Dovecot's filename hash and the first SELECT of 100,000 messages
    takes minutes instead of ~1 s. fill_maildir writes "<secs>.M<n>P<pid>.mailtrail-rig,S=<size>"
    (Dovecot orders new files by secs then M, so UIDs follow the write order).
  - Dovecot refuses mail uids below first_valid_uid (500 by default): the config sets it to the
    system user's uid.
"""

import contextlib
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import rig

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_USER = "mailtrail-vmail"
HOST = "127.0.0.1"
STRICT_HOST = "127.0.0.2"
SEPARATOR = "/"
SPECIAL_USE = (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"),
               ("Junk", "\\Junk"), ("Archive", "\\Archive"))
DEFAULT_USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
TIMEOUT = 30

_seq = 0  # file-name counter for fill_maildir


def ensure_mail_user(name=MAIL_USER):
    """(uid, gid) of the mail system user, created (useradd --system) when missing. Root only."""
    try:
        pw = pwd.getpwnam(name)
        return pw.pw_uid, pw.pw_gid
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise RuntimeError(f"system user {name} missing and not root to create it")
    res = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                          "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    # 9: already exists (another test created it meanwhile)
    if res.returncode not in (0, 9):
        raise RuntimeError("useradd %s failed: %s" % (name, res.stderr.decode(errors="replace")))
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


class _IMAP4(imaplib.IMAP4):
    """imaplib.IMAP4 that can bind a source address (127.0.0.N)."""

    def __init__(self, host, port, timeout=None, source=None):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout=None):
        src = (self._source, 0) if self._source else None
        return socket.create_connection((self.host, self.port), timeout, source_address=src)


class _IMAP4_SSL(imaplib.IMAP4_SSL):
    def __init__(self, host, port, ssl_context=None, timeout=None, source=None):
        self._source = source
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout=None):
        src = (self._source, 0) if self._source else None
        sock = socket.create_connection((self.host, self.port), timeout, source_address=src)
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class Dovecot:
    """A running private Dovecot.

    host, imap_port, imaps_port     127.0.0.1 and the plaintext/STARTTLS and implicit-TLS ports
    strict_host, strict_port        the STARTTLS-required listener (None unless strict_listener)
    users                           {name: password}
    ca_file                         the CA to verify with (None for the self-signed cert:
                                    cert_file is then its own trust anchor)
    cert_file, key_file             the certificate and key Dovecot serves
    fingerprint()                   rig.cert_sha256(cert_file)   ("sha256:<hex>")
    spki_fingerprint()              rig.spki_sha256(cert_file)
    dir, conf, log_path             temp dir, config file, Dovecot's log
    mail_uid, mail_gid              owner of the maildirs
    mail_root                       the users' homes (<mail_root>/<user>/Maildir)
    maildir(user, mailbox)          the Maildir path of a mailbox (INBOX or "A/B")
    ssl_context()                   client context trusting the served cert
    connect(user=None, tls=...)     logged-in (or, with user=None, not) imaplib client
    append(user, mailbox, raw, flags=(), date=None) -> UID (APPENDUID), via IMAP on loopback
    fill_maildir(user, mailbox, messages, flags=None) -> count, files straight into the
                                    Maildir (bulk: ~40,000 a second under /dev/shm)
    message_flags(user, mailbox) -> {uid: set of flags} via EXAMINE (changes nothing)
    uids(user, mailbox) -> sorted UIDs
    log() -> Dovecot's log text
    stop()                          stop now (the context manager does it too)
    start()                         start a stopped instance again: the same config, ports and
                                    mail (an outage and a restart; the context manager stops
                                    whichever process runs at the end)
    """

    def __init__(self, directory, conf, proc, ports, users, certs, selfsigned, mail_uid,
                 mail_gid, mail_root, log_path):
        self.dir = directory
        self.conf = conf
        self.proc = proc
        self.host = HOST
        self.imap_port = ports["imap"]
        self.imaps_port = ports["imaps"]
        self.strict_host = STRICT_HOST if "strict" in ports else None
        self.strict_port = ports.get("strict")
        self.users = dict(users)
        self.certs = certs
        if selfsigned:
            self.cert_file, self.key_file = certs.selfsigned_cert, certs.selfsigned_key
            self.ca_file = None
        else:
            self.cert_file, self.key_file = certs.server_cert, certs.server_key
            self.ca_file = certs.ca_cert
        self.mail_uid = mail_uid
        self.mail_gid = mail_gid
        self.mail_root = mail_root
        self.log_path = log_path

    # -- certificates

    def fingerprint(self):
        return rig.cert_sha256(self.cert_file)

    def spki_fingerprint(self):
        return rig.spki_sha256(self.cert_file)

    def ssl_context(self):
        """A client context that verifies the served certificate (against the CA, or the
        self-signed cert itself as the trust anchor)."""
        return ssl.create_default_context(cafile=self.ca_file or self.cert_file)

    # -- IMAP clients

    def connect(self, user=None, tls="starttls", source=None, port=None, host=None,
                mech="login", timeout=TIMEOUT):
        """An imaplib client. tls: "starttls" (imap port, STARTTLS verified), "imaps" (implicit
        TLS), "plain" (no TLS; login works from 127.0.0.1 only, see the module notes).
        source: bind this local address (127.0.0.N). With user, logs in (mech "login" or
        "plain" = AUTHENTICATE PLAIN). Use it as a context manager (logout at the end)."""
        host = host or self.host
        if tls == "imaps":
            c = _IMAP4_SSL(host, port or self.imaps_port, ssl_context=self.ssl_context(),
                           timeout=timeout, source=source)
        else:
            c = _IMAP4(host, port or self.imap_port, timeout=timeout, source=source)
            if tls == "starttls":
                c.starttls(ssl_context=self.ssl_context())
        if user is not None:
            password = self.users[user]
            if mech == "plain":
                c.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            else:
                c.login(user, password)
        return c

    def append(self, user, mailbox, raw, flags=(), date=None):
        """APPENDs raw bytes as user; returns the new message's UID (from APPENDUID)."""
        with self.connect(user) as c:
            return rig.imap_append(c, _quote(mailbox), raw, flags, date)

    def message_flags(self, user, mailbox="INBOX"):
        """{uid: set of flag strings} of every message, read with EXAMINE (read-only: does not
        set \\Seen or clear \\Recent)."""
        out = {}
        with self.connect(user) as c:
            typ, data = c.select(_quote(mailbox), readonly=True)
            if typ != "OK":
                raise RuntimeError(f"EXAMINE {mailbox}: {data}")
            if int(data[0]) == 0:
                return out
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
            for item in data:
                if not isinstance(item, bytes):
                    continue
                m = re.search(rb"UID (\d+)", item)
                f = re.search(rb"FLAGS \(([^)]*)\)", item)
                if m:
                    out[int(m.group(1))] = set(f.group(1).decode().split()) if f else set()
        return out

    def uids(self, user, mailbox="INBOX"):
        return sorted(self.message_flags(user, mailbox))

    # -- Maildir

    def maildir(self, user, mailbox="INBOX"):
        """Path of the Maildir++ folder for mailbox ("INBOX", "Sent", "Archive/2024")."""
        root = os.path.join(self.mail_root, user, "Maildir")
        if mailbox.upper() == "INBOX":
            return root
        return os.path.join(root, "." + mailbox.replace(SEPARATOR, "."))

    def _make_maildir(self, user, mailbox):
        """Creates the user's Maildir and the mailbox folder (owned by the mail uid)."""
        home = os.path.join(self.mail_root, user)
        paths = [home, os.path.join(home, "Maildir")]
        for sub in ("cur", "new", "tmp"):
            paths.append(os.path.join(home, "Maildir", sub))
        folder = self.maildir(user, mailbox)
        if folder != paths[1]:
            paths.append(folder)
            for sub in ("cur", "new", "tmp"):
                paths.append(os.path.join(folder, sub))
        for p in paths:
            try:
                os.mkdir(p, 0o700)
            except FileExistsError:
                continue
            os.chown(p, self.mail_uid, self.mail_gid)
        if folder != paths[1]:
            marker = os.path.join(folder, "maildirfolder")
            if not os.path.exists(marker):
                with open(marker, "wb"):
                    pass
                os.chown(marker, self.mail_uid, self.mail_gid)
        return folder

    def fill_maildir(self, user, mailbox, messages, flags=None):
        """Writes messages (an iterable of bytes) straight into the mailbox's Maildir, owned by
        the mail uid, each file into tmp/ and then renamed into new/, as a delivery would; with
        flags (Maildir letters: "S" = \\Seen, "F" = \\Flagged, "RS", ... or "" for none)
        into cur/ as "<name>:2,<flags>" instead. Creates the mailbox if missing. Dovecot gives
        them UIDs, in this order, when the mailbox is next opened. Returns the count.
        100,000 small messages: ~2-3 s under /dev/shm (shm=True), 5-30 s on this machine's
        disk depending on load; the first SELECT then takes ~1 s."""
        global _seq
        folder = self._make_maildir(user, mailbox)
        tmp = os.path.join(folder, "tmp")
        dest = os.path.join(folder, "new" if flags is None else "cur")
        info = "" if flags is None else ":2," + "".join(sorted(flags))
        uid, gid = self.mail_uid, self.mail_gid
        stamp = int(time.time())
        pid = os.getpid()
        n = 0
        for raw in messages:
            _seq += 1
            n += 1
            # Dovecot orders new files by the time fields (seconds, then M<usecs>), so the
            # counter in M is the delivery order. Only once: with it twice (also as Q<n>) the
            # names collide in Dovecot's filename hash and the first SELECT goes quadratic.
            base = "%d.M%dP%d.mailtrail-rig,S=%d" % (stamp, _seq, pid, len(raw))
            path = os.path.join(tmp, base)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchown(fd, uid, gid)
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(path, os.path.join(dest, base + info))
        return n

    # -- lifecycle

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        _stop(self.proc)

    def start(self, timeout=rig.READY_TIMEOUT):
        """Starts the instance again after stop(), on the same ports with the same config and
        mail directory. Dovecot's listeners set SO_REUSEADDR, so the ports are free at once
        (connections of the old instance in TIME_WAIT do not hold them)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("dovecot is still running")
        err_path = os.path.join(self.dir, "dovecot.stderr")
        ports = [(HOST, self.imap_port), (HOST, self.imaps_port)]
        if self.strict_port:
            ports.append((STRICT_HOST, self.strict_port))
        last = None
        for _attempt in range(20):
            with open(err_path, "ab") as err:
                self.proc = rig.start_process([DOVECOT, "-F", "-c", self.conf],
                                              stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            if all(rig.wait_port(h, port, timeout=timeout, proc=self.proc) for h, port in ports):
                return
            last = _tail(err_path) + _tail(self.log_path)
            _stop(self.proc)
            time.sleep(0.25)  # a port still held by the old instance's last child
        raise RuntimeError("dovecot did not restart: " + (last or ""))


def group_members(pgid):
    """Pids of the live (not zombie) processes in process group pgid, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        fields = stat[stat.rindex(b")") + 2:].split()
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            out.append(int(name))
    return out


def _stop(proc, timeout=5.0):
    """Stops the master and its process group (rig.stop_process), then waits until every
    member of the group is gone: the master exits before its children have, so a caller that
    checks right away would see them. Stragglers get SIGKILL."""
    rig.stop_process(proc)
    for sig in (None, signal.SIGKILL):
        if sig is not None:
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not group_members(proc.pid):
                return
            time.sleep(0.02)


def _quote(mailbox):
    if re.fullmatch(r"[A-Za-z0-9/._-]+", mailbox):
        return mailbox
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config(d, ports, users_file, mail_root, uid, gid, cert, key, imap_process_limit,
            imap_client_limit, login_client_limit, max_userip, debug, extra_conf):
    if os.geteuid() == 0:
        login_user, internal_user = "dovenull", "dovecot"
    else:  # not supported by the rig's tests, but keeps a non-root run understandable
        login_user = internal_user = pwd.getpwuid(os.geteuid()).pw_name
    mailboxes = "".join(
        f"  mailbox {name} {{\n    special_use = {use}\n    auto = subscribe\n  }}\n"
        for name, use in SPECIAL_USE)
    strict = ""
    if "strict" in ports:
        strict = (f"  inet_listener imap_strict {{\n    address = {STRICT_HOST}\n"
                  f"    port = {ports['strict']}\n  }}\n")
    dh = "/usr/share/dovecot/dh.pem"
    conf = f"""# Written by tests/rig/dovecot.py
base_dir = {d}/run
state_dir = {d}/state
instance_name = mailtrail-rig-{os.path.basename(d)}
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = {HOST}
default_login_user = {login_user}
default_internal_user = {internal_user}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
{"ssl_dh = <" + dh if os.path.exists(dh) else ""}
disable_plaintext_auth = yes
login_trusted_networks =
auth_mechanisms = plain login
auth_failure_delay = 0
auth_verbose = {"yes" if debug else "no"}
auth_debug = {"yes" if debug else "no"}
mail_debug = {"yes" if debug else "no"}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_file}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail_root}/%u
}}
namespace inbox {{
  inbox = yes
  separator = {SEPARATOR}
{mailboxes}}}
protocol imap {{
  mail_max_userip_connections = {max_userip}
}}
service imap-login {{
  inet_listener imap {{
    port = {ports['imap']}
  }}
  inet_listener imaps {{
    port = {ports['imaps']}
    ssl = yes
  }}
{strict}  service_count = 0
  process_min_avail = 1
  client_limit = {login_client_limit}
}}
service imap {{
  process_limit = {imap_process_limit}
  client_limit = {imap_client_limit}
}}
service anvil {{
  client_limit = {imap_process_limit + login_client_limit + 100}
}}
service auth {{
  client_limit = {imap_process_limit + login_client_limit + 100}
}}
"""
    return conf + (extra_conf or "") + "\n"


@contextlib.contextmanager
def dovecot(certs, directory, users=None, selfsigned=False, strict_listener=False,
            extra_conf="", imap_process_limit=512, imap_client_limit=1,
            login_client_limit=1000, max_userip_connections=10000, debug=False, shm=False,
            timeout=rig.READY_TIMEOUT):
    """Starts a private Dovecot under directory (created; keep it inside a rig.tempdir) and
    yields a Dovecot; stops it (whole process group) at the end, on failure too.

    certs: rig.make_certs(...). users: {name: password} (default DEFAULT_USERS).
    selfsigned: serve rig's self-signed cert instead of the CA-signed one.
    strict_listener: add the STARTTLS-required listener on 127.0.0.2 (see module notes).
    extra_conf: appended to the config. imap_process_limit / imap_client_limit: `service imap`
    limits (connections = product); login_client_limit: connections one imap-login process
    (performance mode, service_count = 0) serves; max_userip_connections: per user and IP.
    debug: auth_debug/mail_debug in the log.
    shm: keep the maildirs (and Dovecot's indexes, which live in them) in a temp dir under
    /dev/shm (removed at the end) when it is a tmpfs with 1 GB free, else under directory as
    usual: file creation there is 5-30x faster than on this machine's disk, which is what bulk
    fill_maildir spends its time on."""
    if not os.access(DOVECOT, os.X_OK):
        raise RuntimeError(f"{DOVECOT} missing (scripts/install-deps: dovecot-core dovecot-imapd)")
    users = dict(users or DEFAULT_USERS)
    uid, gid = ensure_mail_user()
    d = os.path.abspath(directory)
    os.makedirs(d, exist_ok=True)
    # The auth process (internal user) reads the passwd-file; mail processes (the mail uid)
    # reach their homes: every parent directory must be traversable.
    rig.make_traversable(d)
    shm_dir = _shm_dir() if shm else None
    try:
        mail_root = os.path.join(shm_dir or d, "mail")
        os.makedirs(mail_root, exist_ok=True)
        os.chown(mail_root, uid, gid)
        yield from _run(certs, d, users, uid, gid, mail_root, selfsigned, strict_listener,
                        extra_conf, imap_process_limit, imap_client_limit, login_client_limit,
                        max_userip_connections, debug, timeout)
    finally:
        if shm_dir:
            shutil.rmtree(shm_dir, ignore_errors=True)


def _shm_dir():
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize < (1 << 30) or not os.access("/dev/shm", os.W_OK):
            return None
        path = tempfile.mkdtemp(prefix="mailtrail-dovecot-", dir="/dev/shm")
    except OSError:
        return None
    os.chmod(path, 0o711)
    return path


def _run(certs, d, users, uid, gid, mail_root, selfsigned, strict_listener, extra_conf,
         imap_process_limit, imap_client_limit, login_client_limit, max_userip_connections,
         debug, timeout):
    users_file = os.path.join(d, "users")
    with open(users_file, "w") as f:
        for name, pw in users.items():
            f.write(f"{name}:{{PLAIN}}{pw}::::::\n")
    os.chmod(users_file, 0o644)
    conf = os.path.join(d, "dovecot.conf")
    log_path = os.path.join(d, "dovecot.log")
    err_path = os.path.join(d, "dovecot.stderr")
    last_err = ""
    for _attempt in range(5):
        ports = {"imap": rig.free_port(), "imaps": rig.free_port()}
        if strict_listener:
            ports["strict"] = rig.free_port(STRICT_HOST)
        with open(conf, "w") as f:
            f.write(_config(d, ports, users_file, mail_root, uid, gid,
                            certs.selfsigned_cert if selfsigned else certs.server_cert,
                            certs.selfsigned_key if selfsigned else certs.server_key,
                            imap_process_limit, imap_client_limit, login_client_limit,
                            max_userip_connections, debug, extra_conf))
        with open(err_path, "ab") as err:
            proc = rig.start_process([DOVECOT, "-F", "-c", conf], stdin=subprocess.DEVNULL,
                                     stdout=err, stderr=err)
        try:
            ok = all(rig.wait_port(STRICT_HOST if k == "strict" else HOST, port,
                                   timeout=timeout, proc=proc)
                     for k, port in ports.items())
            if ok:
                dc = Dovecot(d, conf, proc, ports, users, certs, selfsigned, uid, gid,
                             mail_root, log_path)
                try:
                    yield dc
                finally:
                    proc = dc.proc  # start() may have replaced it
                return
            last_err = _tail(err_path) + _tail(log_path)
        finally:
            _stop(proc)
    raise RuntimeError("dovecot did not start: " + last_err)


def _tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""
