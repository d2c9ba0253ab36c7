"""mailbot's own files (token cache, http cache, locks, fetch state, Maildir, queue) on odd paths,
full disks and folders shared with another user: one line and a sysexits code, nothing damaged."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Account, Result
from tests.support.tmpfs import OtherUser, SmallDisk, other_user_fixture, small_disk_fixture  # noqa: F401 - fixtures

FULL_HINT = "hint: free some space (or raise the quota), then run again"
PATH_HINT = "hint: point the setting at a path mailbot can use, or fix that path"


def message(n: int) -> bytes:
    return (
        f"From: Sender {n} <s{n}@example.org>\r\nTo: t@example.com\r\nSubject: message {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\nDate: Fri, 27 Nov 2026 10:{n % 60:02d}:00 +0000\r\n\r\nbody {n}\r\n"
    ).encode()


def expire_access_tokens(account: Account) -> None:
    """Make the next run refresh through MSAL (which takes the cache lock and reads the http cache):
    a run with a valid cached token reads only the token cache (signin/fastpath.py)."""
    cache = json.loads(account.cache.read_text())
    for entry in cache["AccessToken"].values():
        entry["expires_on"] = entry["extended_expires_on"] = "1"
    account.cache.write_text(json.dumps(cache))


def error_lines(result: Result) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith(("error:", "hint:"))]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ---------------------------------------------------------------------------- odd paths (items 9, 14)


def test_token_cache_naming_a_directory_is_78_and_the_directory_is_not_chmodded(signed_in: Account) -> None:
    folder = signed_in.home / "cachedir"
    folder.mkdir()
    os.chmod(folder, 0o755)  # noqa: S103 - a folder others may list, on purpose
    result = signed_in.run("list", env={"MAILBOT_TOKEN_CACHE": str(folder)})
    assert result.returncode == 78
    assert error_lines(result) == [
        f"error: token cache {folder} is a directory; it was left as it is",
        "hint: point mailbot at a file path",
    ]
    assert mode(folder) == 0o755 and folder.is_dir()
    # /tmp itself: whoami reads the cache without taking its lock (no /tmp.lock is created)
    before = os.stat("/tmp").st_mode
    result = signed_in.run("whoami", env={"MAILBOT_TOKEN_CACHE": "/tmp"})
    assert result.returncode == 78
    assert error_lines(result)[0] == "error: token cache /tmp is a directory; it was left as it is"
    assert os.stat("/tmp").st_mode == before


def test_logout_on_a_directory_is_78_and_renames_nothing(signed_in: Account) -> None:
    folder = signed_in.home / "cachedir"
    (folder / "inside").mkdir(parents=True)
    result = signed_in.run("logout", env={"MAILBOT_TOKEN_CACHE": str(folder)})
    assert result.returncode == 78
    assert error_lines(result)[0] == f"error: token cache {folder} is a directory; it was left as it is"
    assert (folder / "inside").is_dir()
    assert not list(signed_in.home.glob("cachedir.corrupt-*"))


def test_a_symlinked_cache_is_78_and_its_target_is_untouched(signed_in: Account) -> None:
    target = signed_in.home / "elsewhere.json"
    target.write_bytes(signed_in.cache.read_bytes())
    os.chmod(target, 0o644)
    signed_in.cache.unlink()
    signed_in.cache.symlink_to(target)
    result = signed_in.run("list")
    assert result.returncode == 78
    assert error_lines(result) == [
        f"error: cannot open the token cache {signed_in.cache}: it is a symbolic link, which mailbot does not "
        "follow there",
        PATH_HINT,
    ]
    assert mode(target) == 0o644  # not chmodded through the link
    assert signed_in.cache.is_symlink()
    out = signed_in.run("logout")
    assert out.returncode == 78  # not "moved aside": a link is not mailbot's file to rename
    assert signed_in.cache.is_symlink() and not list(signed_in.home.glob("token_cache.json.corrupt-*"))


def test_the_cache_folder_being_a_file_is_78(signed_in: Account) -> None:
    blocker = signed_in.home / "afile"
    blocker.write_text("not a folder")
    result = signed_in.run("list", env={"MAILBOT_TOKEN_CACHE": str(blocker / "token_cache.json")})
    assert result.returncode == 78
    assert error_lines(result) == [
        f"error: cannot create the folder {blocker}: a file is in the way of a folder",
        PATH_HINT,
    ]
    whoami = signed_in.run("whoami", env={"MAILBOT_TOKEN_CACHE": str(blocker / "token_cache.json")})
    assert whoami.returncode == 78
    assert (
        error_lines(whoami)[0] == f"error: cannot open the token cache {blocker / 'token_cache.json'}: Not a directory"
    )
    assert blocker.read_text() == "not a folder"


def test_the_lock_path_being_a_directory_is_78(signed_in: Account) -> None:
    lock = signed_in.cache.with_name(signed_in.cache.name + ".lock")
    lock.unlink(missing_ok=True)
    lock.mkdir()
    expire_access_tokens(signed_in)
    result = signed_in.run("list")
    assert result.returncode == 78
    assert error_lines(result) == [f"error: cannot open the lock file {lock}: Is a directory", PATH_HINT]
    assert lock.is_dir()


def test_the_state_folder_being_a_file_is_78(signed_in: Account) -> None:
    blocker = signed_in.home / "state"
    blocker.write_text("not a folder")
    result = signed_in.run("fetch", "--exec", "true", env={"MAILBOT_STATE_DIR": str(blocker)})
    assert result.returncode == 78
    assert error_lines(result) == [
        f"error: cannot create the folder {blocker}: a file is in the way of a folder",
        PATH_HINT,
    ]
    assert blocker.read_text() == "not a folder"


def test_a_cache_of_the_wrong_shape_is_77_and_untouched(signed_in: Account) -> None:
    signed_in.cache.write_text('{"Account":[1]}')
    result = signed_in.run("list")
    assert result.returncode == 77
    assert error_lines(result) == [
        f"error: the token cache {signed_in.cache} is corrupt ('Account' is not a map of entries); it was left "
        "untouched",
        'hint: inspect it, or run "python mailbot.py logout" to move it aside, then "login"',
    ]
    assert signed_in.cache.read_text() == '{"Account":[1]}'


# ---------------------------------------------------------------------------- full disks (item 10)


def test_a_full_disk_after_a_refresh_is_75_and_keeps_the_old_cache(account: Account, small_disk: SmallDisk) -> None:
    account.env["MAILBOT_TOKEN_CACHE"] = str(small_disk.path / "token_cache.json")
    account.idp.access_token_lifetime = 120  # the next run refreshes, and must save the new tokens
    account.login()
    account.seed(message(1))
    before = account.cache.read_bytes()
    small_disk.fill()
    result = account.run("list")
    assert result.returncode == 75
    assert error_lines(result) == [
        f"error: cannot write the token cache {account.cache}: No space left on device",
        FULL_HINT,
    ]
    assert account.cache.read_bytes() == before
    assert sorted(p.name for p in small_disk.path.iterdir()) == [
        ".filler",
        "token_cache.json",
        "token_cache.json.http-cache",
        "token_cache.json.lock",
    ]  # no temp file left behind
    small_disk.free()
    again = account.run("list")
    assert again.returncode == 0, again.stderr  # the old cache still signs in


def test_a_full_disk_with_a_valid_access_token_still_lists(account: Account, small_disk: SmallDisk) -> None:
    account.env["MAILBOT_TOKEN_CACHE"] = str(small_disk.path / "token_cache.json")
    account.login()  # an access token valid for an hour: nothing needs writing
    account.seed(message(1))
    assert account.run("list").returncode == 0  # the first run after login may tidy the caches
    small_disk.fill()
    account.idp.reset_counts()
    result = account.run("list", "--json")
    assert result.returncode == 0, result.stderr
    assert [e["subject"] for e in json.loads(result.stdout)] == ["message 1"]
    assert account.idp.counts().get("total", 0) == 0


def test_login_on_a_full_disk_is_75_before_any_code_is_shown(account: Account, small_disk: SmallDisk) -> None:
    account.env["MAILBOT_TOKEN_CACHE"] = str(small_disk.path / "token_cache.json")
    account.login()
    before = account.cache.read_bytes()
    small_disk.fill()
    account.idp.reset_counts()
    account.idp.auto_approve(account.address, after_polls=0)
    result = account.run("login")
    assert result.returncode == 75
    assert error_lines(result) == [
        f"error: cannot write the token cache {account.cache}: No space left on device",
        FULL_HINT,
    ]
    assert "enter the code" not in result.stdout + result.stderr
    assert account.idp.counts().get("devicecode", 0) == 0
    assert account.cache.read_bytes() == before


def test_a_full_state_folder_is_75_and_the_message_comes_again(signed_in: Account, small_disk: SmallDisk) -> None:
    env = {"MAILBOT_STATE_DIR": str(small_disk.path)}
    maildir = signed_in.home / "Mail"
    assert signed_in.run("fetch", "--maildir", str(maildir), env=env).returncode == 0
    [state] = small_disk.path.glob("fetch-*.json")
    saved = state.read_bytes()
    signed_in.seed(message(1))
    small_disk.fill()
    result = signed_in.run("fetch", "--maildir", str(maildir), env=env)
    assert result.returncode == 75
    assert error_lines(result) == [f"error: cannot write the fetch state {state}: No space left on device", FULL_HINT]
    assert state.read_bytes() == saved
    assert len(list((maildir / "new").iterdir())) == 1
    small_disk.free()
    again = signed_in.run("fetch", "--maildir", str(maildir), env=env)
    assert again.returncode == 0, again.stderr
    assert len(list((maildir / "new").iterdir())) == 1  # recognised, not written twice


def test_a_full_maildir_is_75_and_nothing_is_half_delivered(signed_in: Account, small_disk: SmallDisk) -> None:
    maildir = small_disk.path / "Mail"
    assert signed_in.run("fetch", "--maildir", str(maildir)).returncode == 0
    signed_in.seed(message(1))
    small_disk.fill()
    result = signed_in.run("fetch", "--maildir", str(maildir))
    assert result.returncode == 75
    assert error_lines(result) == [
        f"error: cannot deliver into the Maildir {maildir}: No space left on device",
        FULL_HINT,
    ]
    assert [p for sub in ("tmp", "new", "cur") for p in (maildir / sub).iterdir()] == []
    small_disk.free()
    again = signed_in.run("fetch", "--maildir", str(maildir))
    assert again.returncode == 0, again.stderr
    assert len(list((maildir / "new").iterdir())) == 1  # the state had not moved past it


def test_a_full_outbox_folder_is_75(signed_in: Account, small_disk: SmallDisk) -> None:
    queue = small_disk.path / "outbox"
    queue.mkdir()
    small_disk.fill()
    result = signed_in.run("send", "--queue", str(queue), "--to", "x@example.org", "--subject", "s", "--body", "b")
    assert result.returncode == 75
    assert error_lines(result) == [f"error: cannot write into the queue {queue}: No space left on device", FULL_HINT]
    assert list(queue.iterdir()) == []


# ---------------------------------------------------------------------------- another user (items 2, 14)


@pytest.fixture
def shared(signed_in: Account, other_user: OtherUser) -> Iterator[Path]:
    """A folder both users can write (not sticky: either may replace the other's entries),
    holding the signed-in account's cache."""
    folder = Path(tempfile.mkdtemp(prefix="mailbot-shared-", dir="/tmp"))
    os.chmod(folder, 0o777)  # noqa: S103 - the shared folder under test
    cache = folder / "token_cache.json"
    cache.write_bytes(signed_in.cache.read_bytes())
    os.chmod(cache, 0o600)
    signed_in.env["MAILBOT_TOKEN_CACHE"] = str(cache)
    yield folder
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if not path.is_dir() or path.is_symlink() else path.rmdir()
    folder.rmdir()


def test_another_user_swapping_the_http_cache_for_a_symlink_is_refused(
    signed_in: Account,
    other_user: OtherUser,
    shared: Path,
) -> None:
    signed_in.seed(message(1))
    expire_access_tokens(signed_in)
    assert signed_in.run("list").returncode == 0  # a refresh through MSAL, which writes its http cache
    http_cache = shared / "token_cache.json.http-cache"
    assert json.loads(http_cache.read_text())["version"] == 1  # JSON, not a pickle
    victim = signed_in.home / "saved-attachment.bin"  # a file the victim owns
    victim.write_bytes(b"\x80\x04K\x01.")  # even a valid pickle is never loaded
    os.chmod(victim, 0o644)
    expire_access_tokens(signed_in)
    other_user.run("ln", "-sfn", str(victim), str(http_cache))  # replaces the victim's file
    result = signed_in.run("list")
    assert result.returncode == 78
    assert error_lines(result) == [
        f"error: cannot open the MSAL http cache {http_cache}: it is a symbolic link, which mailbot does not "
        "follow there",
        PATH_HINT,
    ]
    assert mode(victim) == 0o644 and victim.read_bytes() == b"\x80\x04K\x01."


def test_another_user_swapping_the_cache_for_a_symlink_is_refused(
    signed_in: Account,
    other_user: OtherUser,
    shared: Path,
) -> None:
    cache = shared / "token_cache.json"
    victim = signed_in.home / "mine.json"
    victim.write_bytes(cache.read_bytes())
    os.chmod(victim, 0o644)
    other_user.run("ln", "-sfn", str(victim), str(cache))
    result = signed_in.run("list")
    assert result.returncode == 78
    assert error_lines(result)[0] == (
        f"error: cannot open the token cache {cache}: it is a symbolic link, which mailbot does not follow there"
    )
    assert mode(victim) == 0o644


def test_a_lock_file_precreated_by_another_user_is_refused(
    signed_in: Account,
    other_user: OtherUser,
    shared: Path,
) -> None:
    os.chmod(shared, 0o1777)  # noqa: S103 - sticky, like /tmp: nobody may remove another's files
    lock = shared / "token_cache.json.lock"
    expire_access_tokens(signed_in)
    other_user.run("touch", str(lock))
    result = signed_in.run("list")
    assert result.returncode == 78
    assert error_lines(result) == [
        f"error: lock file {lock} belongs to another user (uid {other_user.uid}); it was not used",
        f'hint: check who created it; "chown {os.getuid()} {lock}" if it is yours',
    ]
    assert lock.stat().st_uid == other_user.uid


def test_a_cache_planted_by_another_user_is_refused(
    signed_in: Account,
    other_user: OtherUser,
    shared: Path,
) -> None:
    cache = shared / "token_cache.json"
    data = cache.read_bytes()
    cache.unlink()
    other_user.run("touch", str(cache))
    os.chmod(cache, 0o600)
    cache.write_bytes(data)  # a valid cache, but the other user's file
    result = signed_in.run("list")
    assert result.returncode == 78
    assert error_lines(result)[0] == (
        f"error: token cache {cache} belongs to another user (uid {other_user.uid}); it was not used"
    )
