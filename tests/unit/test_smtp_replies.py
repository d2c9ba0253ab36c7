"""The one table from SMTP replies to mailbot errors (mailbotcore.wire.smtp.reply_error), row by row."""

from __future__ import annotations

import pytest

from mailbotcore.errors import ServiceRefused, SignInRequired, SmtpAuthDisabled, TemporaryFailure
from mailbotcore.wire import smtp

WHERE = "SMTP server smtp.office365.com port 587"
DISABLED = smtp.SMTP_AUTH_DISABLED_HINT
AUTH = smtp.AUTH_HINT.format(login="mailbot login")

ROWS = [
    # stage, code, text, error class, exit code, message, hint
    (smtp.AUTH, 535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
     SmtpAuthDisabled, 69,
     f"{WHERE} refused the sign-in: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
     "disabled for the Tenant.", DISABLED),
    (smtp.AUTH, 535, "5.7.3 Authentication unsuccessful", SignInRequired, 77,
     f"{WHERE} refused the sign-in: 535 5.7.3 Authentication unsuccessful", AUTH),
    (smtp.AUTH, 454, "4.7.0 Temporary authentication failure", TemporaryFailure, 75,
     f"{WHERE} refused the sign-in for now: 454 4.7.0 Temporary authentication failure", None),
    (smtp.AUTH, 504, "5.5.4 Unrecognized authentication type", ServiceRefused, 69,
     f"{WHERE} refused the sign-in: 504 5.5.4 Unrecognized authentication type", None),
    (smtp.MAIL, 550, "5.7.30 Basic authentication is not supported for Client Submission.", SmtpAuthDisabled, 69,
     f"{WHERE} refused the client: 550 5.7.30 Basic authentication is not supported for Client Submission.",
     DISABLED),
    (smtp.GREETING, 421, "4.3.2 Service not available", TemporaryFailure, 75,
     f"{WHERE} refused the connection: 421 4.3.2 Service not available", None),
    (smtp.GREETING, 554, "5.7.1 go away", ServiceRefused, 69, f"{WHERE} refused the connection: 554 5.7.1 go away",
     None),
    (smtp.MAIL, 451, "4.7.500 Server busy. Please try again later.", TemporaryFailure, 75,
     f"{WHERE} refused the sender a@contoso.com: 451 4.7.500 Server busy. Please try again later.", None),
    (smtp.MAIL, 550, "5.7.60 SMTP; Client does not have permissions to send as this sender", ServiceRefused, 69,
     f"{WHERE} refused the sender a@contoso.com: 550 5.7.60 SMTP; Client does not have permissions to send as "
     "this sender", smtp.SEND_AS_HINT),
    (smtp.RCPT, 550, "5.7.233 External recipients are not allowed", ServiceRefused, 69,
     f"{WHERE} refused the recipient a@contoso.com: 550 5.7.233 External recipients are not allowed",
     smtp.EXTERNAL_HINT),
    (smtp.RCPT, 553, "5.7.1 <x@y.org>: Sender address rejected: not owned by user me@y.org", ServiceRefused, 69,
     f"{WHERE} refused the recipient a@contoso.com: 553 5.7.1 <x@y.org>: Sender address rejected: not owned by "
     "user me@y.org", smtp.SEND_AS_HINT),
    (smtp.RCPT, 452, "4.5.3 Too many recipients", TemporaryFailure, 75,
     f"{WHERE} refused the recipient a@contoso.com: 452 4.5.3 Too many recipients", None),
    (smtp.DATA, 250, "2.0.0 Ok", TemporaryFailure, 75,
     f"{WHERE} answered DATA with 250 2.0.0 Ok instead of 354: a protocol error; nothing was sent", None),
    (smtp.MESSAGE, 451, "4.4.0 Message failed to be made redundant", TemporaryFailure, 75,
     f"{WHERE} refused the message: 451 4.4.0 Message failed to be made redundant", smtp.THROTTLED_HINT),
    (smtp.MESSAGE, 554, "5.2.0 STOREDRV.Submission.Exception:QuotaExceeded", ServiceRefused, 69,
     f"{WHERE} refused the message: 554 5.2.0 STOREDRV.Submission.Exception:QuotaExceeded", None),
    (smtp.MESSAGE, 554, "5.2.252 SendAsDenied; me@contoso.com not allowed to send as boss@contoso.com",
     ServiceRefused, 69,
     f"{WHERE} refused the message: 554 5.2.252 SendAsDenied; me@contoso.com not allowed to send as "
     "boss@contoso.com", smtp.SEND_AS_HINT),
]  # fmt: skip


@pytest.mark.parametrize(("stage", "code", "text", "kind", "exit_code", "message", "hint"), ROWS)
def test_reply_table(stage: str, code: int, text: str, kind: type, exit_code: int, message: str, hint: str) -> None:
    address = "a@contoso.com" if stage in (smtp.MAIL, smtp.RCPT) else None
    error = smtp.reply_error(stage, smtp.Reply.of(code, text), WHERE, "mailbot login", address)
    assert type(error) is kind
    assert (error.exit_code, error.message, error.hint) == (exit_code, message, hint)
    assert not isinstance(error, OSError)  # never caught again by an `except OSError`


def test_reply_text_is_cleaned_and_enhanced_code_read() -> None:
    reply = smtp.Reply.of(550, b"5.7.1 evil\x1b]52;c;AAAA\x07 \xe2\x80\xae text\r\n")
    assert reply.enhanced == "5.7.1"
    assert "\x1b" not in reply.text and "\u202e" not in reply.text
    assert smtp.Reply.of(250, "OK").enhanced is None


def test_envelope_and_dot_stuffing() -> None:
    assert smtp.envelope_lines("a@x.org", ["b@y.org", "c@z.org"]) == (
        b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nRCPT TO:<c@z.org>\r\nDATA\r\n"
    )
    assert smtp.dot_stuffed(b"a\r\n.b\r\n..c") == b"a\r\n..b\r\n...c\r\n.\r\n"
    assert smtp.dot_stuffed(b"") == b"\r\n.\r\n"
    assert smtp.check_envelope_address("a@x.org")
    for bad in ("a@x.org>", "a\r\n@x", "ü@x.org", "", "a b@x.org"):
        assert not smtp.check_envelope_address(bad)
