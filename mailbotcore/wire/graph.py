"""Microsoft Graph mail wire formats and the one table from Graph replies to mailbot errors.

Pure, no I/O (like ``mailbotcore.wire.smtp``): the request bodies mailbot sends, Graph's error
JSON ``{"error": {"code": ..., "message": ...}}``, ``Retry-After``, and :func:`reply_error`,
which decides what a reply means for the user. ``mailbotcore.net.graph`` does the talking.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mailbotcore.errors import BadInputError, MailbotError, ServiceRefused, SignInRequired, TemporaryFailure
from mailbotcore.wire.text import clean_line

# Delegated permissions, spelled without the resource prefix: Entra answers Graph scopes that way,
# and MSAL finds a cached token only when asked with the answer's spelling (see signin.authenticator).
SCOPES = ["Mail.Send", "Mail.ReadWrite"]
SHARED_SCOPES = ["Mail.Send.Shared", "Mail.ReadWrite.Shared"]  # sending from another mailbox
# Graph refuses request bodies above 4 MB; base64 MIME grows by a third, so the one-request
# forms are used only while the encoded body stays under this.
REQUEST_LIMIT = 4 * 1024 * 1024 - 64 * 1024
# Attachments from 3 MB go through an upload session (Graph's large-attachment API); the upload
# chunks must be multiples of 320 KiB.
UPLOAD_FROM = 3 * 1024 * 1024
CHUNK = 10 * 320 * 1024

CONSENT_HINT = (
    "the app may not send mail through Microsoft Graph: add the delegated permissions Mail.Send and "
    "Mail.ReadWrite (Entra admin center > App registrations > API permissions > Microsoft Graph), "
    'grant consent, then run "{login}"'
)
SEND_AS_HINT = (
    "you are not allowed to send as this address: grant 'Send As' (or 'Send on Behalf') on the mailbox "
    "in Exchange, or use your own address in --from"
)
MAILBOX_HINT = (
    "the mailbox cannot be used through Microsoft Graph (no Exchange Online licence?); try OUTLOOK_SEND_VIA=smtp"
)
THROTTLED_HINT = "Microsoft Graph is throttling (Exchange Online accepts 30 messages a minute); try again later"

# Steps of one Graph submission, named in messages.
SEND_MAIL, CREATE_DRAFT, SET_BCC, ADD_ATTACHMENT, UPLOAD, SEND_DRAFT, LOOKUP = (
    "sendMail",
    "create the draft",
    "set the Bcc recipients",
    "add an attachment",
    "upload an attachment",
    "send the draft",
    "look the message up in Sent Items",
)
_FIELD = re.compile(r"[Pp]roperty '?([A-Za-z_][\w.]*)'?|'([A-Za-z_][\w.]*)' (?:is|was|has)")


class Throttled(TemporaryFailure):
    """Raised for 429/503/504: ``retry_after`` is the server's wait in seconds (None if not said)."""

    def __init__(self, message: str, retry_after: float | None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


@dataclass(frozen=True)
class GraphError:
    """Graph's error JSON, cleaned for one line."""

    code: str
    message: str

    @classmethod
    def parse(cls, body: bytes) -> GraphError | None:
        try:
            data = json.loads(body.decode("utf-8", "replace"))
        except ValueError:
            return None
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            return None
        return cls(clean_line(str(error.get("code") or "")), clean_line(str(error.get("message") or "")))

    @property
    def field(self) -> str | None:
        """The property the message names, e.g. ``bccRecipients`` in "Property bccRecipients in payload..."."""
        match = _FIELD.search(self.message)
        return (match.group(1) or match.group(2)) if match else None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (Graph sends seconds; an HTTP date is not used by Graph)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86400 * 7 else None


def reply_error(
    step: str,
    status: int,
    body: bytes,
    where: str,
    login: str = "mailbot login",
    retry: str | None = None,
    address: str | None = None,
) -> MailbotError | None:
    """What Graph's answer ``status``/``body`` at ``step`` means: None for success (2xx), else a
    MailbotError with the exit code and hint. ``where`` names the service (``Microsoft Graph
    https://host``); ``retry`` is the Retry-After header; ``address`` the mailbox sent from.

    202/201/200 sent; 429, 503, 504 Throttled (75, with Retry-After); 401 token refused (77; the
    caller refreshes once first); 403 ErrorAccessDenied/ErrorSendAsDenied 69 with the hint; 400
    with error JSON 65 naming the field; 413 65; other 5xx 75; other 4xx 69."""
    if 200 <= status < 300:
        return None
    error = GraphError.parse(body)
    said = f"HTTP {status} {error}" if error else f"HTTP {status}"
    message = f"{where} refused to {step}: {said}"
    code = error.code if error else ""
    if status in (429, 503, 504):
        wait = retry_after(retry)
        return Throttled(message, wait, THROTTLED_HINT)
    if status == 401:
        return SignInRequired(message, f'the token for Microsoft Graph was refused: run "{login}" again')
    if status == 403:
        who = f" as {address}" if address else ""
        if code == "ErrorSendAsDenied" or "send as" in (error.message.lower() if error else ""):
            return ServiceRefused(f"{where} refused to send{who}: {said}", SEND_AS_HINT)
        if code in ("ErrorAccessDenied", "Authorization_RequestDenied", "AccessDenied", ""):
            return ServiceRefused(message, CONSENT_HINT.format(login=login))
        return ServiceRefused(message)
    if status == 404 and code in ("MailboxNotEnabledForRESTAPI", "ResourceNotFound", "ErrorInvalidUser"):
        return ServiceRefused(message, MAILBOX_HINT)
    if status == 413:
        return BadInputError(message, "the message is too large for Microsoft Graph; send smaller attachments")
    if status == 400:
        field = error.field if error else None
        named = f" (field {field})" if field else ""
        return BadInputError(f"{where} refused the message{named}: {said}")
    if 500 <= status < 600:
        return TemporaryFailure(message)
    return ServiceRefused(message)


# -- request bodies -------------------------------------------------------------------------


def recipients(addresses: list[str]) -> list[dict[str, Any]]:
    """Graph's recipient collection: ``[{"emailAddress": {"address": ...}}, ...]``."""
    return [{"emailAddress": {"address": address}} for address in addresses]


def upload_session_body(name: str, size: int, content_type: str) -> dict[str, Any]:
    return {"AttachmentItem": {"attachmentType": "file", "name": name, "size": size, "contentType": content_type}}


def file_attachment(name: str, content_type: str, content_b64: str) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": name,
        "contentType": content_type,
        "contentBytes": content_b64,
    }


def chunks(size: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """(first, last) byte ranges of an upload, inclusive, as ``Content-Range`` wants them."""
    return [(start, min(start + chunk, size) - 1) for start in range(0, size, chunk)]


def sent_items_filter(message_id: str) -> str:
    """The OData ``$filter`` finding a message by its Message-ID (quotes doubled, as OData wants)."""
    return "internetMessageId eq '{}'".format(message_id.replace("'", "''"))


def mailbox_path(address: str | None) -> str:
    """``/me`` for the signed-in mailbox, ``/users/{address}`` for a shared mailbox or app-only."""
    if not address:
        return "/me"
    from urllib.parse import quote

    return "/users/" + quote(address, safe="@")
