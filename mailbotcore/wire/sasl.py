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
LONG_OPERATION_SECONDS = 1200.0


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


def refusal_hint(provider: Callable[..., str], protocol: str) -> str | None:
    """The sign-in's own hint for a server refusing a fresh token (app-only: the Exchange
    grant steps), or None for the usual one. ``provider`` is a bound ``provider`` method."""
    owner = getattr(provider, "__self__", None)
    hint = getattr(owner, "refused_hint", None)
    result = hint(protocol) if callable(hint) else None
    return result if isinstance(result, str) else None


def lasting(provider: TokenProvider, seconds: float) -> TokenProvider:
    """``provider`` whose first token is good for at least ``seconds`` more (a long operation:
    Exchange ends a session whose token expires mid-run), where the sign-in supports it."""
    import inspect

    try:
        supports = "min_validity" in inspect.signature(provider).parameters
    except (TypeError, ValueError):
        supports = False
    if not supports:
        return provider
    first = [True]

    def lasting_provider(force_refresh: bool = False) -> str:
        if first[0] and not force_refresh:
            first[0] = False
            return provider(min_validity=seconds)  # type: ignore[call-arg]
        return provider(force_refresh=force_refresh)

    lasting_provider.__self__ = getattr(provider, "__self__", None)  # type: ignore[attr-defined]
    return lasting_provider
