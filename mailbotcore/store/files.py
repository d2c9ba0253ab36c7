"""Crash-safe files: atomic private writes, checked opens and cross-process locks.

Token caches, fetch state and queued mail must survive a kill at any moment and must
never be readable by other users, so every write goes through :func:`atomic_write`.
Every file mailbot opens in its cache and state folders is opened with ``O_NOFOLLOW``
and checked on the open descriptor (:func:`open_private`): owner, regular file, mode.
mailbot never chmods or renames what is not its own regular file; it says what is wrong
(exit 78). :func:`os_failure` turns any other ``OSError`` on its own files into one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from mailbotcore.errors import (
    Busy,
    ConfigError,
    InputFileError,
    MailbotError,
    OutputError,
    TemporaryFailure,
)

PRIVATE = 0o600

# A full disk or quota: worth another try once there is room.
_TEMPORARY = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN, errno.EINTR}
# A path that cannot be what mailbot needs there: a setting or a folder to fix.
_MISCONFIGURED = {
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ELOOP,
    errno.EACCES,
    errno.EPERM,
    errno.ENAMETOOLONG,
    errno.ENOTEMPTY,
    errno.EEXIST,
    errno.ENXIO,
}


def os_failure(exc: OSError, action: str, path: Path | str) -> MailbotError:
    """One line and a sysexits code for an ``OSError`` on one of mailbot's own files.

    ``action`` reads "cannot <action> <path>": disk full or quota → 75 (TemporaryFailure),
    a path that is a file, a folder, a link or not ours → 78 (ConfigError), anything
    else (read-only file system...) → 73 (OutputError).
    """
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        reason = "it is a symbolic link, which mailbot does not follow there"
    message = f"cannot {action} {path}: {reason}"
    if exc.errno in _TEMPORARY:
        return TemporaryFailure(message, hint="free some space (or raise the quota), then run again")
    if exc.errno in _MISCONFIGURED:
        return ConfigError(message, hint="point the setting at a path mailbot can use, or fix that path")
    return OutputError(message)


def check_fd(fd: int, path: Path, what: str, *, tighten: bool = True) -> os.stat_result:
    """Refuse an open file that is not a regular file of this user; tighten a loose mode.

    Runs on the descriptor, so what is checked is what is read (no swap in between).
    Raises ConfigError (78) and leaves the file as it is when it is not ours to fix.
    """
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ConfigError(f"{what} {path} is {kind}; it was left as it is", hint="point mailbot at a file path")
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"{what} {path} belongs to another user (uid {info.st_uid}); it was not used",
            hint=f'check who created it; "chown {os.getuid()} {path}" if it is yours',
        )
    if tighten and stat.S_IMODE(info.st_mode) & 0o077:
        import logging

        logging.getLogger("mailbot").warning(
            "%s %s was readable by others (mode %o); tightened to 600", what, path, stat.S_IMODE(info.st_mode)
        )
        os.fchmod(fd, PRIVATE)
    return info


def open_private(path: Path, what: str, *, create: bool = False) -> int:
    """Open one of mailbot's own files without following a symlink, checked on the descriptor.

    Read-only unless ``create`` (then read-write, created 0600 if missing). Raises
    FileNotFoundError when it is missing (and not created), else a MailbotError; never
    blocks on a FIFO.
    """
    flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    flags |= (os.O_RDWR | os.O_CREAT) if create else os.O_RDONLY
    try:
        fd = os.open(path, flags, PRIVATE)
    except FileNotFoundError:
        if create:
            raise os_failure(FileNotFoundError(errno.ENOENT, "its folder does not exist"), "open", path) from None
        raise
    except OSError as exc:
        raise os_failure(exc, f"open the {what}", path) from exc
    try:
        check_fd(fd, path, what)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: Path, what: str) -> bytes | None:
    """The bytes of one of mailbot's own files (see :func:`open_private`); None when missing."""
    try:
        fd = open_private(path, what)
    except FileNotFoundError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise os_failure(exc, f"read the {what}", path) from exc


