"""Crash-safe files: atomic private writes and cross-process locks.

Token caches, fetch state and queued mail must survive a kill at any moment and must
never be readable by other users, so every write goes through :func:`atomic_write`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from pathlib import Path
from types import TracebackType

from mailbotcore.errors import Busy, InputFileError, SignInRequired

PRIVATE = 0o600


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Replace ``path`` with ``data``: temp file in the same folder (created with ``mode``,
    so it is never readable by others), flush + fsync, ``os.replace``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the folder that holds it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private(path: Path, what: str) -> None:
    """Tighten a secret file that others can read, or refuse it if it is not ours.

    A file owned by someone else could have been planted; a file with group/other bits
    is ours but exposed, so we fix the mode (and say so in the log)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    if info.st_uid != os.getuid():
        raise SignInRequired(
            f"{what} {path} belongs to another user (uid {info.st_uid})",
            hint=f'check who created it; "chown {os.getuid()} {path}" if it is yours',
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        import logging

        logging.getLogger("mailbot").warning(
            "%s %s was readable by others (mode %o); tightened to 600",
            what,
            path,
            stat.S_IMODE(info.st_mode),
        )
        os.chmod(path, PRIVATE)


def read_file(path: Path, what: str) -> bytes:
    """Read a file named by the user, turning OS errors into exit code 66."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


class FileLock:
    """An exclusive ``fcntl.flock`` on ``path`` (created 0600 if missing).

    ``wait`` is how many seconds to keep trying; 0 means fail at once with :class:`Busy`.
    The kernel drops the lock when the process dies, so a crashed run never blocks the next.
    """

    def __init__(self, path: Path, wait: float, busy_message: str) -> None:
        self.path = path
        self.wait = wait
        self.busy_message = busy_message
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE)
        deadline = time.monotonic() + self.wait
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise Busy(self.busy_message, hint="try again later, or pass --wait SECONDS") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
