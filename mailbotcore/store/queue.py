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
    _, raw = remaining_recipients(path.read_bytes())
    newline = b"\r\n" if b"\r\n" in raw[:1000] else b"\n"
    folded = ("," + newline.decode() + " ").join(recipients).encode("ascii")
    fileutil.atomic_write(path, _REMAINING_NAME + b": " + folded + newline + raw, mode=0o600)


def copy_to(path: Path, folder: str, data: bytes) -> Path:
    """Write ``data`` into ``folder`` under ``path``'s name, or a free one: an existing entry is never replaced."""
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True, mode=0o700)
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
