"""Sign-in and the token cache, against the identity stand-in with real MSAL and real servers."""

from __future__ import annotations

import json
import os
import pty
import random
import re
import select
import signal
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import MAILBOT, Account

MESSAGE = b"From: a@example.com\r\nSubject: hi\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "hint:"))]


def test_login_after_pending_polls_saves_private_cache(account: Account) -> None:
    account.idp.interval = 0  # MSAL polls at once; the stand-in paces pending answers
    account.idp.auto_approve(account.address, after_polls=3)
    result = account.run("login")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert re.search(r"open https://\S+ in any browser and enter the code [A-Z0-9-]{6,}", result.stderr)
    assert "expires in 15 minutes" in result.stderr
    assert account.idp.counts().get("token:device_code", 0) == 4  # 3 pending + the approved one
    assert stat.S_IMODE(account.cache.stat().st_mode) == 0o600
    cache = json.loads(account.cache.read_text())
    assert [a["username"] for a in cache["Account"].values()] == [account.address]


def test_slow_down_is_honoured(account: Account) -> None:
    account.idp.interval = 0
    account.idp.slow_down_next(1)
    account.idp.auto_approve(account.address, after_polls=0)
    started = time.monotonic()
    result = account.run("login")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 5  # MSAL adds 5 s to the interval after slow_down
    assert account.idp.counts().get("token:device_code", 0) == 2


@pytest.mark.parametrize(
    ("rule", "expected"),
    [("auto_expire", "expired_token"), ("auto_deny", "declined")],
)
def test_expired_or_declined_device_code_is_77(account: Account, rule: str, expected: str) -> None:
    account.idp.interval = 0
    getattr(account.idp, rule)(after_polls=1)
    result = account.run("login")
    assert result.returncode == 77
    lines = error_lines(result.stderr)
    assert lines[0].startswith(f"error: sign-in for {account.address} failed")
    assert lines[1].startswith("hint: ")
    assert not account.cache.exists()


@pytest.mark.parametrize(
    ("code", "endpoint", "hint_part"),
    [
        (9002331, "devicecode", "/consumers"),
        (65001, "token:device_code", "administrator must grant"),
        (7000218, "token:device_code", "Allow public client flows"),
        (53003, "token:device_code", "Conditional Access"),
    ],
)
def test_entra_errors_get_hints(account: Account, code: int, endpoint: str, hint_part: str) -> None:
    account.idp.interval = 0
    account.idp.error_next(endpoint, code)
    result = account.run("login")
    assert result.returncode == 77, result.stderr
    lines = error_lines(result.stderr)
    assert f"AADSTS{code}" in lines[0]
    assert hint_part in lines[1]


def test_second_run_makes_no_identity_requests(signed_in: Account) -> None:
    signed_in.seed(MESSAGE)
    assert signed_in.run("list").returncode == 0  # the first run after login may tidy the caches
    http_cache = signed_in.cache.with_name(signed_in.cache.name + ".http-cache")
    before = (signed_in.cache.stat().st_mtime_ns, http_cache.stat().st_mtime_ns)
    for _ in range(2):
        result = signed_in.run("list")
        assert result.returncode == 0, result.stderr
    assert signed_in.idp.counts().get("total", 0) == 0
    # nothing changed, so nothing was rewritten (no needless fsyncs in every cron run)
    assert (signed_in.cache.stat().st_mtime_ns, http_cache.stat().st_mtime_ns) == before


def test_refresh_saves_the_rotated_refresh_token(account: Account) -> None:
    account.idp.access_token_lifetime = 120  # MSAL refreshes tokens with < 5 minutes left
    account.idp.reject_reused_refresh_tokens = True
    account.login()
    first_rt = account.idp.current_refresh_token(account.address)
    account.idp.reset_counts()
    for run in range(3):
        result = account.run("list")
        assert result.returncode == 0, f"run {run}: {result.stderr}"
    assert account.idp.counts().get("token:refresh_token", 0) == 3
    assert account.idp.counts().get("devicecode", 0) == 0
    current = account.idp.current_refresh_token(account.address)
    assert current != first_rt
    assert current in account.cache.read_text()  # the rotated one is on disk, not only the old one
    assert first_rt not in account.cache.read_text()


