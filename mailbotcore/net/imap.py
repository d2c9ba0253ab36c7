"""IMAP over TLS with SASL XOAUTH2, on top of imaplib.

Three things imaplib does not do for us:
* verify the certificate (we always pass a verifying context);
* save round trips: capabilities are taken from the greeting instead of a CAPABILITY
  command, and AUTHENTICATE sends the initial response on the command line when the
  server advertises SASL-IR (Outlook and Dovecot do);
* keep tokens out of its debug output (routed through the redacting logger).
"""

from __future__ import annotations

import ast
import base64
import imaplib
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from mailbotcore.config import Settings
from mailbotcore.errors import MailbotError, ServiceRefused, SignInRequired, TemporaryFailure
from mailbotcore.net import deadline
from mailbotcore.net.tls import network_error, tls_context
from mailbotcore.wire import imap as imapwire
from mailbotcore.wire import sasl
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.imap")
AUTH_HINT = (
    "the server refused the token: check that IMAP is switched on for the mailbox "
    "(Outlook.com: Settings > Mail > Forwarding and IMAP), that OUTLOOK_USERNAME (or --mailbox) "
    'is right, and run "{login}" again'
)


class _Redacting:
    """Mixin for imaplib classes: fewer round trips, debug output through the redacting log,
    and every read and write kept to the deadline of the operation in progress (``timer``)."""

    _greeting_read = False

    def __init__(self, *args: Any, timer: deadline.Timer, **kwargs: Any) -> None:
        self.timer = timer
        self._reader: deadline.DeadlineReader | None = None
        super().__init__(*args, **kwargs)

    def _create_socket(self, timeout: float | None) -> Any:
        # Connecting (and for IMAPS the TLS handshake) gets only the time left of the deadline.
        try:
            return super()._create_socket(self.timer.remaining())  # type: ignore[misc]
        except TimeoutError as exc:
            raise self.timer.exceeded() from exc

    def _stream(self) -> deadline.DeadlineReader:
        sock = self.sock  # type: ignore[attr-defined]
        if self._reader is None or self._reader.sock is not sock:  # new after STARTTLS
            self._reader = deadline.DeadlineReader(sock, self.timer)
        return self._reader

    def read(self, size: int) -> bytes:
        """A literal: refused unread when larger than the limit, else read within the deadline."""
        return self._stream().read(size)

    def readline(self) -> bytes:
        return self._stream().readline(self.timer.limit_bytes, refuse=True)

    def send(self, data: Any) -> None:
        deadline.send_all(self.sock, self.timer, data)  # type: ignore[attr-defined]

    def _connect(self) -> None:
        # imaplib sets self.debug from a module global in __init__; follow our log level instead.
        self.debug = 4 if log.isEnabledFor(logging.DEBUG) else 0
        super()._connect()  # type: ignore[misc]

    def _get_capabilities(self) -> None:
        caps = self.untagged_responses.pop("CAPABILITY", None)  # type: ignore[attr-defined]
        if not self._greeting_read and caps:
            # Capabilities in the greeting spare a round trip; after STARTTLS they must be asked again.
            self._greeting_read = True
            self.capabilities = imapwire.parse_capabilities(caps[-1])
            return
        self._greeting_read = True
        super()._get_capabilities()  # type: ignore[misc]

    def _mesg(self, s: str, secs: float | None = None) -> None:
        log.debug("imap %s", s)

    def authenticate_xoauth2(self, responder: Any, initial: str) -> tuple[str, list[bytes]]:
        """AUTHENTICATE XOAUTH2 in one round trip when SASL-IR is advertised, else the two-step dance.

        A failure arrives as a continuation carrying the JSON error; we answer it with an
        empty line and read the final NO, as RFC 7628 asks."""
        if "SASL-IR" not in self.capabilities:
            try:
                return self.authenticate("XOAUTH2", responder)  # type: ignore[attr-defined]
            except imaplib.IMAP4.error as exc:
                return "NO", [str(exc).encode()]
        tag = self._new_tag()  # type: ignore[attr-defined]
        encoded = base64.b64encode(initial.encode()).decode("ascii")
        log.debug("imap > %s AUTHENTICATE XOAUTH2 [REDACTED]", tag.decode())
        self.send(tag + b" AUTHENTICATE XOAUTH2 " + encoded.encode() + b"\r\n")
        while True:
            if self._get_response() is None:  # type: ignore[attr-defined]
                # Continuation = error details; an empty response lets the server finish.
                details = sasl.parse_error_challenge(self.continuation_response)  # type: ignore[attr-defined]
                log.debug("imap XOAUTH2 error details: %s", details)
                self.send(b"\r\n")
                continue
            if self.tagged_commands[tag]:  # type: ignore[attr-defined]
                break
        typ, data = self.tagged_commands.pop(tag)  # type: ignore[attr-defined]
        if typ == "OK":
            self.state = "AUTH"
        return typ, data


