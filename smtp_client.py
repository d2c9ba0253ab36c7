"""SMTP submission over TLS with SASL XOAUTH2, on top of smtplib.

Implicit TLS (port 465) or STARTTLS (587; refused if the server does not offer it: a
token is never sent in clear), as ``settings.smtp_tls`` says. Replies are mapped to what
the user can do: 4xx is temporary (75), Microsoft's ``535 5.7.139`` means SMTP AUTH is switched off (69),
another 535 after one forced refresh means the sign-in is not accepted (77).
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import sasl
from auth import TokenProvider
from config import Settings
from errors import (
    BadInputError,
    MailbotError,
    RecipientsRefused,
    ServiceRefused,
    SignInRequired,
    TemporaryFailure,
)
from netutil import network_error, tls_context

log = logging.getLogger("mailbot.smtp")
SMTP_AUTH_DISABLED_HINT = (
    "SMTP AUTH is switched off for this tenant or mailbox. An Exchange admin can enable it for the "
    "mailbox with: Set-CASMailbox -Identity <address> -SmtpClientAuthenticationDisabled $false "
    "(Microsoft 365 admin center > Users > Mail > Manage email apps > Authenticated SMTP); it does "
    "not work while Security Defaults are on"
)
AUTH_HINT = (
    'the server refused the token: run "python mailbot.py login" again; check OUTLOOK_USERNAME and '
    "that SMTP.Send is granted to the app"
)
SEND_AS_HINT = (
    "you are not allowed to send as this address: grant 'Send As' on the mailbox (Exchange), or "
    "use your own address in --from"
)


class _Logging:
    """Mixin: smtplib's debug output goes through the redacting log instead of print()."""

    def _print_debug(self, *args: Any) -> None:
        log.debug("smtp %s", " ".join(str(arg) for arg in args))


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


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA body as RFC 5321 wants it: lines starting with "." doubled, CRLF, then ".\r\n"."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


def _reply_text(message: bytes | str) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


Reply = tuple[int, bytes]