def test_not_signed_in_in_cron_exits_77_at_once(account: Account) -> None:
    started = time.monotonic()
    result = account.run("list")
    assert result.returncode == 77
    assert error_lines(result.stderr) == [
        f"error: sign-in required for {account.address}",
        'hint: run "python mailbot.py login" in a terminal',
    ]
    assert time.monotonic() - started < 5
    assert account.idp.counts().get("total", 0) == 0


def test_revoked_refresh_token_in_cron_is_77_fast_without_device_code(account: Account) -> None:
    account.idp.access_token_lifetime = 120
    account.login()
    account.idp.revoke(account.address)
    account.idp.reset_counts()
    started = time.monotonic()
    result = account.run("list")
    assert result.returncode == 77
    assert time.monotonic() - started < 5
    assert error_lines(result.stderr)[0].startswith(f"error: sign-in required for {account.address}: AADSTS50173")
    assert account.idp.counts().get("devicecode", 0) == 0


@pytest.mark.parametrize("fault", ["fail", "hang"])
def test_identity_platform_trouble_while_refreshing_is_temporary(account: Account, fault: str) -> None:
    account.idp.access_token_lifetime = 120
    account.login()
    if fault == "fail":
        account.idp.fail_next("token:refresh_token", count=2, status=503, retry_after=0)
    else:
        account.idp.hang_next("token:refresh_token", seconds=10, count=2)
    result = account.run("list", env={"MAILBOT_TIMEOUT": "2"})
    assert result.returncode == 75, result.stderr
    assert error_lines(result.stderr)[0].startswith("error: identity platform localhost")
    # the refresh token is still there for the next run
    account.idp.clear_faults()
    assert account.run("list").returncode == 0


def test_cache_mode_is_tightened(signed_in: Account) -> None:
    os.chmod(signed_in.cache, 0o644)
    result = signed_in.run("list")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(signed_in.cache.stat().st_mode) == 0o600
    assert "tightened to 600" in result.stderr


def test_corrupt_cache_is_77_and_left_untouched(signed_in: Account) -> None:
    damaged = signed_in.cache.read_bytes()[:100]
    signed_in.cache.write_bytes(damaged)
    result = signed_in.run("list")
    assert result.returncode == 77
    assert "is corrupt" in error_lines(result.stderr)[0]
    assert signed_in.cache.read_bytes() == damaged
    # logout moves it aside explicitly; nothing is deleted
    out = signed_in.run("logout")
    assert out.returncode == 0
    aside = list(signed_in.cache.parent.glob("token_cache.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged


def test_concurrent_refreshes_all_succeed(account: Account) -> None:
    account.idp.access_token_lifetime = 120
    account.idp.reject_reused_refresh_tokens = True
    account.login()
    account.seed(MESSAGE)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: account.run("list", "--json"), range(8)))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results if r.returncode]
    json.loads(account.cache.read_text())
    # every run refreshed under the lock, each with the token the previous one saved
    assert account.idp.counts().get("token:refresh_token", 0) >= 1
    assert account.run("list").returncode == 0


def test_kill_9_while_saving_leaves_a_loadable_cache(account: Account) -> None:
    account.idp.access_token_lifetime = 120
    account.login()
    rng = random.Random(7)
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(MAILBOT), "list"],
            cwd=account.home,
            env=account.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.2, 0.9))
        proc.kill()
        proc.wait()
        state = json.loads(account.cache.read_text())
        assert state["RefreshToken"]
    result = account.run("list")
    assert result.returncode == 0, result.stderr


