#!/usr/bin/python3
"""A private Cyrus IMAP server (Debian 12's cyrus-imapd 3.6) for the benchmarks: its own config,
spool, password database and port under a temp dir.

    sys.path.insert(0, os.path.join(<repo>, "tests", "rig"))
    import rig, cyrus

    certs = rig.make_certs(os.path.join(tmp, "certs"))
    with cyrus.cyrus(certs, os.path.join(tmp, "cyrus"), users={"rita": "rita-pw"}) as cy:
        cy.append("rita", "INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
        with cy.connect("rita") as imap:          # imaplib, STARTTLS verified against the CA
            imap.select("INBOX")

Why a second IMAP server: bench/sync-push measures how soon mail appended to a watched INBOX is
on the profile's timeline. Dovecot 2.3 (the rig's server for everything else) tells an IDLE
session of a change only when a 500 ms timer it starts on the first file event runs out
(mailbox-watch.c, NOTIFY_DELAY_MSECS, not a setting), so against it any client waits 0-0.5 s.
Cyrus's imapd processes hear of an APPEND from its idled daemon at once: against it the figure
is mailtrail's own push path. Standard library only, Debian's /usr/bin/python3; needs what
bench/lib/cyrus-install provides (cyrus-common and sasl2-bin installed, cyrus-imapd's imapd and
idled unpacked under CYRUS_IMAPD_DIR: the package conflicts with dovecot-imapd) and root:
Cyrus's master drops to the `cyrus` system user cyrus-common creates, and the instance's files
are its.

What the instance has:
  - one `imap` listener (plaintext + STARTTLS with the CA-signed "localhost" certificate) on a
    free high port of 127.0.0.1; `idled` (IDLE push); LOGIN / AUTHENTICATE PLAIN against a
    private sasldb (users: {name: password}); mailboxes user/<name> made by the admin `cyrus`.
  - Cyrus's master runs in the foreground under a root shell that leads its process group
    (see _WATCH): the context manager, rig's atexit hook and the death of the process that
    started it all stop the group (master, imapd, idled).

Quirks (Cyrus 3.6.1, checked here):
  - `master -C FILE` is for the master only: each service's cmd needs its own -C, or imapd
    reads /etc/imapd.conf (and the system /etc/sasldb2).
  - Without /dev/log Cyrus's syslog lines are lost; start.log holds master's own output."""

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import ssl
import subprocess

import rig

MASTER = "/usr/lib/cyrus/bin/master"  # cyrus-common
CTL_CYRUSDB = "/usr/lib/cyrus/bin/ctl_cyrusdb"
SASLPASSWD = "/usr/sbin/saslpasswd2"  # sasl2-bin
# cyrus-imapd's imapd and idled, unpacked by bench/lib/cyrus-install (the package itself
# conflicts with dovecot-imapd).
IMAPD_DIR = os.path.join(os.environ.get("CYRUS_IMAPD_DIR", "/var/cache/mailtrail/cyrus-imapd"),
                         "usr", "lib", "cyrus", "bin")
HOST = "127.0.0.1"
SYSTEM_USER = "cyrus"
ADMIN = "cyrus"
TIMEOUT = 30.0


class Cyrus:
    """A running instance.

    host, imap_port     127.0.0.1 and the plaintext/STARTTLS port
    users               {name: password}
    ca_file             the CA that signed the served certificate
    connect(user)       an imaplib client, STARTTLS verified, logged in as user
    append(user, mailbox, raw)   APPENDs raw bytes; returns the new UID"""

    def __init__(self, directory, proc, port, users, certs):
        self.dir = directory
        self.proc = proc
        self.host = HOST
        self.imap_port = port
        self.users = users
        self.ca_file = certs.ca_cert

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.ca_file)

    def connect(self, user=None, timeout=TIMEOUT):
        c = imaplib.IMAP4(self.host, self.imap_port, timeout=timeout)
        c.starttls(ssl_context=self.ssl_context())
        if user is not None:
            c.login(user, self.users[user])
        return c

    def append(self, user, mailbox, raw, flags=(), date=None):
        with self.connect(user) as c:
            return rig.imap_append(c, mailbox, raw, flags, date)


