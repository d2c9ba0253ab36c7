"""SASL XOAUTH2, the wire format Outlook's IMAP and SMTP servers use for OAuth 2 bearer tokens.

Pure functions, no I/O: the IMAP and SMTP helpers feed them to imaplib and smtplib.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Protocol

# A long run (fetch, outbox, watch) starts with a token valid for at least this long.


class TokenProvider(Protocol):
    """What the IMAP, SMTP (and Graph) code gets from sign-in: a fresh access token on request.

    ``force_refresh`` asks for a new one because the server refused the last."""

    def __call__(self, force_refresh: bool = False) -> str: ...


def xoauth2_initial_response(user: str, token: str) -> str:
    """The XOAUTH2 client response, ``user=<address>^Aauth=Bearer <token>^A^A``, before base64.

    ``user`` is the mailbox to open (a shared mailbox when delegating), not necessarily the
    account the token belongs to.
    """
    if any(ch in user for ch in "\x01\r\n") or any(ch in token for ch in "\x01\r\n "):
        raise ValueError("XOAUTH2 user and token must not contain control characters or spaces")
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def xoauth2_responder(user: str, token: str) -> Callable[..., str]:
    """A SASL callback for both ``smtplib.SMTP.auth`` and ``imaplib.IMAP4.authenticate``.

    The first call (no challenge, or the empty challenge of a server without SASL-IR) gets
    the initial response. A later, non-empty challenge is the server's base64 JSON error;
    RFC 7628 says to answer it with an empty response so the server sends the final error.
    """
    response = xoauth2_initial_response(user, token)

    def respond(challenge: bytes | None = None) -> str:
        return "" if challenge else response

    return respond


def parse_error_challenge(challenge: bytes | str) -> dict[str, str]:
    """Decode the JSON error a server sends as an XOAUTH2 challenge (raw or base64); {} if unreadable."""
    data = challenge.encode() if isinstance(challenge, str) else challenge
    for candidate in (data, _unbase64(data)):
        try:
            parsed = json.loads(candidate)
        except (ValueError, TypeError):
            continue
        if isinstance(parsed, dict):
            return {str(key): str(value) for key, value in parsed.items()}
    return {}


def _unbase64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return b""


def app_grant_hint(mailbox: str, app: str | None, protocol: str) -> str:
    """What an Exchange admin must run when IMAP/SMTP refuses an app-only token for ``mailbox``."""
    app = app or "<application id>"
    steps = (
        f"the mailbox {mailbox} has not granted app {app} access: in Exchange Online PowerShell run "
        f"New-ServicePrincipal -AppId {app} -ObjectId <object id of the Enterprise application> and "
        f'Add-MailboxPermission -Identity "{mailbox}" -User <that object id> -AccessRights FullAccess'
    )
    if protocol == "SMTP":
        steps += (
            f'; for SMTP also Set-CASMailbox -Identity "{mailbox}" -SmtpClientAuthenticationDisabled $false '
            f'and Add-RecipientPermission -Identity "{mailbox}" -Trustee <that object id> -AccessRights SendAs'
        )
    return steps + " (README: App-only access)"
