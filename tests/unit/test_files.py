"""store/files.py: checked opens (O_NOFOLLOW, fstat on the descriptor), OSError → one line + sysexits."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from mailbotcore.errors import Busy, ConfigError, OutputError, TemporaryFailure
from mailbotcore.store import files as fileutil


@pytest.mark.parametrize(
    ("code", "kind", "exit_code", "reason"),
    [
        (errno.ENOSPC, TemporaryFailure, 75, "No space left on device"),
        (errno.EDQUOT, TemporaryFailure, 75, "Disk quota exceeded"),
        (errno.ENOTDIR, ConfigError, 78, "Not a directory"),
        (errno.EISDIR, ConfigError, 78, "Is a directory"),
        (errno.EACCES, ConfigError, 78, "Permission denied"),
        (errno.ELOOP, ConfigError, 78, "it is a symbolic link, which mailbot does not follow there"),
        (errno.EROFS, OutputError, 73, "Read-only file system"),
    ],
)
def test_os_failure_classifies_errno(code: int, kind: type, exit_code: int, reason: str) -> None:
    error = fileutil.os_failure(OSError(code, os.strerror(code)), "write the token cache", Path("/x/cache.json"))
    assert type(error) is kind and error.exit_code == exit_code
    assert error.message == f"cannot write the token cache /x/cache.json: {reason}"


def test_read_private_refuses_a_symlink_and_changes_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "saved-attachment.pdf"
    victim.write_bytes(b"victim's file")
    os.chmod(victim, 0o644)
    link = tmp_path / "cache.json"
    link.symlink_to(victim)
    with pytest.raises(ConfigError) as caught:
        fileutil.read_private(link, "token cache")
    assert caught.value.message == (
        f"cannot open the token cache {link}: it is a symbolic link, which mailbot does not follow there"
    )
    assert caught.value.exit_code == 78
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # the target's mode was not touched
    assert link.is_symlink()


def test_read_private_refuses_a_directory_without_chmod(tmp_path: Path) -> None:
    folder = tmp_path / "cache.json"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # noqa: S103 - a folder others may read, on purpose
    with pytest.raises(ConfigError) as caught:
        fileutil.read_private(folder, "token cache")
    assert caught.value.message == f"token cache {folder} is a directory; it was left as it is"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_read_private_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "cache.json"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError) as caught:
        fileutil.read_private(fifo, "token cache")
    assert caught.value.message == f"token cache {fifo} is not a regular file; it was left as it is"


def test_read_private_tightens_its_own_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_bytes(b"{}")
    os.chmod(path, 0o644)
    assert fileutil.read_private(path, "token cache") == b"{}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert fileutil.read_private(tmp_path / "missing", "token cache") is None


def test_atomic_write_never_replaces_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "state.json"
    folder.mkdir()
    (folder / "inside").write_text("kept")
    with pytest.raises(ConfigError) as caught:
        fileutil.write_private(folder, b"{}", "fetch state")
    assert caught.value.message == f"cannot write the fetch state {folder}: it is a directory; it was left as it is"
    assert (folder / "inside").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temp file left


def test_file_lock_on_a_directory_and_under_a_file_is_78(tmp_path: Path) -> None:
    lock_dir = tmp_path / "x.lock"
    lock_dir.mkdir()
    with pytest.raises(ConfigError) as caught, fileutil.FileLock(lock_dir, 0, "busy"):
        pass
    assert caught.value.message == f"cannot open the lock file {lock_dir}: Is a directory"
    blocker = tmp_path / "state"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ConfigError) as caught, fileutil.FileLock(blocker / "x.lock", 0, "busy"):
        pass
    assert caught.value.message == f"cannot create the folder {blocker}: a file is in the way of a folder"
    assert blocker.read_text() == "a file where a folder should be"


def test_check_private_refuses_a_symlink_without_touching_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("x")
    os.chmod(target, 0o644)
    link = tmp_path / "cache.json"
    link.symlink_to(target)
    with pytest.raises(ConfigError):
        fileutil.check_private(link, "token cache")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_atomic_write_is_private_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "cache.json"
    fileutil.atomic_write(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    os.chmod(target, 0o644)
    fileutil.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["cache.json"]


def test_check_private_tightens_loose_mode(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    fileutil.check_private(path, "token cache")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_lock_excludes_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    # flock locks belong to open file descriptions, so a second open in-process conflicts too.
    with (
        fileutil.FileLock(lock, 0, "busy"),
        pytest.raises(Busy, match="busy"),
        fileutil.FileLock(lock, 0.05, "busy"),
    ):
        pass
    with fileutil.FileLock(lock, 0, "busy"):
        pass
