"""Typed options, one class per command: what the CLI (or a script) asks a command to do.

Commands never see argparse; the CLI builds these from the command line, and a script
that drives mailbot from Python builds them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class ListOptions:
    folder: str = "INBOX"
    limit: int = 10
    unseen: bool = False
    since: date | None = None
    from_: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    uid: int
    folder: str = "INBOX"
    raw: bool = False
    save_attachments: Path | None = None
    mark_read: bool = False


@dataclass(frozen=True)
class SendOptions:
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    body: str | None = None
    body_file: Path | None = None
    html_file: Path | None = None
    attach: tuple[Path, ...] = ()
    reply_to: str | None = None
    from_: str | None = None
    dry_run: bool = False
    queue: Path | None = None


@dataclass(frozen=True)
class FetchOptions:
    folder: str = "INBOX"
    maildir: Path | None = None
    exec_cmd: str | None = None
    exec_timeout: float = 300.0
    backfill: int | None = None
    mark_seen: bool = False
    move_to: str | None = None
    wait: float = 0.0
    batch_mb: float = 10.0


@dataclass(frozen=True)
class OutboxOptions:
    directory: Path
    wait: float = 0.0


@dataclass(frozen=True)
class LoginOptions:
    """How to sign in: ``device-code`` (the default), ``browser``, ``paste``, ``print-url``
    or ``redirect-url`` (with ``redirect_url``, the address the browser ended on)."""

    method: str = "device-code"
    redirect_url: str | None = None
    timeout: float = 300.0


@dataclass(frozen=True)
class TokenOptions:
    """``token``: the bare access token, or (``xoauth2``) the base64 SASL XOAUTH2 string."""

    xoauth2: bool = False


@dataclass(frozen=True)
class WatchOptions(FetchOptions):
    """``watch``: fetch's options, plus how to wait for new mail between catch-up passes."""

    poll: float = 60.0  # seconds between passes where the server has no IDLE
    idle_renewal: float = 540.0  # re-issue IDLE after this many seconds (Outlook drops idlers at ~10 min)
