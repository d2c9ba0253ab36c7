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


# A queued message sent to some recipients and refused for now for others keeps this header,
# listing the recipients still to be sent to; ``outbox`` sends only to them and strips it (like Bcc).
REMAINING = b"x-mailbot-remaining-recipients"
_REMAINING_NAME = b"X-Mailbot-Remaining-Recipients"


def remaining_recipients(raw: bytes) -> tuple[list[str] | None, bytes]:
    """The recipients still to be sent to (None: all of them) and the message without that header."""
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    if REMAINING not in raw[:end].lower():
        return None, raw
    lines = raw[:end].splitlines(keepends=True)
    kept: list[bytes] = []
    found: list[bytes] = []
    inside = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and inside:
            found.append(line)
            continue
        inside = line.lower().startswith(REMAINING + b":")
        (found if inside else kept).append(line)
    value = b"".join(found).split(b":", 1)[1].decode("ascii", "replace")
    addresses = [a.strip() for a in value.replace("\r", " ").replace("\n", " ").split(",") if a.strip()]
    return addresses, b"".join(kept) + raw[end:]


def keep_for(path: Path, recipients: list[str]) -> None:
    """Rewrite the queued ``path`` (atomically) so the next run sends it to ``recipients`` only."""
    _, raw = remaining_recipients(read(path) or b"")
    newline = b"\r\n" if b"\r\n" in raw[:1000] else b"\n"
    folded = ("," + newline.decode() + " ").join(recipients).encode("ascii")
    fileutil.write_private(path, _REMAINING_NAME + b": " + folded + newline + raw, "queued message")


def copy_to(path: Path, folder: str, data: bytes) -> Path:
    """Write ``data`` into ``folder`` under ``path``'s name, or a free one: an existing entry is never replaced."""
    target_dir = path.parent / folder
    fileutil.make_dirs(target_dir, f"the outbox's {folder}/ folder")
    number = 0
    while True:
        target = target_dir / (path.name if number == 0 else f"{path.stem}.{number}{path.suffix}")
        number += 1
        if target.exists() or target.with_name(target.name + ".error").exists():
            continue
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        fileutil.fsync_dir(target_dir)
        return target
