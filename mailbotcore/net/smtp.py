"""SMTP submission over TLS with SASL XOAUTH2, on top of smtplib.

Implicit TLS (port 465) or STARTTLS (587; refused if the server does not offer it: a
token is never sent in clear), as ``settings.smtp_tls`` says. Replies are mapped to what
the user can do by the table in ``mailbotcore.wire.smtp``; a refused token is refreshed and
retried once before it counts as "sign in again" (77).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from mailbotcore.config import Settings
from mailbotcore.errors import (
    BadInputError,
    MailbotError,
    RecipientsDeferred,
    RecipientsRefused,
    ServiceRefused,
    SignInRequired,
    TemporaryFailure,
)
from mailbotcore.net import deadline
from mailbotcore.net.tls import network_error, tls_context
from mailbotcore.wire import sasl
from mailbotcore.wire import smtp as smtpwire
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.smtp")


class _Logging:
    """Mixin: smtplib's debug output goes through the redacting log instead of print(), and every
    read and write keeps to the deadline of the operation in progress (``timer``)."""

    sock: Any
    file: Any

    def __init__(self, *args: Any, timer: deadline.Timer, **kwargs: Any) -> None:
        self.timer = timer
        super().__init__(*args, **kwargs)

    def _print_debug(self, *args: Any) -> None:
        log.debug("smtp %s", " ".join(str(arg) for arg in args))

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        # Connecting (and for implicit TLS the handshake) gets only the time left of the deadline.
        try:
            return super()._get_socket(host, port, self.timer.remaining())  # type: ignore[misc]
        except TimeoutError as exc:
            raise self.timer.exceeded() from exc

    def getreply(self) -> tuple[int, bytes]:
        # smtplib reads replies line by line from self.file: make it a reader that keeps to the
        # deadline (a new one after STARTTLS, as smtplib resets self.file to None then).
        if self.sock is not None and (self.file is None or getattr(self.file, "sock", None) is not self.sock):
            self.file = deadline.DeadlineReader(self.sock, self.timer)
        return super().getreply()  # type: ignore[misc]

    def send(self, s: Any) -> None:
        if self.sock is not None:
            self.sock.settimeout(self.timer.remaining())
            data = s.encode(self.command_encoding) if isinstance(s, str) else s  # type: ignore[attr-defined]
            if len(data) > deadline.CHUNK:
                self.timer.allow_transfer(len(data))  # a message body: bulk data
        try:
            super().send(s)  # type: ignore[misc]
        except smtplib.SMTPServerDisconnected as exc:
            if isinstance(exc.__context__, TimeoutError) and self.timer.current is not None:
                raise self.timer.exceeded() from exc
            raise


class _SMTP(_Logging, smtplib.SMTP):
    pass


class _SMTP_SSL(_Logging, smtplib.SMTP_SSL):
    pass


class NotStarted(TemporaryFailure):
    """Raised when the connection was gone before a transaction began: nothing was sent, resending is safe."""


def _disconnected(exc: smtplib.SMTPServerDisconnected, where: str, timeout: float, during: str = "") -> str:
    """smtplib reports a read timeout as "Connection unexpectedly closed: timed out"; say what happened."""
    if isinstance(exc.__context__, TimeoutError):
        return f"{where} did not answer within {timeout:g} s{during}"
    return f"{where} closed the connection{during}: {exc}"


class SmtpSession:
    """An authenticated SMTP connection; :meth:`send` maps every refusal to a MailbotError."""

    def __init__(self, conn: smtplib.SMTP, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.where = f"SMTP server {settings.smtp_host} port {settings.smtp_port}"
        self.timer: deadline.Timer = getattr(conn, "timer", None) or _timer(settings)

    def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Submit one message. With PIPELINING (Outlook and Postfix offer it) MAIL, every RCPT and
        DATA go out in one write, so a message costs two round trips instead of 3 + recipients.

        A dropped connection noticed before the body was sent raises NotStarted: nothing was
        sent, so resending is safe. When only some recipients were refused, raises
        RecipientsRefused (some permanently) or RecipientsDeferred (only for now), both naming
        the recipients that did get the message."""
        for address in (sender, *recipients):
            if not smtpwire.check_envelope_address(address):
                raise BadInputError(f"cannot use {address!r} as an SMTP envelope address")
        try:
            with self.timer.bound("the envelope (MAIL, RCPT, DATA)"):
                mail, rcpts, data_reply = self._envelope(sender, recipients)
        except smtplib.SMTPServerDisconnected as exc:
            raise NotStarted(_disconnected(exc, self.where, self.settings.timeout)) from exc
        except (OSError, EOFError) as exc:
            raise NotStarted(f"connection to {self.where} was lost: {exc}") from exc
        # The I/O in one block, the decisions after it: a MailbotError is never raised inside
        # an ``except OSError`` (TemporaryFailure once was, and came out as "connection lost").
        try:
            with self.timer.bound("the message transfer"):
                stage, reply, refused = self._transact(recipients, data, mail, rcpts, data_reply)
        except smtplib.SMTPServerDisconnected as exc:
            raise TemporaryFailure(_disconnected(exc, self.where, self.settings.timeout)) from exc
        except (OSError, EOFError) as exc:
            s = self.settings
            raise network_error(exc, "SMTP", s.smtp_host, s.smtp_port, s.timeout) from exc
        login = self.settings.command("login")
        if stage == smtpwire.RCPT:
            raise self._refused(refused, accepted=[])
        if reply is not None:
            raise smtpwire.reply_error(stage, reply, self.where, login, sender if stage == smtpwire.MAIL else None)
        if refused:
            raise self._refused(refused, [r for r in recipients if r not in refused])

    def _transact(
        self,
        recipients: list[str],
        data: bytes,
        mail: smtpwire.Reply,
        rcpts: list[smtpwire.Reply],
        data_reply: smtpwire.Reply | None,
    ) -> tuple[str, smtpwire.Reply | None, dict[str, smtpwire.Reply]]:
        """The rest of the transaction after the envelope: (failed stage, its reply, refused recipients).

        Only I/O and bookkeeping here; ``send`` turns the outcome into an error."""
        conn = self.conn
        if mail.code != 250:
            conn.rset()
            return smtpwire.MAIL, mail, {}
        refused = {r: reply for r, reply in zip(recipients, rcpts, strict=True) if reply.code not in (250, 251)}
        if len(refused) == len(recipients):
            if data_reply is not None and data_reply.code == 354:
                conn.send(b".\r\n")  # the server wants a body anyway: send an empty one, then reset
                conn.getreply()
            conn.rset()
            return smtpwire.RCPT, None, refused
        if data_reply is None:
            code, message = conn.docmd("DATA")
            data_reply = smtpwire.Reply.of(code, message)
        if data_reply.code != 354:
            # Anything else (even 250) means the server will not take a body: nothing was sent.
            conn.rset()
            return smtpwire.DATA, data_reply, refused
        conn.send(smtpwire.dot_stuffed(data))
        final = smtpwire.Reply.of(*conn.getreply())
        if final.code != 250:
            conn.rset()
            return smtpwire.MESSAGE, final, refused
        return "", None, refused

    def _envelope(
        self, sender: str, recipients: list[str]
    ) -> tuple[smtpwire.Reply, list[smtpwire.Reply], smtpwire.Reply | None]:
        """The replies to MAIL, each RCPT and (when pipelined) DATA."""
        conn = self.conn
        if not conn.has_extn("pipelining"):
            mail = smtpwire.Reply.of(*conn.mail(sender))
            if mail.code != 250:
                return mail, [], None
            return mail, [smtpwire.Reply.of(*conn.rcpt(r)) for r in recipients], None
        lines = smtpwire.envelope_lines(sender, recipients)
        log.debug("smtp send (pipelined): %s", lines.decode("ascii").replace("\r\n", " | "))
        conn.send(lines)
        mail = smtpwire.Reply.of(*conn.getreply())
        rcpts = [smtpwire.Reply.of(*conn.getreply()) for _ in recipients]
        return mail, rcpts, smtpwire.Reply.of(*conn.getreply())

    def _refused(self, refused: dict[str, smtpwire.Reply], accepted: list[str]) -> MailbotError:
        listing = "; ".join(f"{addr} ({reply})" for addr, reply in refused.items())
        deferred = [addr for addr, reply in refused.items() if reply.temporary]
        if accepted:
            message = f"{self.where} refused {listing}; the message was sent to {', '.join(accepted)}"
        else:
            message = f"{self.where} refused every recipient: {listing}; nothing was sent"
        if len(deferred) == len(refused):
            if not accepted:
                return TemporaryFailure(message)
            return RecipientsDeferred(message, accepted, deferred)
        hints = {
            smtpwire.reply_error(smtpwire.RCPT, reply, self.where).hint
            for reply in refused.values()
            if not reply.temporary
        }
        hint = next((h for h in sorted(hints, key=str) if h), None)
        return RecipientsRefused(message, accepted, deferred, hint)

    def tls_version(self) -> str | None:
        """The TLS version of the connection ("TLSv1.3"), None if it is not encrypted."""
        sock = self.conn.sock
        return sock.version() if isinstance(sock, ssl.SSLSocket) else None

    def close(self) -> None:
        """Send QUIT without waiting for the 221: the work is done, the reply is a round trip."""
        timer = self.timer
        with suppress(smtplib.SMTPException, OSError, MailbotError), timer.bound("QUIT", min(1.0, timer.timeout)):
            self.conn.send("QUIT\r\n")
        self.conn.close()


