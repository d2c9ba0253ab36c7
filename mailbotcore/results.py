"""What commands return: plain data, printed by ``mailbotcore.render`` as text, JSON or NDJSON.

Field names are the JSON vocabulary (README → Output formats): the renderer turns each
result into a dict with :func:`dataclasses.asdict`-like rules, so a field added here shows
up in every JSON output of that result without a second list to keep in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailbotcore.errors import MailbotError


@dataclass(frozen=True)
class Notice:
    """A line for the person watching (stderr), not a result: silenced by ``-q``."""

    text: str


@dataclass(frozen=True)
class FetchedRecord:
    """One message handed to the Maildir and/or the handler by ``fetch``."""

    uid: int
    folder: str
    date: str | None
    from_: str
    from_address: str | None
    subject: str
    message_id: str | None
    size: int
    path: str | None = None
    exit_status: int | None = None


@dataclass(frozen=True)
class OutboxRecord:
    """What ``outbox`` did with one queued file."""

    file: str
    status: str  # sent | partly-sent | deferred | failed
    path: str
    error: str | None = None


@dataclass(frozen=True)
class SendResult:
    """``send``: sent (with its Message-ID), queued (the file name) or printed (--dry-run)."""

    status: str  # sent | queued | dry-run
    message_id: str
    queued_file: str | None = None
    data: bytes = b""
    sender: str | None = None
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadResult:
    """``read``: the exact bytes, the readable text, and where attachments were saved."""

    uid: int
    raw: bytes
    text: str
    saved: tuple[str, ...] = ()
    show_raw: bool = False


@dataclass(frozen=True)
class SignInStatus:
    """``whoami``: who is signed in and until when, from the cache alone."""

    username: str
    authority: str
    access_token_expires: float | None
    refresh_token: bool
    token_cache: str
    mode: str = "delegated"  # or "app-only" (client credentials)
    client_id: str | None = None
    mailbox: str | None = None
    credential: str | None = None  # app-only: "client secret" or "certificate"
    cache_encrypted: bool = False
    refresh_token_last_used: float | None = None


@dataclass(frozen=True)
class TokenResult:
    """``token``: what goes to stdout, alone (a secret: never logged, never in JSON)."""

    value: str = field(repr=False)


@dataclass(frozen=True)
class LoginResult:
    username: str
    sign_in_url: str | None = None  # login --print-url: the address to open (stdout)


@dataclass(frozen=True)
class LogoutResult:
    username: str
    removed: bool
    token_cache: str
    moved_aside: str | None = None


@dataclass(frozen=True)
class Check:
    """One ``doctor`` line; a failed check carries the error (its exit code is the run's)."""

    status: str  # OK | WARN | FAIL | SKIP
    label: str
    detail: str | None = None
    hint: str | None = None
    error: MailbotError | None = None
