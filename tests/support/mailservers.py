"""A real Dovecot + Postfix pair on loopback for mailbot's tests (no Microsoft needed).

Usage::

    servers = MailServers(tmp_path, ca, untrusted_ca, jwt_key)
    servers.start()          # ~0.1 s; raises TestbedUnavailable if it can't run here
    servers.add_user("t1@example.com")
    ...                      # token: tests.support.jwt_hs256.access_token("t1@example.com", jwt_key)
    servers.stop()           # ~0.05 s; idempotent

Listeners (ports are picked free at every ``start()``; hosts are fixed):

==============================  ====================  =====================================
attribute                       connect to            what
==============================  ====================  =====================================
``imaps_port``                  ``host``              IMAP, implicit TLS, cert from ``ca``
``imap_starttls_port``          ``starttls_host``     plain IMAP, AUTHENTICATE only after
                                                      STARTTLS (LOGINDISABLED before)
``untrusted_imaps_port``        ``untrusted_host``    IMAP, implicit TLS, untrusted_ca cert
``submission_port``             ``host``              SMTP, AUTH only after STARTTLS (587)
``smtps_port``                  ``host``              SMTP, implicit TLS (465)
``untrusted_submission_port``   ``host``              STARTTLS submission, untrusted_ca cert
``lmtp_port``                   ``127.0.0.1``         Dovecot LMTP (Postfix delivers here)
==============================  ====================  =====================================

``host`` is "localhost" (127.0.0.1); ``starttls_host`` is 127.0.0.2 because Dovecot deems a
connection whose local and remote IP are equal secure and would allow AUTH without STARTTLS
on 127.0.0.1 (clients reach 127.0.0.2 from 127.0.0.1); ``untrusted_host`` is 127.0.0.3
because Dovecot picks certificates by local IP. Both certificates have the SANs localhost,
127.0.0.1, 127.0.0.2 and 127.0.0.3.

Auth: only XOAUTH2 and OAUTHBEARER, IMAP and SMTP alike. A token is an HS256 JWT signed
with ``jwt_key`` whose ``email`` claim equals the login user; the user must exist
(``add_user``). Failures answer at once with NO [AUTHENTICATIONFAILED] / 535 (after the
XOAUTH2 error continuation). Delegation: logging in as a mailbox named ``shared*@...``
also works with a token whose ``mailbox`` claim names it (``access_token("alice@...", key,
mailbox="shared1@example.com")``); a token *without* that claim for such a mailbox gets
[UNAVAILABLE] (Dovecot calls a missing claim an internal error), which is why delegation
is limited to that name pattern. App-only: a service mailbox named ``svc*@...`` opens only
with an app token (``oid`` claim, no ``email``) of an app granted it with ``grant_app(mailbox,
app_object_id)`` (``revoke_app`` undoes it; both reload Dovecot and Postfix), as Exchange's
``Add-MailboxPermission`` does; no person's token opens it.

Mail: Postfix relays example.com over LMTP to Dovecot (one recipient per transaction, so
each copy has a Delivered-To header). Any other domain is rewritten to
``catchall+<local>=<domain>@example.com``: one copy per external recipient, read back by
``external_mail()`` with the original recipient (case as sent). The envelope sender must
be the SASL login (else 553 at MAIL FROM) unless ``allow_send_as`` allows it.

Files: everything the servers touch lives in ``dir``, a short world-traversable
``/dev/shm/mbtb-*`` (or ``/tmp``) directory: pytest's tmp dirs are 0700 (and every new
pytest session resets them to that), Dovecot and Postfix drop root, unix socket paths are
limited to 108 bytes, and tmpfs makes seeding 100,000 messages ~2x faster. ``dir`` holds
the rendered configs, ``logs/`` (dovecot.log, postfix.log), ``users/``, ``mail/<address>/``
(home: ``Maildir/``, ``rawlog/``) and the Postfix queue. While running,
``root/mailservers`` links to it; ``stop()`` copies ``logs/`` to ``root/logs`` and deletes
``dir`` (a later ``start()`` is a fresh instance with new ports; users and send-as
permissions are re-created, mail is not).
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import trustme

HERE = Path(__file__).resolve().parent
INSTALL_HINT = "apt-get install dovecot-imapd dovecot-lmtpd postfix, and run as root"
MAIL_USER = "mail"  # unprivileged owner of all mail files (Dovecot refuses uid 0)


class TestbedUnavailable(RuntimeError):
    """The mail servers can't run here (not root, binaries missing, ...)."""

    __test__ = False  # not a pytest test class


