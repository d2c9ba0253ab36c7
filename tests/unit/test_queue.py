"""store/queue.py: only regular files of this user are queued messages; a full disk is one line."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from mailbotcore.errors import TemporaryFailure
from mailbotcore.store import queue


def test_symlinks_and_folders_named_eml_are_not_queued(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "b.eml").write_bytes(b"Subject: x\r\n\r\n")
    outside = tmp_path.parent / f"{tmp_path.name}-secret"
    outside.write_bytes(b"not mail")
    (tmp_path / "a.eml").symlink_to(outside)
    (tmp_path / "c.eml").mkdir()
    with caplog.at_level(logging.WARNING, logger="mailbot.outbox"):
        assert queue.queued(tmp_path) == [tmp_path / "b.eml"]
    assert caplog.messages == [
        f"{tmp_path / 'a.eml'} is not a regular file; it is not sent and left as it is",
        f"{tmp_path / 'c.eml'} is not a regular file; it is not sent and left as it is",
    ]
    assert (tmp_path / "a.eml").is_symlink() and outside.read_bytes() == b"not mail"
    outside.unlink()


def test_a_full_disk_writing_a_note_is_75_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "failed" / "m.eml"
    target.parent.mkdir()
    target.write_bytes(b"x")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(TemporaryFailure) as caught:
        queue.note(target, "554 refused")
    assert caught.value.message == f"cannot write the outbox note {target}.error: No space left on device"
    assert sorted(p.name for p in target.parent.iterdir()) == ["m.eml"]
