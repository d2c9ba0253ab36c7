"""SMTP wire formats and the one table from server replies to mailbot errors.

Pure functions, no I/O: the pipelined envelope, dot-stuffing, and :func:`reply_error`,
which decides for every stage of a submission what a reply means for the user (exit code
and hint). ``mailbotcore.net.smtp`` does the talking and asks this module what went wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailbotcore.errors import MailbotError, ServiceRefused, SignInRequired, SmtpAuthDisabled, TemporaryFailure
from mailbotcore.wire.text import clean_line

SMTP_AUTH_DISABLED_HINT = (
    "SMTP AUTH is switched off for this tenant or mailbox. An Exchange admin can enable it for the "
    "mailbox with: Set-CASMailbox -Identity <address> -SmtpClientAuthenticationDisabled $false "
    "(Microsoft 365 admin center > Users > Mail > Manage email apps > Authenticated SMTP); it does "
    "not work while Security Defaults are on"
)
AUTH_HINT = (
    'the server refused the token: run "{login}" again; check OUTLOOK_USERNAME and that SMTP.Send is granted to the app'
)
SEND_AS_HINT = (
    "you are not allowed to send as this address: grant 'Send As' on the mailbox (Exchange), or "
    "use your own address in --from"
)
THROTTLED_HINT = "the server may be throttling (Exchange Online accepts 30 messages a minute); try again later"
EXTERNAL_HINT = "the tenant does not allow sending to external recipients (ask an admin)"

# Stages of one submission, in order.
GREETING, EHLO, AUTH, MAIL, RCPT, DATA, MESSAGE = (
    "greeting",
    "ehlo",
    "auth",
    "mail",
    "rcpt",
    "data",
    "message",
)
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Reply:
    """One server reply: the code and its text (the enhanced status code, if any, starts the text)."""

    code: int
    text: str

    @classmethod
    def of(cls, code: int, message: bytes | str) -> Reply:
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
        return cls(code, clean_line(text))

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 status, e.g. ``5.7.139``, when the text starts with one."""
        match = _ENHANCED.match(self.text)
        return match.group(0) if match else None

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


def reply_error(
    stage: str, reply: Reply, where: str, login: str = "mailbot login", address: str | None = None
) -> MailbotError:
    """What an unexpected ``reply`` at ``stage`` means: a MailbotError with the exit code and hint.

    ``where`` names the server (``SMTP server HOST port PORT``); ``login`` is the sign-in
    command to suggest; ``address`` is the sender (MAIL) or recipient (RCPT) concerned.
    Every 4xx is temporary (75); 5xx is permanent (69), except a refused token (77); a
    reply that makes no sense at its stage is a protocol error (75: nothing was sent, the
    message stays queued)."""
    status = reply.enhanced or ""
    text = str(reply)
    who = f" {address}" if address else ""
    if stage == AUTH:
        if status == "5.7.139" or "SmtpClientAuthentication is disabled" in reply.text:
            return SmtpAuthDisabled(f"{where} refused the sign-in: {text}", SMTP_AUTH_DISABLED_HINT)
        if reply.temporary:
            return TemporaryFailure(f"{where} refused the sign-in for now: {text}")
        if reply.code in (535, 530, 534):
            return SignInRequired(f"{where} refused the sign-in: {text}", AUTH_HINT.format(login=login))
        return ServiceRefused(f"{where} refused the sign-in: {text}")
    if status == "5.7.30" or "basic authentication is disabled" in reply.text.lower():
        return SmtpAuthDisabled(f"{where} refused the client: {text}", SMTP_AUTH_DISABLED_HINT)
    if not (reply.temporary or 500 <= reply.code < 600):
        expected = {DATA: "354", GREETING: "220"}.get(stage, "250")
        return TemporaryFailure(
            f"{where} answered {stage.upper()} with {text!s} instead of {expected}: a protocol error; nothing was sent"
        )
    if stage in (GREETING, EHLO):
        message = f"{where} refused the connection: {text}"
        return TemporaryFailure(message) if reply.temporary else ServiceRefused(message)
    if stage == MAIL:
        message = f"{where} refused the sender{who}: {text}"
        return TemporaryFailure(message) if reply.temporary else ServiceRefused(message, SEND_AS_HINT)
    if stage == RCPT:
        hint = EXTERNAL_HINT if status == "5.7.233" else None
        if "not owned" in reply.text or "Sender address rejected" in reply.text:
            hint = SEND_AS_HINT
        message = f"{where} refused the recipient{who}: {text}"
        return TemporaryFailure(message) if reply.temporary else ServiceRefused(message, hint)
    # DATA and the reply after the message body.
    message = f"{where} refused the message: {text}"
    if reply.temporary:
        return TemporaryFailure(message, THROTTLED_HINT)
    if "SendAsDenied" in reply.text or (status in ("5.7.60", "5.7.1") and "send" in reply.text.lower()):
        return ServiceRefused(message, SEND_AS_HINT)
    return ServiceRefused(message)


def envelope_lines(sender: str, recipients: list[str]) -> bytes:
    """MAIL, one RCPT per recipient and DATA, for one pipelined write (RFC 2920)."""
    lines = [f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in recipients), "DATA"]
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def check_envelope_address(address: str) -> bool:
    """An address that can go into MAIL FROM / RCPT TO as it is: ASCII, no brackets or line breaks."""
    return address.isascii() and not any(ch in address for ch in "\r\n<> ") and bool(address)


def dot_stuffed(data: bytes) -> bytes:
    """The DATA body as RFC 5321 wants it: lines starting with "." doubled, CRLF, then ".\\r\\n"."""
    body = re.sub(rb"(?m)^\.", b"..", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"