def _timer(settings: Settings) -> deadline.Timer:
    where = f"SMTP server {settings.smtp_host} port {settings.smtp_port}"
    # Replies are short: smtplib refuses lines over 8 KiB itself; this bounds the whole reader.
    return deadline.Timer(where, settings.timeout, 1024 * 1024)


def _open(settings: Settings) -> smtplib.SMTP:
    """Connect, TLS, greeting, EHLO (and STARTTLS, EHLO again) within one deadline."""
    timer = _timer(settings)
    with timer.bound("the connection, greeting and EHLO"):
        return _open_within(settings, timer)


def _open_within(settings: Settings, timer: deadline.Timer) -> smtplib.SMTP:
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.timeout
    context = tls_context(settings.ca_bundle)
    log.info("connecting to %s:%s", host, port)
    debug = 1 if log.isEnabledFor(logging.DEBUG) else 0
    # The host goes to the constructor: smtplib only remembers it there, and STARTTLS needs it
    # for the certificate's hostname check.
    conn: smtplib.SMTP
    if settings.smtp_tls == "implicit":
        conn = _SMTP_SSL(host, port, timeout=timeout, context=context, timer=timer)
        conn.set_debuglevel(debug)
        conn.ehlo()
        return conn
    conn = _SMTP(host, port, timeout=timeout, timer=timer)
    conn.set_debuglevel(debug)
    conn.ehlo()
    if not conn.has_extn("starttls"):
        conn.close()
        raise ServiceRefused(f"SMTP server {host} port {port} does not offer STARTTLS; refusing to send a token")
    conn.sock.settimeout(timer.remaining())  # the TLS handshake too
    conn.starttls(context=context)
    conn.ehlo()
    return conn