def test_tokens_never_appear_in_verbose_output(account: Account) -> None:
    account.idp.access_token_lifetime = 120  # every run refreshes: refresh tokens go over the wire too
    account.idp.auto_approve(account.address)
    account.seed(MESSAGE)
    outputs = []
    for args in (
        ["-vv", "login"],
        ["-vv", "list"],
        ["-vv", "send", "--to", account.address, "--subject", "s", "--body", "b"],
        ["-vv", "fetch", "--maildir", "Mail", "--backfill", "1"],
        ["-vv", "doctor"],
    ):
        result = account.run(*args)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert "imap" in text and "smtp" in text and "token_endpoint" in text  # protocol and HTTP debugging were on
    secrets = [t.token for t in account.idp.access_tokens] + [t.token for t in account.idp.refresh_tokens]
    assert secrets
    for secret in secrets:
        assert secret not in text
        assert secret[:40] not in text


def test_rejected_token_is_refreshed_once_and_retried(account: Account) -> None:
    account.seed(MESSAGE)
    account.idp.poison_next_access_tokens(1)  # the token login caches is one Dovecot refuses
    account.login()
    account.idp.reset_counts()
    result = account.run("list", "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 1
    assert account.idp.counts().get("token:refresh_token", 0) == 1
    # the good token was saved: the next run needs no identity request at all
    account.idp.reset_counts()
    assert account.run("list").returncode == 0
    assert account.idp.counts().get("total", 0) == 0


def test_rejected_twice_is_77_with_hint(account: Account) -> None:
    account.idp.poison_next_access_tokens(2)
    account.login()
    result = account.run("list")
    assert result.returncode == 77
    lines = error_lines(result.stderr)
    assert "refused the sign-in" in lines[0]
    assert "IMAP is switched on" in lines[1]
    assert account.idp.counts().get("token:refresh_token", 0) == 1


def test_whoami_and_logout_keep_other_accounts(account: Account, servers, idp, tmp_path: Path) -> None:
    account.login()
    other = f"other{os.getpid()}@example.com"
    servers.add_user(other)
    idp.auto_approve(other)
    assert account.run("login", env={"OUTLOOK_USERNAME": other}).returncode == 0
    who = account.run("whoami", "--json")
    assert who.returncode == 0
    info = json.loads(who.stdout)
    assert info["username"] == account.address
    assert info["refresh_token"] is True
    idp.reset_counts()
    assert account.run("logout").returncode == 0
    assert idp.counts().get("total", 0) == 0
    assert account.run("whoami").returncode == 77
    assert account.run("whoami", env={"OUTLOOK_USERNAME": other}).returncode == 0
    usernames = [a["username"] for a in json.loads(account.cache.read_text())["Account"].values()]
    assert usernames == [other]


def _run_with_terminal(account: Account, args: list[str], on_prompt, timeout: float = 30) -> tuple[int, str]:
    """Run mailbot with stdin and stderr on a pseudo-terminal, as a person at a terminal would."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(MAILBOT), *args],
        cwd=account.home,
        env=account.env,
        stdin=follower,
        stderr=follower,
        stdout=subprocess.PIPE,
    )
    os.close(follower)
    seen = b""
    prompted = False
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                seen += os.read(leader, 4096)
            except OSError:
                break
        if not prompted and b"enter the code" in seen:
            prompted = True
            on_prompt(proc)
    proc.wait(timeout=10)
    os.close(leader)
    assert proc.stdout is not None
    return proc.returncode, seen.decode("utf-8", "replace") + proc.stdout.read().decode()


def test_a_person_at_a_terminal_is_asked_to_sign_in(account: Account) -> None:
    account.seed(MESSAGE)
    code, output = _run_with_terminal(account, ["list"], lambda proc: account.idp.approve(account.address))
    assert code == 0, output
    assert "enter the code" in output
    assert "hi" in output  # the listing ran after signing in


def test_ctrl_c_during_login_is_130(account: Account) -> None:
    code, output = _run_with_terminal(account, ["login"], lambda proc: proc.send_signal(signal.SIGINT))
    assert code == 130, output
    assert "Traceback" not in output