def make_dirs(directory: Path, what: str) -> None:
    """``mkdir -p`` (new folders 0700) with one line instead of a traceback."""
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError as exc:  # a file where a folder should be
        raise os_failure(
            OSError(errno.ENOTDIR, "a file is in the way of a folder"), f"create {what}", directory
        ) from exc
    except OSError as exc:
        raise os_failure(exc, f"create {what}", directory) from exc
    if not directory.is_dir():
        raise os_failure(OSError(errno.ENOTDIR, "not a folder"), f"use {what}", directory)


def atomic_write(path: Path, data: bytes, mode: int = PRIVATE) -> None:
    """Replace ``path`` with ``data``: temp file in the same folder (created with ``mode``,
    so it is never readable by others), flush + fsync, ``os.replace``, fsync the folder.

    On any failure (disk full...) the temp file is removed and ``path`` is as it was; the
    OSError propagates (callers map it with :func:`os_failure`, or use :func:`write_private`).
    ``path`` is replaced only when it is a regular file or missing: a directory or a
    symlink there is refused, never renamed over.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _refuse_non_regular(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    write_new_then(tmp, data, mode, lambda: os.replace(tmp, path))
    fsync_dir(path.parent)


def write_new_then(tmp: Path, data: bytes, mode: int, publish: Callable[[], object]) -> None:
    """Create ``tmp`` (never an existing entry, never through a symlink) with ``mode``, write and
    fsync ``data``, then ``publish`` it (a rename); on any failure ``tmp`` is removed."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        publish()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Reservation:
    """Disk space for one later atomic replace of ``path``, taken before it is needed.

    The token cache must be saved after a refresh (the refresh token rotates): reserving
    the room first means a full disk stops the run *before* the old refresh token is spent,
    so the cache on disk stays usable. :meth:`commit` writes into the reserved temp file and
    renames it over ``path``; :meth:`discard` gives the space back. Raises OSError (map it
    with :func:`os_failure`).
    """

    def __init__(self, path: Path, size: int, mode: int = PRIVATE) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        self._fd: int | None = os.open(
            self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
        try:
            try:
                os.posix_fallocate(self._fd, 0, max(1, size))
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                os.write(self._fd, b"\0" * size)  # no fallocate here: take the room by writing
                os.fsync(self._fd)
        except BaseException:
            self.discard()
            raise

    def commit(self, data: bytes) -> None:
        if self._fd is None:
            raise ValueError("reservation already used")
        fd, self._fd = self._fd, None
        try:
            _refuse_non_regular(self.path)
            os.lseek(fd, 0, os.SEEK_SET)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.ftruncate(fd, len(data))
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(self.tmp, self.path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.tmp.unlink(missing_ok=True)


def _refuse_non_regular(path: Path) -> None:
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(existing.st_mode):
        kind = "a directory" if stat.S_ISDIR(existing.st_mode) else "not a regular file"
        raise IsADirectoryError(errno.EISDIR, f"it is {kind}; it was left as it is")


def write_private(path: Path, data: bytes, what: str) -> None:
    """:func:`atomic_write` with any OSError turned into one line and a sysexits code."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise os_failure(exc, f"write the {what}", path) from exc


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the folder that holds it."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_private(path: Path, what: str) -> None:
    """Tighten a secret file that others can read, or refuse it if it is not ours (78).

    A file owned by someone else could have been planted; a file with group/other bits
    is ours but exposed, so we fix the mode (and say so in the log). Checked and fixed on
    an ``O_NOFOLLOW`` descriptor: a symlink, a directory or another user's file is refused."""
    try:
        fd = open_private(path, what)
    except FileNotFoundError:
        return
    os.close(fd)


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
        make_dirs(self.path.parent, "the folder")
        # A lock file planted by another user (a sticky shared folder) is refused, not used.
        fd = open_private(self.path, "lock file", create=True)
        deadline = time.monotonic() + self.wait
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise os_failure(exc, "lock", self.path) from exc
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