def _config(d, cert, key):
    return f"""configdirectory: {d}/conf
partition-default: {d}/spool
admins: {ADMIN}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {d}/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
unixhierarchysep: yes
idlesocket: {d}/conf/socket/idle
lmtpsocket: {d}/conf/socket/lmtp
notifysocket: {d}/conf/socket/notify
tls_server_cert: {cert}
tls_server_key: {key}
syslog_prefix: mailtrail-rig-cyrus
"""


def _services(imapd_conf, port):
    c = f"-C {imapd_conf}"
    imapd, idled = os.path.join(IMAPD_DIR, "imapd"), os.path.join(IMAPD_DIR, "idled")
    return f"""START {{
  recover cmd="{CTL_CYRUSDB} {c} -r"
}}
SERVICES {{
  imap cmd="{imapd} {c}" listen="{HOST}:{port}" prefork=1
}}
EVENTS {{
}}
DAEMON {{
  idled cmd="{idled} {c}"
}}
"""


# Cyrus's master drops to the cyrus user, and a change of credentials clears the parent-death
# signal rig.start_process sets: killed hard, a bench would leave it running. A root shell
# leads the process group instead, told by SIGTERM when its parent dies, and takes the group
# (master and its children) with it.
_WATCH = 'trap "kill -KILL -$$" TERM; "$@" & wait $!'


@contextlib.contextmanager
def cyrus(certs, directory, users, timeout=rig.READY_TIMEOUT):
    """Starts a private Cyrus under directory (created) with `users` ({name: password}), each
    with a mailbox, and yields a Cyrus; stops it (its whole process group) at the end."""
    for tool in (MASTER, SASLPASSWD, os.path.join(IMAPD_DIR, "imapd")):
        if not os.access(tool, os.X_OK):
            raise RuntimeError(f"{tool} missing: run bench/lib/cyrus-install")
    ent = pwd.getpwnam(SYSTEM_USER)
    d = os.path.abspath(directory)
    os.makedirs(os.path.join(d, "conf", "socket"), exist_ok=True)
    os.makedirs(os.path.join(d, "spool"), exist_ok=True)
    rig.make_traversable(d)  # the cyrus user reaches its files
    cert, key = os.path.join(d, "server.pem"), os.path.join(d, "server.key")
    shutil.copyfile(certs.server_cert, cert)
    shutil.copyfile(certs.server_key, key)
    os.chmod(key, 0o600)
    sasldb = os.path.join(d, "sasldb2")
    passwords = dict(users)
    passwords[ADMIN] = "cyrus-admin-pw"
    for name, pw in passwords.items():
        subprocess.run([SASLPASSWD, "-p", "-c", "-f", sasldb, name], input=pw.encode(),
                       check=True, timeout=30)
    imapd_conf = os.path.join(d, "imapd.conf")
    with open(imapd_conf, "w") as f:
        f.write(_config(d, cert, key))
    services = os.path.join(d, "cyrus.conf")
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            os.chown(os.path.join(root, name), ent.pw_uid, ent.pw_gid)
    os.chown(d, ent.pw_uid, ent.pw_gid)
    log_path = os.path.join(d, "start.log")
    last = ""
    for _attempt in range(5):
        port = rig.free_port()
        with open(services, "w") as f:
            f.write(_services(imapd_conf, port))
        master = [MASTER, "-C", imapd_conf, "-M", services, "-p", os.path.join(d, "master.pid")]
        with open(log_path, "ab") as log:
            proc = rig.start_process(["/bin/sh", "-c", _WATCH, "cyrus-watch"] + master,
                                     preexec_fn=rig.parent_death_signal(signal.SIGTERM),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            if rig.wait_port(HOST, port, timeout=timeout, proc=proc):
                cy = Cyrus(d, proc, port, passwords, certs)
                with cy.connect(ADMIN) as admin:
                    for name in users:
                        typ, data = admin.create(f"user/{name}")
                        if typ != "OK":
                            raise RuntimeError(f"CREATE user/{name}: {data}")
                yield cy
                return
            with open(log_path, errors="replace") as f:
                last = f.read()[-2000:]
        finally:
            rig.stop_process(proc)
    raise RuntimeError("cyrus did not start: " + last)
