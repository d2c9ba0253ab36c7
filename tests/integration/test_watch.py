"""``watch``: fetch as a service woken by IMAP IDLE, against real Dovecot (and a TLS front that
plays the hostile parts: no IDLE, a silent DONE, Exchange's BYE when the token expires)."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import Account
from tests.integration.test_fetch import HANDLER, handled_uids, message, subjects


@pytest.fixture
def handler(signed_in: Account) -> Path:
    logdir = signed_in.home / "handled"
    logdir.mkdir()
    script = signed_in.home / "handler.sh"
    script.write_text(HANDLER)
    script.chmod(0o755)
    signed_in.env["LOGDIR"] = str(logdir)
    return logdir


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop(proc: subprocess.Popen[str], timeout: float = 5.0) -> tuple[int, str, str, float]:
    """SIGTERM, and how long the exit took."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("watch did not exit after SIGTERM") from None
    took = time.monotonic() - started
    out = proc.stdout.read() if proc.stdout else ""
    thread = getattr(proc, "reader_thread", None)
    if thread is not None:
        thread.join(5)
    return proc.returncode, out, "", took


def state(account: Account) -> dict[str, object]:
    files = list(account.home.rglob("fetch-*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def start_watch(account: Account, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start watch and wait until it idles (its first 'watching' line on stderr)."""
    proc = account.start("watch", *args, env=env)
    return proc


def watching(proc: subprocess.Popen[str], lines: list[str], count: int = 1, timeout: float = 10.0) -> None:
    """Read stderr lines until ``count`` 'watching' lines were seen (a thread keeps reading)."""
    wait_until(lambda: sum(line.startswith("watching ") for line in lines) >= count, timeout, "watch to be ready")


def reader(proc: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []

    def run() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    proc.reader_thread = thread  # type: ignore[attr-defined]
    return lines


def test_new_mail_reaches_maildir_and_handler_once_each_in_order_within_seconds(
    signed_in: Account, handler: Path
) -> None:
    maildir = signed_in.home / "Mail"
    signed_in.seed(message(0))  # old mail: left alone, as by fetch
    proc = signed_in.start("watch", "--maildir", str(maildir), "--exec", "./handler.sh", "--json")
    err = reader(proc)
    watching(proc, err)
    assert handled_uids(handler) == []
    latencies = []
    for n in range(1, 6):
        sent = time.monotonic()
        signed_in.seed(message(n))
        wait_until(lambda n=n: len(handled_uids(handler)) == n, 5, f"message {n}")
        latencies.append(time.monotonic() - sent)
    for n in range(6, 9):  # a burst
        signed_in.seed(message(n))
    wait_until(lambda: len(handled_uids(handler)) == 8, 5, "the burst")
    code, out, _, took = stop(proc)
    assert code == 0, "\n".join(err)
    assert took < 5
    uids = handled_uids(handler)
    assert uids == sorted(uids) and len(set(uids)) == 8
    assert subjects(maildir) == sorted(f"message {n}" for n in range(1, 9))
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["uid"] for r in records] == uids
    assert state(signed_in)["last_uid"] == uids[-1]
    assert max(latencies) < 2.5, latencies  # Dovecot tells IDLE clients 0.5 s after a change
    assert any("first fetch of 'INBOX'" in line for line in err)
    # one session, IDLE used (not polling)
    commands = signed_in.servers.imap_commands(signed_in.address)
    idles = sum(c.split()[1:2] == ["IDLE"] for c in commands)
    assert idles >= 6 and commands.count("DONE") == idles
    assert len(list((signed_in.servers.home(signed_in.address) / "rawlog").glob("*.in"))) == 1
    print("\n".join(err))
    assert any(c.endswith(" LOGOUT") for c in commands)
    # a fetch afterwards finds nothing new: no duplicate; a message arriving now is fetch's
    signed_in.seed(message(9))
    after = signed_in.run("fetch", "--exec", "./handler.sh", "--json")
    assert after.returncode == 0, after.stderr
    assert [json.loads(line)["subject"] for line in after.stdout.splitlines()] == ["message 9"]


def test_sigterm_mid_batch_exits_0_within_5_s_with_state_saved(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0  # starting point
    proc = signed_in.start("watch", "--exec", "./handler.sh", env={"HANDLER_SLEEP": "0.3"})
    err = reader(proc)
    watching(proc, err)
    for n in range(10):
        signed_in.seed(message(n))
    wait_until(lambda: len(handled_uids(handler)) >= 2, 10, "two handled")
    code, _, _, took = stop(proc)
    assert code == 0, "\n".join(err)
    assert took < 5
    done = handled_uids(handler)
    assert 2 <= len(done) < 10
    assert state(signed_in)["last_uid"] == done[-1]  # the message in flight was finished, then saved
    assert err[-1].startswith("stopped watching 'INBOX'")
    rest = signed_in.run("fetch", "--exec", "./handler.sh")
    assert rest.returncode == 0, rest.stderr
    uids = handled_uids(handler)
    assert len(uids) == 10 == len(set(uids))  # nothing twice, nothing skipped
