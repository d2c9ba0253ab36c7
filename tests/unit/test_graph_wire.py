"""The Graph reply table (mailbotcore.wire.graph.reply_error) as a table, and the pure helpers."""

from __future__ import annotations

import itertools
import json

import pytest

from mailbotcore import errors
from mailbotcore.wire import graph as wire

WHERE = "Microsoft Graph https://graph.microsoft.com"


def body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "innerError": {"request-id": "x"}}}).encode()


# (step, status, body, Retry-After) -> (error class or None, exit code, text in the message, hint start)
TABLE = {
    "202-sent": (wire.SEND_MAIL, 202, b"", None, None, 0, "", None),
    "201-draft": (wire.CREATE_DRAFT, 201, b"{}", None, None, 0, "", None),
    "429-retry-after": (
        wire.SEND_MAIL, 429, body("ApplicationThrottled", "slow down"), "7",
        wire.Throttled, 75, "HTTP 429 ApplicationThrottled: slow down", "Microsoft Graph is throttling",
    ),
    "503": (wire.SEND_DRAFT, 503, b"", None, wire.Throttled, 75, "HTTP 503", "Microsoft Graph is throttling"),
    "504": (wire.SEND_MAIL, 504, b"<html>", "2", wire.Throttled, 75, "HTTP 504", None),
    "401": (
        wire.SEND_MAIL, 401, body("InvalidAuthenticationToken", "Access token has expired or is not yet valid."), None,
        errors.SignInRequired, 77, "InvalidAuthenticationToken", "the token for Microsoft Graph was refused",
    ),
    "403-access-denied": (
        wire.SEND_MAIL, 403, body("ErrorAccessDenied", "Access is denied. Check credentials and try again."), None,
        errors.ServiceRefused, 69, "ErrorAccessDenied", "the app may not send mail through Microsoft Graph",
    ),
    "403-send-as-denied": (
        wire.SEND_MAIL, 403, body("ErrorSendAsDenied", "The user account which was used to submit this request does "
        "not have the right to send mail on behalf of the specified sending account."), None,
        errors.ServiceRefused, 69, "refused to send as boss@example.com", "you are not allowed to send as",
    ),
    "400-field": (
        wire.SET_BCC, 400, body("ErrorInvalidRecipients", "Property bccRecipients in payload has a value that does "
        "not match schema."), None,
        errors.BadInputError, 65, "refused the message (field bccRecipients)", None,
    ),
    "400-quoted-field": (
        wire.SET_BCC, 400, body("RequestBodyRead", "The property 'bcc' does not exist on type "
        "'microsoft.graph.message'."), None,
        errors.BadInputError, 65, "(field bcc)", None,
    ),
    "413": (wire.SEND_MAIL, 413, b"", None, errors.BadInputError, 65, "HTTP 413", "the message is too large"),
    "404-mailbox": (
        wire.SEND_MAIL, 404, body("MailboxNotEnabledForRESTAPI", "The mailbox is either inactive, soft-deleted, or "
        "is hosted on-premise."), None,
        errors.ServiceRefused, 69, "MailboxNotEnabledForRESTAPI", "the mailbox cannot be used",
    ),
    "500": (wire.SEND_MAIL, 500, b"oops", None, errors.TemporaryFailure, 75, "HTTP 500", None),
    "other-4xx": (wire.SEND_MAIL, 409, body("Conflict", "x"), None, errors.ServiceRefused, 69, "HTTP 409 Conflict", None),
}  # fmt: skip


@pytest.mark.parametrize(
    ("step", "status", "raw", "retry", "kind", "code", "text", "hint"), TABLE.values(), ids=TABLE.keys()
)
def test_reply_table(step, status, raw, retry, kind, code, text, hint) -> None:
    error = wire.reply_error(step, status, raw, WHERE, "mailbot login", retry, "boss@example.com")
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert error.exit_code == code
    assert text in error.message and error.message.startswith(WHERE)
    if hint is None:
        assert error.hint is None or status in (429, 503, 504)
    else:
        assert error.hint is not None and error.hint.startswith(hint)


def test_retry_after_seconds_only_within_a_week() -> None:
    assert isinstance(wire.reply_error(wire.SEND_MAIL, 429, b"", WHERE, retry="30"), wire.Throttled)
    error = wire.reply_error(wire.SEND_MAIL, 429, b"", WHERE, retry="30")
    assert isinstance(error, wire.Throttled) and error.retry_after == 30.0
    assert wire.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert wire.retry_after("-1") is None and wire.retry_after(None) is None


def test_error_text_from_graph_is_sanitised() -> None:
    error = wire.reply_error(wire.SEND_MAIL, 500, body("Bad\r\nInjected: yes", "line\nbreak"), WHERE)
    assert error is not None and "\n" not in error.message and "\r" not in error.message


def test_upload_chunks_are_multiples_of_320_kib_and_cover_everything() -> None:
    size = 10 * 1024 * 1024 + 5
    ranges = wire.chunks(size)
    assert ranges[0][0] == 0 and ranges[-1][1] == size - 1
    assert all((last - first + 1) % (320 * 1024) == 0 for first, last in ranges[:-1])
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))


def test_sent_items_filter_doubles_quotes_and_mailbox_paths() -> None:
    assert wire.sent_items_filter("<a'b@x>") == "internetMessageId eq '<a''b@x>'"
    assert wire.mailbox_path(None) == "/me"
    assert wire.mailbox_path("shared@example.com") == "/users/shared@example.com"
    assert wire.mailbox_path("a/b@example.com") == "/users/a%2Fb@example.com"


def test_send_via_setting_and_the_remembered_choice(tmp_path) -> None:
    from mailbotcore.commands import transport
    from mailbotcore.config import load_settings

    env = {"OUTLOOK_USERNAME": "me@example.com", "MAILBOT_STATE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    settings = load_settings(environ=env, cwd=tmp_path)
    assert settings.send_via == "auto" and settings.graph_url == "https://graph.microsoft.com"
    assert transport.choose(settings).via == "smtp"
    transport.state(settings).remember("graph", "535 5.7.139 off")
    choice = transport.choose(settings)
    assert choice.via == "graph" and "535 5.7.139 off" in choice.reason
    assert (tmp_path / next(p.name for p in tmp_path.glob("send-via-*.json"))).stat().st_mode & 0o777 == 0o600
    smtp = load_settings(environ=env | {"OUTLOOK_SEND_VIA": "SMTP"}, cwd=tmp_path)
    assert transport.choose(smtp) == transport.Choice("smtp", "OUTLOOK_SEND_VIA=smtp")  # the setting wins
    assert transport.state(settings).forget() and transport.choose(settings).via == "smtp"
    with pytest.raises(errors.ConfigError) as info:
        load_settings(environ=env | {"OUTLOOK_SEND_VIA": "pigeon"}, cwd=tmp_path)
    assert info.value.message == (
        "OUTLOOK_SEND_VIA='pigeon' is not valid: it must be smtp, graph or auto (default auto: SMTP, and "
        "Microsoft Graph when SMTP AUTH is disabled)"
    )
    with pytest.raises(errors.ConfigError):
        load_settings(environ=env | {"OUTLOOK_GRAPH_URL": "http://127.0.0.1:1"}, cwd=tmp_path)
