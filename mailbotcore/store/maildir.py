"""Maildir delivery: tmp/ → fsync → new/, under a name derived from the message's identity.

The name is the same for the same message (UID, UIDVALIDITY, account and folder), so a
re-delivery after a crash is recognised and not written twice.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mailbotcore.store import files as fileutil

log = logging.getLogger("mailbot.fetch")


def deliver(maildir: Path, name: str, raw: bytes, when: float | None) -> Path:
    """Write ``raw`` into ``maildir/new/`` as ``<when>.<name>``; an existing copy is kept as it is."""
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    filename = f"{int(when or time.time())}.{name}"
    final = maildir / "new" / filename
    if final.exists():
        log.info("%s is already delivered (re-run after a crash); not delivering it twice", final)
        return final
    tmp = maildir / "tmp" / filename
    with open(tmp, "wb") as handle:
        handle.write(raw)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, final)
    fileutil.fsync_dir(final.parent)
    return final