class _Template(string.Template):
    # Only ${TB_...} is ours: Dovecot and Postfix use $name and ${name} themselves.
    idpattern = r"TB_[A-Z0-9_]+"
    flags = 0


@dataclass
class ExternalMail:
    """A copy of a message sent to an address outside ``domain``."""

    recipient: str  # original envelope recipient, as the client sent it
    message: EmailMessage
    path: Path


class MailServers:
    domain = "example.com"
    host = "localhost"
    starttls_host = "127.0.0.2"
    untrusted_host = "127.0.0.3"
    catchall = "catchall@example.com"
    shared_prefix = "shared"  # delegation works for logins as shared*@ mailboxes
    service_prefix = "svc"  # service mailboxes: only app-only tokens of granted apps open them

    def __init__(self, root: Path, ca: trustme.CA, untrusted_ca: trustme.CA, jwt_key: bytes):
        self.root = Path(root).resolve()
        self.dir = Path("/nonexistent")  # the working dir, made by start()
        self.ca = ca
        self.untrusted_ca = untrusted_ca
        self.jwt_key = jwt_key
        self.instance = "mbtb-" + secrets.token_hex(4)
        self.imaps_port = self.imap_starttls_port = self.untrusted_imaps_port = 0
        self.submission_port = self.smtps_port = self.untrusted_submission_port = 0
        self.lmtp_port = 0
        self._dovecot: subprocess.Popen | None = None
        self._postfix: subprocess.Popen | None = None
        self._users: list[str] = []
        self._send_as: dict[str, set[str]] = {}
        self._app_grants: list[tuple[str, str]] = []  # (service mailbox, app's service principal oid)
        self._lock = threading.Lock()
        self._last_stamp = 0
        self._folders_made: dict[tuple[str, str], str] = {}
        self._pid = os.getpid()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._check_environment()
        self._uid, self._gid = pwd.getpwnam(MAIL_USER).pw_uid, grp.getgrnam(MAIL_USER).gr_gid
        for _attempt in range(3):  # a picked port may be taken by someone else meanwhile
            self.dir = Path(tempfile.mkdtemp(prefix="mbtb-", dir=_scratch_base()))
            self.dir.chmod(0o755)
            self._prepare_dir()
            self._pick_ports()
            self._render()
            try:
                self._start_dovecot()
                self._start_postfix()
                return
            except _PortClash:
                self.stop()
            except BaseException:
                self.stop()
                raise
        raise TestbedUnavailable("could not find free ports after 3 tries")

    def stop(self) -> None:
        """Stop both servers and kill anything left of this instance. Idempotent."""
        self.stop_postfix()
        # Dovecot's master takes 1-6 s to wind down on SIGTERM; nothing here needs that.
        self._dovecot = _terminate(self._dovecot, graceful=False)
        if self.dir.is_dir():
            # Keep the logs next to the test's tmp dir; the mail goes away.
            shutil.copytree(self.dir / "logs", self.root / "logs", dirs_exist_ok=True)
            (self.root / "mailservers").unlink(missing_ok=True)
            shutil.rmtree(self.dir, ignore_errors=True)

    def stop_dovecot(self) -> None:
        """Kill Dovecot (every IMAP session drops at once, as in a crash); mail and ports stay."""
        self._dovecot = _terminate(self._dovecot, graceful=False)

    def start_dovecot(self) -> None:
        """(Re)start Dovecot with the same ports and mail (after :meth:`stop_dovecot`)."""
        if self._dovecot is None:
            self._start_dovecot()

    def stop_postfix(self) -> None:
        self._postfix = _terminate(self._postfix)

    def start_postfix(self) -> None:
        """(Re)start Postfix with the same ports; queued mail gets delivered."""
        if self._postfix is None:
            self._start_postfix()

    def __enter__(self) -> MailServers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ users, mail

    def add_user(self, address: str) -> None:
        """Create a mailbox user; takes effect immediately (Dovecot re-reads the file)."""
        address = address.lower()
        with self._lock:
            if address in self._users:
                return
            if not self.dir.is_dir():  # not started: start() creates it
                self._users.append(address)
                return
            home = self.home(address)
            for d in (home, home / "Maildir", home / "rawlog"):
                d.mkdir(exist_ok=True)
                os.chown(d, self._uid, self._gid)
                d.chmod(0o700)
            self._users.append(address)
            # "{CRYPT}!" matches no password: only tokens authenticate.
            line = f"{address}:{{CRYPT}}!:{self._uid}:{self._gid}::{home}::\n"
            _write_atomic(self.dir / "users" / address, line)

    def allow_send_as(self, login: str, address: str) -> None:
        """Let SASL user ``login`` use MAIL FROM ``address`` (besides ``address`` itself)."""
        with self._lock:
            self._send_as.setdefault(address.lower(), {address.lower()}).add(login.lower())
            if not self.dir.is_dir():  # not started: start() writes it
                return
            self._write_send_as()
        self._reload_postfix()

    # ------------------------------------------------------------------ app-only grants

    def grant_app(self, mailbox: str, app_object_id: str) -> None:
        """Let app-only tokens whose ``oid`` is ``app_object_id`` open the service mailbox
        ``mailbox`` (it must be named svc*@), over IMAP and SMTP: what Exchange's
        ``New-ServicePrincipal`` + ``Add-MailboxPermission -AccessRights FullAccess`` do.
        An app token for a mailbox without a grant fails like a bad token. Reloads Dovecot."""
        self._change_app_grants(mailbox, app_object_id, add=True)

    def revoke_app(self, mailbox: str, app_object_id: str) -> None:
        """Undo ``grant_app``."""
        self._change_app_grants(mailbox, app_object_id, add=False)

    def _change_app_grants(self, mailbox: str, app_object_id: str, add: bool) -> None:
        mailbox = mailbox.lower()
        if not mailbox.startswith(self.service_prefix):
            raise ValueError(f"app grants are for service mailboxes named {self.service_prefix}*@")
        grant = (mailbox, app_object_id)
        with self._lock:
            if add == (grant in self._app_grants):
                return
            if add:
                self._app_grants.append(grant)
            else:
                self._app_grants.remove(grant)
            if not self.dir.is_dir():
                return
            self._render_app_grants()
        self._reload_dovecot()

    def _render_app_grants(self) -> None:
        """One oauth2 passdb per grant. The token's ``oid`` must be the app's (``active_*``);
        ``username_format`` is the constant mailbox, so any token with an ``oid`` passes the
        user check, and ``username_filter`` limits the passdb to that mailbox's logins."""
        blocks = []
        base = (HERE / "dovecot-oauth2.conf.tmpl").read_text()
        for n, (mailbox, oid) in enumerate(self._app_grants):
            conf = self.dir / f"dovecot-app-grant-{n}.conf"
            text = _Template(base).safe_substitute(TB_ROOT=str(self.dir), TB_USERNAME_ATTRIBUTE="oid")
            text += f"username_format = {mailbox}\nactive_attribute = oid\nactive_value = {oid}\n"
            _write_atomic(conf, text)
            blocks.append(
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {conf}\n  username_filter = {mailbox}\n  skip = authenticated\n"
                "  result_success = continue-ok\n  result_failure = continue\n"
                "  result_internalfail = continue\n}\n"
            )
        _write_atomic(self.dir / "dovecot-app-grants.conf", "".join(blocks) or "# no app grants\n")

    def _reload_dovecot(self) -> None:
        """HUP Dovecot's master and wait until it has re-read the configuration."""
        if self._dovecot is None or self._dovecot.poll() is not None:
            return
        log = self.dir / "logs/dovecot.log"
        offset = log.stat().st_size if log.exists() else 0
        os.kill(self._dovecot.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if b"reloading configuration" in _read_from(log, offset):
                break
            time.sleep(0.01)
        time.sleep(0.2)  # the old auth process finishes; new logins get a fresh one
        # Postfix's smtpd processes keep their connection to the old auth process (and so
        # the old grants): let them be replaced too.
        self._reload_postfix()

    def home(self, address: str) -> Path:
        return self.dir / "mail" / address.lower()

    def maildir(self, address: str) -> Path:
        """The user's Maildir root (= INBOX); subfolders are Maildir++ ``.Name``."""
        return self.home(address) / "Maildir"

    def folder_dir(self, address: str, folder: str = "INBOX") -> Path:
        base = self.maildir(address)
        if folder.upper() == "INBOX":
            return base
        return base / ("." + folder.replace("/", "."))

    def seed(
        self,
        address: str,
        raw: bytes,
        folder: str = "INBOX",
        seen: bool = False,
        internaldate: float | None = None,
    ) -> Path:
        """Drop a message straight into the Maildir (fast, no IMAP). Messages get UIDs in
        seeding order; ``internaldate`` (epoch) becomes the file's mtime = INTERNALDATE."""
        cur = self._make_folder(address, folder)
        with self._lock:
            # Strictly increasing <secs>.M<usecs> names: Dovecot assigns UIDs in that order.
            self._last_stamp = stamp = max(time.time_ns() // 1000, self._last_stamp + 1)
        path = (
            f"{cur}/{stamp // 1_000_000}.M{stamp % 1_000_000}P{self._pid}.testbed,S={len(raw)}:2,{'S' if seen else ''}"
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, raw)
            os.fchown(fd, self._uid, self._gid)
        finally:
            os.close(fd)
        if internaldate is not None:
            os.utime(path, (internaldate, internaldate))
        return Path(path)

    def imap_commands(self, address: str) -> list[str]:
        """Lines the client sent after login in ``address``'s IMAP sessions, e.g.
        ``"a3 UID FETCH 1:* (FLAGS)"``, in time order across sessions (Dovecot rawlog,
        written live). The AUTHENTICATE itself happens before it and is not included;
        literals (e.g. APPEND data) appear as lines too."""
        entries = []
        for n, f in enumerate(sorted((self.home(address) / "rawlog").glob("*.in"))):
            stamp = 0.0
            for i, line in enumerate(f.read_text("utf-8", "replace").splitlines()):
                m = re.match(r"(\d+\.\d+) (.*)", line)  # rawlog's "<secs>.<usecs> " prefix
                if m:
                    stamp, line = float(m[1]), m[2]
                entries.append((stamp, n, i, line))
        return [line for *_, line in sorted(entries)]

    def clear_imap_commands(self, address: str) -> None:
        """Forget the rawlogs of ``address`` (call between sessions)."""
        for f in (self.home(address) / "rawlog").iterdir():
            f.unlink()

    def messages(self, address: str, folder: str = "INBOX") -> list[Path]:
        """Message files of a folder (cur/ and new/), in delivery order."""
        d = self.folder_dir(address, folder)
        files = [p for sub in ("new", "cur") if (d / sub).is_dir() for p in (d / sub).iterdir()]
        return sorted(files, key=lambda p: p.name)

    def external_mail(self) -> list[ExternalMail]:
        """Copies of mail sent outside ``domain``, each with its original recipient
        (from ``Delivered-To: catchall+<local>=<domain>@example.com``)."""
        out = []
        for path in self.messages(self.catchall):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            m = re.match(r"catchall\+(.*)=([^=@]+)@", str(msg.get("Delivered-To", "")))
            if m:
                out.append(ExternalMail(f"{m[1]}@{m[2]}", msg, path))
        return out

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Poll ``predicate()`` until truthy (mail delivery is asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}; see {self.dir / 'logs'}")
            time.sleep(0.05)

    # ------------------------------------------------------------------ internals

    def _check_environment(self) -> None:
        if os.geteuid() != 0:
            raise TestbedUnavailable(f"mail test bed needs root ({INSTALL_HINT})")
        missing = [b for b in ("dovecot", "postconf") if shutil.which(b) is None]
        if missing:
            raise TestbedUnavailable(f"missing {', '.join(missing)}: {INSTALL_HINT}")
        # Compiled-in defaults (-d): a Postfix installed with "No configuration" has no main.cf,
        # and a plain "postconf -h" then fails.
        self._postfix_master = Path(_run(["postconf", "-d", "-h", "daemon_directory"])) / "master"
        for path in (self._postfix_master, Path("/usr/lib/dovecot/imap"), Path("/usr/lib/dovecot/lmtp")):
            if not path.exists():
                raise TestbedUnavailable(f"missing {path}: {INSTALL_HINT}")
        try:
            for user in (MAIL_USER, "dovecot", "dovenull", "postfix"):
                pwd.getpwnam(user)
            for group in (MAIL_USER, "postdrop"):
                grp.getgrnam(group)
        except KeyError as exc:
            raise TestbedUnavailable(f"missing system user/group {exc}: {INSTALL_HINT}") from None

    def _prepare_dir(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        link = self.root / "mailservers"  # for humans poking at a running test
        link.unlink(missing_ok=True)
        link.symlink_to(self.dir)
        for sub in ("logs", "certs", "mail", "users", "postfix", "oauth2-keys/default/HS256"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
            (self.dir / sub).chmod(0o755)
        # Dovecot reads the key as base64 from <dict>/default/HS256/default.
        _write_atomic(self.dir / "oauth2-keys/default/HS256/default", base64.b64encode(self.jwt_key).decode())
        sans = ("localhost", "127.0.0.1", self.starttls_host, self.untrusted_host)
        for name, ca in (("trusted", self.ca), ("untrusted", self.untrusted_ca)):
            cert = ca.issue_cert(*sans)
            cert.private_key_pem.write_to_path(str(self.dir / f"certs/{name}.key"))
            chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
            (self.dir / f"certs/{name}.pem").write_bytes(chain)
        # On a restart after stop(), re-create the users (their mail is gone).
        users, self._users, self._folders_made = self._users, [], {}
        for u in (self.catchall, "postmaster@" + self.domain, *users):
            self.add_user(u)
        with self._lock:
            self._write_send_as()

    def _pick_ports(self) -> None:
        def free(ip: str) -> int:
            with socket.socket() as s:
                s.bind((ip, 0))
                return s.getsockname()[1]

        self.imaps_port = free("127.0.0.1")
        self.imap_starttls_port = free(self.starttls_host)
        self.untrusted_imaps_port = free(self.untrusted_host)
        self.lmtp_port = free("127.0.0.1")
        self.submission_port = free("127.0.0.1")
        self.smtps_port = free("127.0.0.1")
        self.untrusted_submission_port = free("127.0.0.1")

    def _render(self) -> None:
        values = {
            "TB_ROOT": str(self.dir),
            "TB_INSTANCE": self.instance,
            "TB_DOMAIN": self.domain,
            "TB_DOMAIN_RE": re.escape(self.domain),
            "TB_SHARED_PREFIX": self.shared_prefix,
            "TB_SERVICE_PREFIX": self.service_prefix,
            "TB_MAIL_UID": str(self._uid),
            "TB_MAIL_GID": str(self._gid),
            "TB_STARTTLS_IP": self.starttls_host,
            "TB_UNTRUSTED_IP": self.untrusted_host,
            "TB_IMAPS_PORT": str(self.imaps_port),
            "TB_IMAP_STARTTLS_PORT": str(self.imap_starttls_port),
            "TB_UNTRUSTED_IMAPS_PORT": str(self.untrusted_imaps_port),
            "TB_LMTP_PORT": str(self.lmtp_port),
            "TB_SUBMISSION_PORT": str(self.submission_port),
            "TB_SMTPS_PORT": str(self.smtps_port),
            "TB_UNTRUSTED_SUBMISSION_PORT": str(self.untrusted_submission_port),
        }

        def render(template: str, target: Path, **extra: str) -> None:
            text = _Template((HERE / template).read_text()).safe_substitute(values, **extra)
            if "${TB_" in text or "$TB_" in text:
                raise ValueError(f"unfilled placeholder in {template}")
            _write_atomic(target, text)

        render("dovecot.conf.tmpl", self.dir / "dovecot.conf")
        render("dovecot-oauth2.conf.tmpl", self.dir / "dovecot-oauth2-email.conf", TB_USERNAME_ATTRIBUTE="email")
        render(
            "dovecot-oauth2.conf.tmpl",
            self.dir / "dovecot-oauth2-mailbox.conf",
            TB_USERNAME_ATTRIBUTE="mailbox",
        )
        self._render_app_grants()
        render("postfix-main.cf.tmpl", self.dir / "postfix/main.cf")
        render("postfix-master.cf.tmpl", self.dir / "postfix/master.cf")
        render("postfix/virtual_alias.regexp.tmpl", self.dir / "postfix/virtual_alias.regexp")
        render("postfix/sender_self.regexp", self.dir / "postfix/sender_self.regexp")
        _backdate(self.dir / "postfix")
        # Postfix's queue/data dirs, as post-install would make them (but without a shell
        # script per start: that costs a second).
        q = self.dir / "postfix-queue"
        pf = pwd.getpwnam("postfix").pw_uid
        postdrop = grp.getgrnam("postdrop").gr_gid
        dirs = {
            q: (0, 0, 0o755),
            q / "pid": (0, 0, 0o755),
            self.dir / "postfix-data": (pf, 0, 0o700),
            q / "maildrop": (pf, postdrop, 0o730),
            q / "public": (pf, postdrop, 0o710),
        }
        for name in (
            "active",
            "bounce",
            "corrupt",
            "defer",
            "deferred",
            "flush",
            "hold",
            "incoming",
            "private",
            "saved",
            "trace",
        ):
            dirs[q / name] = (pf, 0, 0o700)
        for d, (uid, gid, mode) in dirs.items():
            d.mkdir(exist_ok=True)
            os.chown(d, uid, gid)
            d.chmod(mode)

    def _start_dovecot(self) -> None:
        log = open(self.dir / "logs/dovecot.stderr", "ab")  # noqa: SIM115 - the child's stderr for its lifetime
        self._dovecot = subprocess.Popen(
            ["dovecot", "-F", "-c", str(self.dir / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self._wait_ports(
            self._dovecot,
            "dovecot",
            [
                ("127.0.0.1", self.imaps_port),
                (self.starttls_host, self.imap_starttls_port),
                (self.untrusted_host, self.untrusted_imaps_port),
                ("127.0.0.1", self.lmtp_port),
            ],
        )
        self._wait_path(self._dovecot, "dovecot", self.dir / "dovecot/postfix-auth")

    def _start_postfix(self) -> None:
        log = open(self.dir / "logs/postfix.stderr", "ab")  # noqa: SIM115 - the child's stderr for its lifetime
        # master -d: stay in the foreground, so the instance is our child and its own
        # session (start_new_session): stop() kills exactly that session.
        self._postfix = subprocess.Popen(
            [str(self._postfix_master), "-d", "-c", str(self.dir / "postfix")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "MAIL_CONFIG": str(self.dir / "postfix")},
        )
        log.close()
        self._wait_ports(
            self._postfix,
            "postfix",
            [("127.0.0.1", p) for p in (self.submission_port, self.smtps_port, self.untrusted_submission_port)],
        )

    def _wait_ports(self, proc: subprocess.Popen, name: str, addrs, timeout=10.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(addrs)
        while pending:
            if proc.poll() is not None:
                tail = self._log_tail()
                if "in use" in tail:
                    raise _PortClash(tail)
                raise TestbedUnavailable(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                socket.create_connection(pending[0], timeout=0.5).close()
                pending.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise TestbedUnavailable(f"{name} not listening on {pending[0]}:\n{self._log_tail()}") from None
                time.sleep(0.02)

    def _wait_path(self, proc, name: str, path: Path, timeout=10.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise TestbedUnavailable(f"{name}: no {path}:\n{self._log_tail()}")
            time.sleep(0.02)

    def _log_tail(self) -> str:
        out = []
        for f in sorted((self.dir / "logs").iterdir()):
            lines = f.read_text("utf-8", "replace").splitlines()[-15:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def _write_send_as(self) -> None:
        text = "".join(f"{a}\t{','.join(sorted(ls))}\n" for a, ls in sorted(self._send_as.items()))
        _write_atomic(self.dir / "postfix/send_as", text)
        _backdate(self.dir / "postfix")

    def _reload_postfix(self) -> None:
        """Make Postfix re-read its maps: HUP the master and wait for the old-generation
        smtpd processes (which have the old map loaded) to exit."""
        if self._postfix is None or self._postfix.poll() is not None:
            return
        log = self.dir / "logs/postfix.log"
        offset = log.stat().st_size if log.exists() else 0
        old = _session_pids(self._postfix.pid) - {self._postfix.pid}
        os.kill(self._postfix.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5  # an smtpd in a live session exits only after it
        while time.monotonic() < deadline:
            reloaded = b" reload -- " in _read_from(log, offset)
            if reloaded and not any(_proc_name(p) == "smtpd" for p in old):
                break
            time.sleep(0.01)

    def _make_folder(self, address: str, folder: str) -> str:
        """The folder's cur/ dir (created on first use), as str: seed() is a hot path."""
        key = (address.lower(), folder)
        cur = self._folders_made.get(key)
        if cur is None:
            d = self.folder_dir(address, folder)
            for sub in ("", "cur", "new", "tmp"):
                (d / sub).mkdir(exist_ok=True)
                os.chown(d / sub, self._uid, self._gid)
            if d != self.maildir(address):
                (d / "maildirfolder").touch()
                os.chown(d / "maildirfolder", self._uid, self._gid)
            cur = self._folders_made[key] = str(d / "cur")
        return cur


class _PortClash(Exception):
    pass


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def _write_atomic(path: Path, text: str) -> None:
    # Dovecot/Postfix may read while we write: replace the file in one step.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _scratch_base() -> str:
    # tmpfs: creating 100,000 seeded message files is ~2x faster than on /tmp (ext4).
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else "/tmp"


def _backdate(config_dir: Path) -> None:
    # Postfix re-reads a config file younger than ~2 s until it has settled (costs 2 s
    # per start or reload): make ours look old.
    old = time.time() - 60
    for f in config_dir.iterdir():
        os.utime(f, (old, old))


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _session_pids(sid: int) -> set[int]:
    """Processes in session ``sid`` -- all of one server instance and nothing else."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":  # state ppid pgrp session
                pids.add(int(entry))
    return pids


def _proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _terminate(proc: subprocess.Popen | None, graceful: bool = True) -> None:
    """Stop a master and SIGKILL whatever is left in its session. Returns None so callers
    can write ``self._x = _terminate(self._x)``."""
    if proc is None:
        return None
    sid = proc.pid
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 3
    while (left := _session_pids(sid)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    return None
