"""The outbox folder: queued ``.eml`` files, and ``sent/`` and ``failed/`` beside them.

A message leaves the queue only by a rename into ``sent/`` or ``failed/`` (with a ``.error``
note saying why); an existing entry there is never replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailbotcore.errors import InputFileError
from mailbotcore.store import files as fileutil


def queued(directory: Path) -> list[Path]:
    """The queued messages in queue order (their names sort by the time they were queued)."""
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".eml" and p.is_file())
    except OSError as exc:
        raise InputFileError(f"cannot read the queue {directory}: {exc.strerror or exc}") from exc


def move(path: Path, folder: str) -> Path:
    """Move a queued file into ``folder`` (``sent`` or ``failed``) under a name not yet taken there."""
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True, mode=0o700)
    target = target_dir / path.name
    number = 1
    while target.exists() or target.with_name(target.name + ".error").exists():
        target = target_dir / f"{path.stem}.{number}{path.suffix}"
        number += 1
    os.rename(path, target)
    fileutil.fsync_dir(target_dir)
    fileutil.fsync_dir(path.parent)
    return target


def note(path: Path, text: str) -> None:
    """The ``.error`` file beside a sent or failed message."""
    fileutil.atomic_write(path.with_name(path.name + ".error"), (text + "\n").encode(), mode=0o600)
