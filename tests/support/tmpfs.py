"""A small tmpfs for disk-full tests, and a second local user for the shared-folder tests.

Mounting needs root (the test bed runs as root). Where it is impossible the tests are
skipped with the reason; in CI (``CI`` or ``MAILBOT_REQUIRE_TESTBED`` set) that is a
failure instead, like the mail test bed. Import ``small_disk_fixture`` / ``other_user_fixture``
into a test module to use the ``small_disk`` / ``other_user`` fixtures.
"""

from __future__ import annotations

import errno
import os
import pwd
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _must_run() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("MAILBOT_REQUIRE_TESTBED"))


def _unavailable(reason: str) -> None:
    if _must_run():
        pytest.fail(f"must run in CI: {reason}")
    pytest.skip(reason)


@dataclass
class SmallDisk:
    """A mounted tmpfs of ``size`` bytes at ``path``; :meth:`fill` leaves no byte free."""

    path: Path
    size: int

    def fill(self) -> None:
        filler = self.path / ".filler"
        chunk = b"\0" * 4096
        with open(filler, "ab", buffering=0) as handle:
            try:
                while True:
                    handle.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        # tmpfs counts whole pages: a byte-wise top-up takes what is left of the last one.
        with open(filler, "ab", buffering=0) as handle:
            try:
                while handle.write(b"\0"):
                    pass
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def free(self) -> None:
        (self.path / ".filler").unlink(missing_ok=True)


@pytest.fixture(name="small_disk")
def small_disk_fixture(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 1 MB tmpfs mounted for one test (unmounted after it)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    size = 1024 * 1024
    if os.geteuid() != 0:
        _unavailable("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        _unavailable(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield SmallDisk(mount_point, size)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@dataclass
class OtherUser:
    """A second local account (``nobody``) that can run commands in a shared folder."""

    name: str
    uid: int
    gid: int

    def run(self, *argv: str) -> None:
        subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--", *argv],
            check=True,
            capture_output=True,
        )


@pytest.fixture(name="other_user")
def other_user_fixture() -> OtherUser:
    if os.geteuid() != 0:
        _unavailable("acting as a second user needs root")
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        _unavailable("there is no user nobody")
        raise
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        _unavailable("setpriv is not installed")
    return OtherUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