class _ImapPlain(_Redacting, imaplib.IMAP4):
    pass


class _ImapOverTls(_Redacting, imaplib.IMAP4_SSL):
    pass


class ImapSession:
    """An authenticated IMAP connection. Use :func:`connect`; every failure becomes a MailbotError."""

    def __init__(self, conn: imaplib.IMAP4, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.where = f"IMAP server {settings.imap_host} port {settings.imap_port}"
        self._post_login_caps = False
        self.timer: deadline.Timer = getattr(conn, "timer", None) or _timer(settings)

    def deadline(self, seconds: float | None = None, what: str = "the command") -> Any:
        """``with session.deadline(seconds, "IDLE"):`` everything inside (reads, writes, commands
        through :meth:`call`) must finish by then, or DeadlineExceeded (exit 75) names the server.

        Default: ``MAILBOT_TIMEOUT``. Commands run through :meth:`call` get their own deadline
        of ``MAILBOT_TIMEOUT`` each, never later than an enclosing one."""
        return self.timer.bound(what, seconds)

    def call(self, name: str, *args: Any, label: str | None = None) -> tuple[str, list[Any]]:
        """Run an imaplib command within one deadline, mapping socket and protocol errors to mailbot errors."""
        method = getattr(self.conn, name)
        command = label or name.upper()
        try:
            with self.timer.bound(command):
                return method(*args)
        except imaplib.IMAP4.abort as exc:
            error = imapwire.reply_error(command, "BYE", _reason(exc), self.where, self.settings.command("login"))
            raise error from exc
        except imaplib.IMAP4.error as exc:
            error = imapwire.reply_error(command, "BAD", _reason(exc), self.where, self.settings.command("login"))
            raise error from exc
        except (OSError, EOFError) as exc:
            raise network_error(
                exc, "IMAP", self.settings.imap_host, self.settings.imap_port, self.settings.timeout
            ) from exc

    def select(self, folder: str, readonly: bool = True) -> dict[str, int]:
        """EXAMINE (read-only, never changes a flag) or SELECT a folder; its EXISTS and UIDVALIDITY."""
        label = "EXAMINE" if readonly else "SELECT"
        typ, data = self.call("select", imapwire.quoted_folder(folder).decode("ascii"), readonly, label=label)
        if typ != "OK":
            raise self.refused(label, typ, data, f"folder {folder!r}")
        try:
            first = data[0] if data and isinstance(data[0], (bytes, str)) else b"0"
            info = {"exists": imapwire.parse_number(first or b"0", "EXISTS")}
            for key in ("UIDVALIDITY", "UIDNEXT"):
                values = self.conn.untagged_responses.get(key)
                if values and isinstance(values[-1], (bytes, str)) and values[-1]:
                    info[key.lower()] = imapwire.parse_number(values[-1], key)
        except imapwire.ProtocolViolation as exc:
            raise TemporaryFailure(f"{self.where} sent a malformed reply to {label}: {exc}") from exc
        return info

    def refused(self, command: str, typ: str, data: list[Any], subject: str | None = None) -> MailbotError:
        """The error for a tagged NO/BAD, from the table in ``mailbotcore.wire.imap``."""
        return imapwire.reply_error(command, typ, _text(data), self.where, self.settings.command("login"), subject)

    def search(self, criteria: list[str], literal: bytes | None = None) -> list[int]:
        """UID SEARCH; a non-ASCII criterion goes as the one literal imaplib can send (CHARSET UTF-8)."""
        if literal is not None:
            self.conn.literal = literal  # type: ignore[assignment]  # imaplib sends bytes literals as they are
            data = self.uid("SEARCH", "CHARSET", "UTF-8", *criteria)
        else:
            data = self.uid("SEARCH", *criteria)
        try:
            return imapwire.parse_search(data)
        except imapwire.ProtocolViolation as exc:
            raise TemporaryFailure(f"{self.where} sent a malformed SEARCH reply: {exc}") from exc

    def uid(self, command: str, *args: Any) -> list[Any]:
        label = f"UID {command.upper()}"
        typ, data = self.call("uid", command, *args, label=label)
        if typ != "OK":
            subject = None
            if command.upper() in ("COPY", "MOVE") and len(args) > 1:
                subject = f"folder {imapwire.decode_folder(str(args[1]).strip(chr(34)))!r}"
            raise self.refused(label, typ, data, subject)
        if command.upper() == "FETCH":
            self._check_fetch(label, data)
        return data

    def fetch_seq(self, seqset: str, items: str) -> list[Any]:
        typ, data = self.call("fetch", seqset, items)
        if typ != "OK":
            raise self.refused("FETCH", typ, data)
        self._check_fetch("FETCH", data)
        return data

    def _check_fetch(self, label: str, data: list[Any]) -> None:
        """A FETCH reply whose numbers do not parse is a protocol error here, not a ValueError later."""
        try:
            imapwire.parse_fetch(data)
        except imapwire.ProtocolViolation as exc:
            raise TemporaryFailure(f"{self.where} sent a malformed reply to {label}: {exc}") from exc

    def list_folders(self) -> list[str]:
        typ, data = self.call("list")
        if typ != "OK":
            raise self.refused("LIST", typ, data)
        folders = []
        for line in data:
            if isinstance(line, bytes) and line.rstrip().endswith(b'"'):
                folders.append(imapwire.decode_folder(line.rsplit(b' "', 1)[-1].rstrip(b'"')))
            elif isinstance(line, bytes):
                folders.append(imapwire.decode_folder(line.rsplit(b" ", 1)[-1]))
        return folders

    def authenticated(self) -> None:
        """Take the capabilities the server announced with its AUTHENTICATE OK: servers list
        MOVE, UIDPLUS and the like only after login, and the greeting's list is pre-login."""
        caps = self.conn.untagged_responses.pop("CAPABILITY", None)
        self._post_login_caps = bool(caps)
        if caps and isinstance(caps[-1], bytes):
            self.conn.capabilities = imapwire.parse_capabilities(caps[-1])

    def has_capability(self, name: str) -> bool:
        if not self._post_login_caps:
            # The server did not announce them: ask once (one round trip, only when needed).
            typ, data = self.call("capability")
            if typ == "OK" and data and isinstance(data[-1], bytes):
                self.conn.capabilities = imapwire.parse_capabilities(data[-1])
            self._post_login_caps = True
        return name.upper() in self.conn.capabilities

    def logout(self) -> None:
        """Send LOGOUT without waiting for the reply: the session's work is done."""
        with suppress(OSError, MailbotError), self.timer.bound("LOGOUT", min(1.0, self.settings.timeout)):
            self.conn.send(self.conn._new_tag() + b" LOGOUT\r\n")
        with suppress(OSError):
            self.conn.shutdown()


def _reason(exc: BaseException) -> str:
    """The server's words in an imaplib exception, without imaplib's wrapping:
    ``command: X => text`` and ``X command error: BAD [b'text']``."""
    text = re.sub(r"^command: \S+ => ", "", str(exc))
    match = re.fullmatch(r"\S+ command error: \w+ (\[.*\])", text, re.S)
    if match:
        with suppress(ValueError, SyntaxError):
            items = ast.literal_eval(match.group(1))
            text = _text(list(items))
    return text


def _text(data: list[Any]) -> str:
    parts = [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in data if item]
    return " ".join(parts) or "no details"


def literal_limit(settings: Settings) -> int:
    """The largest literal or line accepted from the server: the message size limit plus headroom
    (a stored message may be a little larger than what mailbot would send)."""
    return int(settings.max_message_mb * 1024 * 1024 * 1.5) + 1024 * 1024


def _timer(settings: Settings) -> deadline.Timer:
    where = f"IMAP server {settings.imap_host} port {settings.imap_port}"
    return deadline.Timer(where, settings.timeout, literal_limit(settings))


def _open(settings: Settings, timer: deadline.Timer) -> imaplib.IMAP4:
    """Connect, TLS, greeting (and STARTTLS) within one deadline."""
    host, port, timeout = settings.imap_host, settings.imap_port, settings.timeout
    context = tls_context(settings.ca_bundle)
    log.info("connecting to %s:%s", host, port)
    with timer.bound("the connection and greeting"):
        if settings.imap_tls == "starttls":
            conn: imaplib.IMAP4 = _ImapPlain(host, port, timeout=timeout, timer=timer)
            if "STARTTLS" not in conn.capabilities:
                conn.shutdown()
                raise ServiceRefused(
                    f"IMAP server {host} port {port} does not offer STARTTLS; refusing to send a token"
                )
            conn.sock.settimeout(timer.remaining())  # the TLS handshake too
            conn.starttls(ssl_context=context)
            return conn
        return _ImapOverTls(host, port, ssl_context=context, timeout=timeout, timer=timer)


@contextmanager
def connect(settings: Settings, provider: TokenProvider, user: str | None = None) -> Iterator[ImapSession]:
    """Connect, verify TLS, authenticate with XOAUTH2 as ``user`` (default: the mailbox user).

    A token the server refuses is refreshed once (``force_refresh``) and retried once;
    a second refusal is exit 77 with a hint."""
    user = user or settings.mailbox_user
    host, port = settings.imap_host, settings.imap_port
    token = provider()  # before connecting: a sign-in problem should not cost a connection
    try:
        conn = _open(settings, _timer(settings))
    except (OSError, EOFError, imaplib.IMAP4.abort) as exc:
        raise network_error(_unwrap(exc), "IMAP", host, port, settings.timeout) from exc
    except imaplib.IMAP4.error as exc:
        raise ServiceRefused(f"IMAP server {host} port {port} refused the connection: {exc}") from exc
    session = ImapSession(conn, settings)
    try:
        if "AUTH=XOAUTH2" not in conn.capabilities:
            raise ServiceRefused(
                f"IMAP server {host} port {port} does not offer XOAUTH2 sign-in",
                hint="check OUTLOOK_IMAP_SERVER: Outlook's is outlook.office365.com",
            )
        for attempt in (1, 2):
            initial = sasl.xoauth2_initial_response(user, token)
            typ, data = _authenticate(session, sasl.xoauth2_responder(user, token), initial)
            if typ == "OK":
                session.authenticated()
                break
            log.info("IMAP authentication refused (attempt %d): %s", attempt, _text(data))
            if attempt == 2:
                raise SignInRequired(
                    f"IMAP server {host} port {port} refused the sign-in for {user}",
                    sasl.app_grant_hint(user, settings.client_id, "IMAP")
                    if settings.app_only
                    else AUTH_HINT.format(login=settings.command("login")),
                )
            token = provider(force_refresh=True)
        yield session
    finally:
        session.logout()


def _authenticate(session: ImapSession, responder: Any, initial: str) -> tuple[str, list[Any]]:
    try:
        with session.deadline(what="AUTHENTICATE"):
            return session.conn.authenticate_xoauth2(responder, initial)
    except imaplib.IMAP4.abort as exc:
        raise TemporaryFailure(f"connection to {session.where} was lost while signing in: {exc}") from exc
    except (OSError, EOFError) as exc:
        s = session.settings
        raise network_error(exc, "IMAP", s.imap_host, s.imap_port, s.timeout) from exc


def _unwrap(exc: BaseException) -> BaseException:
    """imaplib wraps socket errors in IMAP4.abort; classify by the original where there is one.

    An EOF in the middle of the TLS handshake is a dropped connection (retry later), not a
    TLS refusal: as an SSLError it would otherwise be reported as a permanent failure."""
    if isinstance(exc, imaplib.IMAP4.abort):
        exc = exc.__context__ if isinstance(exc.__context__, OSError) else ConnectionError(str(exc))
    if isinstance(exc, ssl.SSLEOFError):
        return ConnectionError("the server closed the connection during the TLS handshake")
    return exc
