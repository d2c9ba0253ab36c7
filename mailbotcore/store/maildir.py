"""Maildir delivery: tmp/ → fsync → new/, under a name derived from the message's identity.

The name is the same for the same message (UID, UIDVALIDITY, account and folder), so a
re-delivery after a crash is recognised and not written twice, wherever it is now: still
in ``new/`` or moved by a mail reader to ``cur/`` with flags (``name:2,S``). Files hold
local (LF) line endings, like getmail, fetchmail and procmail write them, and are 0600
whatever the folder's mode (Dovecot delivers 0600 too).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from mailbotcore.store import files as fileutil

log = logging.getLogger("mailbot.fetch")

MODE = 0o600


def to_local(raw: bytes) -> bytes:
    """The message with LF line endings (what a Maildir holds, and what ``--exec`` gets)."""
    return raw.replace(b"\r\n", b"\n")


def find_delivered(maildir: Path, name: str) -> Path | None:
    """The copy of the message called ``name`` already in ``new/`` or ``cur/``, or None.

    Maildir names are ``<time>.<unique>[:2,<flags>]``; readers keep the part before ":"
    and may add or change flags, so only ``.<name>`` before any ":" is compared."""
    suffix = "." + name
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as entries:
                for entry in entries:
                    if entry.name.split(":", 1)[0].endswith(suffix):
                        return Path(entry.path)
        except FileNotFoundError:
            continue
    return None


def deliver(maildir: Path, name: str, raw: bytes, when: float | None) -> Path:
    """Write ``raw`` (LF line endings already, see :func:`to_local`) into ``maildir/new/`` as
    ``<when>.<name>``, mode 0600; an existing copy in ``new/`` or ``cur/`` is kept as it is.

    Any OSError becomes one line: a full disk exits 75 (the temp file is removed, nothing
    is half-delivered), a path that is not a folder 78, anything else 73.
    """
    for sub in ("tmp", "new", "cur"):
        fileutil.make_dirs(maildir / sub, "the Maildir folder")
    existing = find_delivered(maildir, name)
    if existing is not None:
        log.info("%s is already delivered (re-run after a crash); not delivering it twice", existing)
        return existing
    filename = f"{int(when or time.time())}.{name}"
    final = maildir / "new" / filename
    tmp = maildir / "tmp" / filename
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a crashed run; tmp/ is ours to clean
        fileutil.write_new_then(tmp, raw, MODE, lambda: os.rename(tmp, final))
        fileutil.fsync_dir(final.parent)
    except OSError as exc:
        raise fileutil.os_failure(exc, "deliver into the Maildir", maildir) from exc
    return final