class SmtpSession:
    """An authenticated SMTP connection; :meth:`send` maps every refusal to a MailbotError."""

    def __init__(self, conn: smtplib.SMTP, settings: Settings) -> None:
        self.conn = conn
        self.settings = settings
        self.where = f"SMTP server {settings.smtp_host} port {settings.smtp_port}"

    def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Submit one message. With PIPELINING (Outlook and Postfix offer it) MAIL, every RCPT and
        DATA go out in one write, so a message costs two round trips instead of 3 + recipients.

        A dropped connection noticed before the body was sent raises NotStarted: nothing was
        sent, so resending is safe. Raises RecipientsRefused, naming the accepted ones, when
        only some recipients were refused."""
        for address in (sender, *recipients):
            if any(ch in address for ch in "\r\n<>") or not address.isascii():
                raise BadInputError(f"cannot use {address!r} as an SMTP envelope address")
        conn = self.conn
        try:
            mail, rcpts, data_reply = self._envelope(sender, recipients)
        except smtplib.SMTPServerDisconnected as exc:
            raise NotStarted(_disconnected(exc, self.where, self.settings.timeout)) from exc
        except (OSError, EOFError) as exc:
            raise NotStarted(f"connection to {self.where} was lost: {exc}") from exc
        try:
            code, reply = mail
            if code != 250:
                conn.rset()
                text = f"{self.where} refused the sender {sender}: {code} {_reply_text(reply)}"
                if 400 <= code < 500:
                    raise TemporaryFailure(text)
                raise ServiceRefused(text, SEND_AS_HINT)
            refused = {
                r: reply for r, reply in zip(recipients, rcpts, strict=True) if reply[0] not in (250, 251)
            }
            if len(refused) == len(recipients):
                if data_reply is not None and data_reply[0] == 354:
                    conn.send(b".\r\n")  # the server wants a body anyway: send an empty one, then reset
                    conn.getreply()
                conn.rset()
                raise self._refused(refused, accepted=[])
            if data_reply is None:
                code, reply = conn.data(data)
            elif data_reply[0] != 354:
                code, reply = data_reply
            else:
                conn.send(_dot_stuffed(data))
                code, reply = conn.getreply()
            if code != 250:
                conn.rset()
                text = f"{self.where} refused the message: {code} {_reply_text(reply)}"
                if 400 <= code < 500:
                    raise TemporaryFailure(text, hint="the server may be throttling (30 messages/minute)")
                raise ServiceRefused(text)
        except smtplib.SMTPServerDisconnected as exc:
            raise TemporaryFailure(_disconnected(exc, self.where, self.settings.timeout)) from exc
        except smtplib.SMTPResponseException as exc:
            text = f"{self.where}: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
            raise (TemporaryFailure(text) if 400 <= exc.smtp_code < 500 else ServiceRefused(text)) from exc
        except (OSError, EOFError) as exc:
            s = self.settings
            raise network_error(exc, "SMTP", s.smtp_host, s.smtp_port, s.timeout) from exc
        if refused:
            raise self._refused(refused, [r for r in recipients if r not in refused])

    def _envelope(self, sender: str, recipients: list[str]) -> tuple[Reply, list[Reply], Reply | None]:
        """The replies to MAIL, each RCPT and (when pipelined) DATA."""
        conn = self.conn
        if not conn.has_extn("pipelining"):
            mail = conn.mail(sender)
            return mail, [conn.rcpt(r) for r in recipients] if mail[0] == 250 else [], None
        lines = [f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in recipients), "DATA"]
        log.debug("smtp send (pipelined): %s", " | ".join(lines))
        conn.send("".join(line + "\r\n" for line in lines))
        mail = conn.getreply()
        return mail, [conn.getreply() for _ in recipients], conn.getreply()

    def _refused(self, refused: dict[str, tuple[int, bytes]], accepted: list[str]) -> MailbotError:
        details = {addr: (code, _reply_text(msg)) for addr, (code, msg) in refused.items()}
        listing = "; ".join(f"{addr} ({code} {msg})" for addr, (code, msg) in details.items())
        if accepted:
            message = f"{self.where} refused {listing}; the message was sent to {', '.join(accepted)}"
        else:
            message = f"{self.where} refused every recipient: {listing}; nothing was sent"
        if not accepted and all(400 <= code < 500 for code, _ in details.values()):
            return TemporaryFailure(message)
        hint = None
        if any("5.7.233" in msg for _, msg in details.values()):
            hint = "the tenant does not allow sending to external recipients (ask an admin)"
        return RecipientsRefused(message, details, accepted, hint)

    def close(self) -> None:
        """Send QUIT without waiting for the 221: the work is done, the reply is a round trip."""
        with suppress(smtplib.SMTPException, OSError):
            self.conn.send("QUIT\r\n")
        self.conn.close()


def _open(settings: Settings) -> smtplib.SMTP:
    host, port, timeout = settings.smtp_host, settings.smtp_port, settings.timeout
    context = tls_context(settings.ca_bundle)
    log.info("connecting to %s:%s", host, port)
    debug = 1 if log.isEnabledFor(logging.DEBUG) else 0
    # The host goes to the constructor: smtplib only remembers it there, and STARTTLS needs it
    # for the certificate's hostname check.
    conn: smtplib.SMTP
    if settings.smtp_tls == "implicit":
        conn = _SMTP_SSL(host, port, timeout=timeout, context=context)
        conn.set_debuglevel(debug)
        conn.ehlo()
        return conn
    conn = _SMTP(host, port, timeout=timeout)
    conn.set_debuglevel(debug)
    conn.ehlo()
    if not conn.has_extn("starttls"):
        conn.close()
        raise ServiceRefused(
            f"SMTP server {host} port {port} does not offer STARTTLS; refusing to send a token"
        )
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
        reply = f"{exc.smtp_code} {_reply_text(exc.smtp_error)}"
        text = f"SMTP server {host} port {port} refused the connection: {reply}"
        raise (TemporaryFailure(text) if 400 <= exc.smtp_code < 500 else ServiceRefused(text)) from exc
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
            hint="check OUTLOOK_SMTP_SERVER and OUTLOOK_SMTP_PORT "
            "(smtp.office365.com / smtp-mail.outlook.com, 587)",
        )
    for attempt in (1, 2):
        try:
            conn.auth("XOAUTH2", sasl.xoauth2_responder(user, token), initial_response_ok=True)
            return
        except smtplib.SMTPAuthenticationError as exc:
            text = f"{where} refused the sign-in for {user}: {exc.smtp_code} {_reply_text(exc.smtp_error)}"
            log.info("SMTP authentication refused (attempt %d): %s", attempt, text)
            if "5.7.139" in text:
                raise ServiceRefused(text, SMTP_AUTH_DISABLED_HINT) from exc
            if 400 <= exc.smtp_code < 500:
                raise TemporaryFailure(text) from exc
            if attempt == 2:
                raise SignInRequired(text, AUTH_HINT) from exc
            token = provider(force_refresh=True)
        except smtplib.SMTPServerDisconnected as exc:
            timeout = session.settings.timeout
            raise TemporaryFailure(_disconnected(exc, where, timeout, " while signing in")) from exc
        except smtplib.SMTPException as exc:
            raise ServiceRefused(f"{where} refused the sign-in for {user}: {exc}") from exc
        except (OSError, EOFError) as exc:
            s = session.settings
            raise network_error(exc, "SMTP", s.smtp_host, s.smtp_port, s.timeout) from exc