@contextmanager
def connect(settings: Settings, provider: TokenProvider, user: str | None = None) -> Iterator[SmtpSession]:
    """Connect, verify TLS, AUTH XOAUTH2 as ``user``; a refused token is refreshed and retried once."""
    user = user or settings.mailbox_user
    host, port = settings.smtp_host, settings.smtp_port
    token = provider()
    try:
        conn = _open(settings)
    except smtplib.SMTPServerDisconnected as exc:
        where = f"SMTP server {host} port {port}"
        raise TemporaryFailure(_disconnected(exc, where, settings.timeout)) from exc
    except smtplib.SMTPResponseException as exc:
        reply = smtpwire.Reply.of(exc.smtp_code, exc.smtp_error)
        where = f"SMTP server {host} port {port}"
        raise smtpwire.reply_error(smtpwire.GREETING, reply, where, settings.command("login")) from exc
    except (OSError, EOFError) as exc:
        raise network_error(exc, "SMTP", host, port, settings.timeout) from exc
    session = SmtpSession(conn, settings)
    try:
        _authenticate(session, user, token, provider)
        yield session
    finally:
        session.close()


def _authenticate(session: SmtpSession, user: str, token: str, provider: TokenProvider) -> None:
    conn, where = session.conn, session.where
    if "xoauth2" not in conn.esmtp_features.get("auth", "").lower().split():
        raise ServiceRefused(
            f"{where} does not offer AUTH XOAUTH2",
            hint="check OUTLOOK_SMTP_SERVER and OUTLOOK_SMTP_PORT (smtp.office365.com / smtp-mail.outlook.com, 587)",
        )
    timer = session.timer
    for attempt in (1, 2):
        try:
            with timer.bound("AUTH"):
                conn.auth("XOAUTH2", sasl.xoauth2_responder(user, token), initial_response_ok=True)
            return
        except smtplib.SMTPAuthenticationError as exc:
            reply = smtpwire.Reply.of(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPServerDisconnected as exc:
            timeout = session.settings.timeout
            raise TemporaryFailure(_disconnected(exc, where, timeout, " while signing in")) from exc
        except smtplib.SMTPException as exc:
            raise ServiceRefused(f"{where} refused the sign-in for {user}: {exc}") from exc
        except (OSError, EOFError) as exc:
            s = session.settings
            raise network_error(exc, "SMTP", s.smtp_host, s.smtp_port, s.timeout) from exc
        log.info("SMTP authentication refused (attempt %d): %s", attempt, reply)
        error = smtpwire.reply_error(smtpwire.AUTH, reply, f"{where} (as {user})", session.settings.command("login"))
        if not isinstance(error, SignInRequired) or attempt == 2:
            if isinstance(error, SignInRequired) and session.settings.app_only:
                error.hint = sasl.app_grant_hint(user, session.settings.client_id, "SMTP")
            raise error
        token = provider(force_refresh=True)
