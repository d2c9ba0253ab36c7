"""Token cache encryption at rest: key file or key command, AES-GCM, the same lock and
atomic 0600 writes; a wrong or missing key is exit 77 and leaves the file alone."""

from __future__ import annotations

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mailbotcore.signin import encryption
from tests.conftest import Account

MESSAGE = b"From: a@example.com\r\nSubject: hi\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
PASSPHRASE = "correct horse battery staple"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "hint:"))]


def key_file(account: Account, content: str, name: str = "cache.key") -> Path:
    path = account.home / name
    path.write_text(content + "\n")
    path.chmod(0o600)
    return path


def assert_encrypted_without_tokens(account: Account) -> bytes:
    data = account.cache.read_bytes()
    assert data.startswith(encryption.MAGIC)
    with pytest.raises(ValueError):
        json.loads(data)
    for token in [t.token for t in account.idp.access_tokens] + [r.token for r in account.idp.refresh_tokens]:
        assert token.encode() not in data
        assert token.encode()[:24] not in data
    assert account.address.encode() not in data
    assert oct(account.cache.stat().st_mode & 0o777) == "0o600"
    return data


def test_login_writes_an_encrypted_cache_that_works_silently(account: Account) -> None:
    account.env["MAILBOT_CACHE_KEY_FILE"] = str(key_file(account, PASSPHRASE))
    account.login()
    data = assert_encrypted_without_tokens(account)
    plain = json.loads(encryption.decrypt(data, PASSPHRASE.encode() + b"\n"))
    assert [a["username"] for a in plain["Account"].values()] == [account.address]
    account.seed(MESSAGE)
    account.idp.reset_counts()
    listed = account.run("list")
    assert listed.returncode == 0, listed.stderr
    assert account.idp.counts().get("total", 0) == 0
    assert "(encrypted)" in account.run("whoami").stdout
    assert json.loads(account.run("whoami", "--json").stdout)["cache_encrypted"] is True


def test_plain_cache_is_encrypted_at_its_next_save(signed_in: Account) -> None:
    assert json.loads(signed_in.cache.read_text())  # plain JSON while no key is configured
    assert "(plain JSON)" in signed_in.run("whoami").stdout
    raw_key = base64.b64encode(os.urandom(32)).decode()  # openssl rand -base64 32
    signed_in.env["MAILBOT_CACHE_KEY_COMMAND"] = f"cat {key_file(signed_in, raw_key)}"
    cache = json.loads(signed_in.cache.read_text())
    for entry in cache["AccessToken"].values():
        entry["expires_on"] = "1"  # the next run must refresh, and so save
    signed_in.cache.write_text(json.dumps(cache))
    result = signed_in.run("list")
    assert result.returncode == 0, result.stderr
    data = assert_encrypted_without_tokens(signed_in)
    assert data[len(encryption.MAGIC) : len(encryption.MAGIC) + 2] == bytes([1, encryption.KDF_RAW])
    assert signed_in.run("list").returncode == 0


def test_wrong_or_missing_key_exits_77_and_leaves_the_file_alone(account: Account) -> None:
    account.env["MAILBOT_CACHE_KEY_FILE"] = str(key_file(account, PASSPHRASE))
    account.login()
    before = account.cache.read_bytes()
    wrong = key_file(account, "not the passphrase", "wrong.key")
    result = account.run("list", env={"MAILBOT_CACHE_KEY_FILE": str(wrong)})
    assert result.returncode == 77
    assert result.stderr.splitlines() == [
        f"error: cannot decrypt the token cache {account.cache} with MAILBOT_CACHE_KEY_FILE {wrong}: "
        "wrong key, or the file was damaged; it was left untouched"
    ]
    assert account.cache.read_bytes() == before
    del account.env["MAILBOT_CACHE_KEY_FILE"]
    result = account.run("list")
    assert result.returncode == 77
    assert error_lines(result.stderr) == [
        f"error: the token cache {account.cache} is encrypted, but no key is configured; it was left untouched",
        "hint: set MAILBOT_CACHE_KEY_FILE or MAILBOT_CACHE_KEY_COMMAND to the key it was encrypted with",
    ]
    assert account.cache.read_bytes() == before
    failing = account.run("list", env={"MAILBOT_CACHE_KEY_COMMAND": "echo no keyring here >&2; exit 3"})
    assert failing.returncode == 77
    assert failing.stderr.splitlines() == ["error: MAILBOT_CACHE_KEY_COMMAND failed (exit 3): no keyring here"]
    assert account.cache.read_bytes() == before


def test_key_command_that_hangs_times_out(account: Account) -> None:
    account.env["MAILBOT_CACHE_KEY_FILE"] = str(key_file(account, PASSPHRASE))
    account.login()
    del account.env["MAILBOT_CACHE_KEY_FILE"]
    result = account.run("list", env={"MAILBOT_CACHE_KEY_COMMAND": "sleep 30", "MAILBOT_TIMEOUT": "1"}, timeout=20)
    assert result.returncode == 75
    assert error_lines(result.stderr) == [
        "error: MAILBOT_CACHE_KEY_COMMAND did not print a key within 1 s",
        "hint: a keyring that waits for a desktop session never answers under cron; use MAILBOT_CACHE_KEY_FILE",
    ]


def test_concurrent_refreshes_on_an_encrypted_cache(account: Account) -> None:
    account.env["MAILBOT_CACHE_KEY_FILE"] = str(key_file(account, PASSPHRASE))
    account.idp.access_token_lifetime = 120  # every run refreshes
    account.idp.reject_reused_refresh_tokens = True
    account.login()
    account.seed(MESSAGE)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: account.run("list", "--json"), range(6)))
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results if r.returncode]
    assert account.idp.counts().get("token:refresh_token", 0) >= 1
    assert_encrypted_without_tokens(account)
    assert account.run("list").returncode == 0
