"""The outbox folder: queued ``.eml`` files, and ``sent/`` and ``failed/`` beside them.

A message leaves the queue only by a rename into ``sent/`` or ``failed/`` (with a ``.error``
note saying why); an existing entry there is never replaced.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mailbotcore.errors import InputFileError
from mailbotcore.store import files as fileutil

log = logging.getLogger("mailbot.outbox")


def queued(directory: Path) -> list[Path]:
    """The queued messages in queue order (their names sort by the time they were queued).

    Only regular files count: a symlink or a folder named ``*.eml`` is left alone (a warning)."""
    try:
        names = sorted(p for p in directory.iterdir() if p.suffix == ".eml")
    except OSError as exc:
        raise InputFileError(f"cannot read the queue {directory}: {exc.strerror or exc}") from exc
    regular = []
    for path in names:
        if path.is_file() and not path.is_symlink():
            regular.append(path)
        elif path.exists() or path.is_symlink():
            log.warning("%s is not a regular file; it is not sent and left as it is", path)
    return regular


def read(path: Path) -> bytes | None:
    """A queued message's bytes (``files.read_private``: no symlink, a regular file of this user);
    None when it is gone."""
    return fileutil.read_private(path, "queued message")


def move(path: Path, folder: str) -> Path:
    """Move a queued file into ``folder`` (``sent`` or ``failed``) under a name not yet taken there."""
    target_dir = path.parent / folder
    fileutil.make_dirs(target_dir, f"the outbox's {folder}/ folder")
    target = target_dir / path.name
    number = 1
    while target.exists() or target.with_name(target.name + ".error").exists():
        target = target_dir / f"{path.stem}.{number}{path.suffix}"
        number += 1
    try:
        os.rename(path, target)
        fileutil.fsync_dir(target_dir)
        fileutil.fsync_dir(path.parent)
    except OSError as exc:
        raise fileutil.os_failure(exc, f"move into {folder}/ the queued message", path) from exc
    return target


def note(path: Path, text: str) -> None:
    """The ``.error`` file beside a sent or failed message."""
    fileutil.write_private(path.with_name(path.name + ".error"), (text + "\n").encode(), "outbox note")
