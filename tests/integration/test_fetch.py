"""``fetch``: every new message processed once, into a Maildir or a command, against real Dovecot."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

from tests.conftest import Account


def message(n: int, size: int = 0) -> bytes:
    padding = b"x" * 76 + b"\r\n"
    body = padding * (size // len(padding)) if size else f"body {n}\r\n".encode()
    return (
        f"From: Sender {n} <s{n}@example.org>\r\nTo: t@example.com\r\nSubject: message {n}\r\n"
        f"Message-ID: <m{n}@example.org>\r\nDate: Fri, 27 Nov 2026 10:{n % 60:02d}:00 +0000\r\n\r\n"
    ).encode() + body


def local(raw: bytes) -> bytes:
    """What a Maildir holds (and --exec gets): LF line endings."""
    return raw.replace(b"\r\n", b"\n")


def maildir_messages(maildir: Path) -> list[bytes]:
    files = sorted((maildir / "new").iterdir()) if (maildir / "new").is_dir() else []
    return [f.read_bytes() for f in files]


def subjects(maildir: Path) -> list[str]:
    return sorted(
        line.split(": ", 1)[1]
        for raw in maildir_messages(maildir)
        for line in raw.decode().splitlines()
        if line.startswith("Subject: ")
    )


def handled_uids(logdir: Path) -> list[int]:
    log = logdir / "log"
    return [int(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []


def test_first_run_takes_nothing_old_then_each_new_message_once(signed_in: Account) -> None:
    maildir = signed_in.home / "Mail"
    for n in range(3):
        signed_in.seed(message(n))
    first = signed_in.run("fetch", "--maildir", str(maildir))
    assert first.returncode == 0, first.stderr
    assert "existing messages left alone" in first.stderr
    assert maildir_messages(maildir) == []

    signed_in.seed(message(10))
    signed_in.seed(message(11))
    second = signed_in.run("fetch", "--maildir", str(maildir), "--json")
    assert second.returncode == 0, second.stderr
    records = [json.loads(line) for line in second.stdout.splitlines()]
    assert [r["subject"] for r in records] == ["message 10", "message 11"]
    assert records[0]["from"] == "Sender 10" and records[0]["folder"] == "INBOX"
    assert sorted(maildir_messages(maildir)) == sorted([local(message(10)), local(message(11))])  # byte for byte
    assert all(Path(r["path"]).parent == maildir / "new" for r in records)

    signed_in.seed(message(12))
    third = signed_in.run("fetch", "--maildir", str(maildir))
    assert third.returncode == 0
    assert subjects(maildir) == ["message 10", "message 11", "message 12"]
    fourth = signed_in.run("fetch", "--maildir", str(maildir), "--json")
    assert fourth.stdout == ""
    assert len(maildir_messages(maildir)) == 3
    # flags untouched without --mark-seen: nothing became \\Seen on the server
    assert not any(p.name.endswith("S") for p in signed_in.servers.messages(signed_in.address))


def test_backfill_processes_the_newest_n_first(signed_in: Account) -> None:
    maildir = signed_in.home / "Mail"
    for n in range(5):
        signed_in.seed(message(n))
    result = signed_in.run("fetch", "--maildir", str(maildir), "--backfill", "2")
    assert result.returncode == 0, result.stderr
    assert subjects(maildir) == ["message 3", "message 4"]
    signed_in.seed(message(5))
    assert signed_in.run("fetch", "--maildir", str(maildir)).returncode == 0
    assert subjects(maildir) == ["message 3", "message 4", "message 5"]


def test_handler_failure_stops_at_that_message_and_is_retried(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0  # starting point
    for n in range(5):
        signed_in.seed(message(n))
    first = signed_in.run("fetch", "--exec", "./handler.sh", "--json")
    assert first.returncode == 0, first.stderr
    uids = handled_uids(handler)
    assert len(uids) == 5
    # new batch; the third one fails
    for n in range(5, 10):
        signed_in.seed(message(n))
    (handler / "log").unlink()
    third_uid = uids[-1] + 3
    (handler / f"fail-{third_uid}").touch()
    failed = signed_in.run("fetch", "--exec", "./handler.sh", "--json")
    assert failed.returncode == 75
    assert f"handler for UID {third_uid} exited with status 3" in failed.stderr
    assert [json.loads(line)["uid"] for line in failed.stdout.splitlines()] == [third_uid - 2, third_uid - 1]
    assert handled_uids(handler) == [third_uid - 2, third_uid - 1, third_uid]
    (handler / f"fail-{third_uid}").unlink()
    (handler / "log").unlink()
    retry = signed_in.run("fetch", "--exec", "./handler.sh")
    assert retry.returncode == 0, retry.stderr
    assert handled_uids(handler) == [third_uid, third_uid + 1, third_uid + 2]
    assert (handler / f"{third_uid}.eml").read_bytes() == local(message(7))


def test_handler_timeout_is_75_and_kills_it(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    signed_in.seed(message(1))
    started = time.monotonic()
    result = signed_in.run("fetch", "--exec", "./handler.sh", "--exec-timeout", "1", env={"HANDLER_SLEEP": "30"})
    assert result.returncode == 75
    assert time.monotonic() - started < 15
    assert "did not finish within 1 s" in result.stderr


def test_kill_9_mid_batch_loses_nothing(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    for n in range(30):
        signed_in.seed(message(n))
    proc = signed_in.start("fetch", "--exec", "./handler.sh", env={"HANDLER_SLEEP": "0.05"}, output=False)
    deadline = time.monotonic() + 20
    while len(handled_uids(handler)) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    before = handled_uids(handler)
    assert 8 <= len(before) < 30, "the kill should land mid-batch"
    result = signed_in.run("fetch", "--exec", "./handler.sh")
    assert result.returncode == 0, result.stderr
    uids = handled_uids(handler)
    assert len(set(uids)) == 30  # nothing skipped
    assert len(uids) - 30 <= 1  # at most the one in flight twice


def test_uidvalidity_change_continues_after_last_arrival(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    maildir = signed_in.home / "Mail"
    old = time.time() - 3600
    servers.seed(address, message(1), folder="Work", internaldate=old)
    assert signed_in.run("fetch", "--folder", "Work", "--maildir", str(maildir)).returncode == 0
    servers.seed(address, message(2), folder="Work", internaldate=old + 60)
    assert signed_in.run("fetch", "--folder", "Work", "--maildir", str(maildir)).returncode == 0
    assert subjects(maildir) == ["message 2"]
    # The folder is recreated (new UIDVALIDITY): old messages come back with new UIDs.
    folder = servers.folder_dir(address, "Work")
    shutil.rmtree(folder)
    time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
    owner = folder.parent.stat()
    for sub in ("", "cur", "new", "tmp"):
        (folder / sub).mkdir()
        os.chown(folder / sub, owner.st_uid, owner.st_gid)
    servers.seed(address, message(1), folder="Work", internaldate=old)
    servers.seed(address, message(2), folder="Work", internaldate=old + 60)
    servers.seed(address, message(3), folder="Work", internaldate=old + 120)
    result = signed_in.run("fetch", "--folder", "Work", "--maildir", str(maildir))
    assert result.returncode == 0, result.stderr
    assert "UIDVALIDITY of 'Work' changed" in result.stderr
    assert subjects(maildir) == ["message 2", "message 3"]


def test_mark_seen_and_move_to(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    maildir = signed_in.home / "Mail"
    servers.seed(address, message(0), folder="Archive")  # the target folder exists
    assert signed_in.run("fetch", "--maildir", str(maildir)).returncode == 0
    signed_in.seed(message(1))
    result = signed_in.run("fetch", "--maildir", str(maildir), "--mark-seen")
    assert result.returncode == 0, result.stderr
    inbox = servers.messages(address)
    assert len(inbox) == 1 and inbox[0].name.split(":2,")[1] == "S"
    signed_in.seed(message(2))
    servers.clear_imap_commands(address)
    result = signed_in.run("fetch", "--maildir", str(maildir), "--move-to", "Archive")
    assert result.returncode == 0, result.stderr
    commands = servers.imap_commands(address)
    assert any(" UID MOVE " in line for line in commands), commands  # Dovecot offers MOVE after login
    assert not any(" EXPUNGE" in line for line in commands)
    assert len(servers.messages(address)) == 1  # message 2 left the inbox
    # Dovecot stores a moved message with bare LF line ends
    archived = [p.read_bytes().replace(b"\r\n", b"\n") for p in servers.messages(address, "Archive")]
    assert message(2).replace(b"\r\n", b"\n") in archived
    assert subjects(maildir) == ["message 1", "message 2"]


def test_overlapping_fetches_one_exits_75(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    for n in range(3):
        signed_in.seed(message(n))
    slow = signed_in.start("fetch", "--exec", "./handler.sh", env={"HANDLER_SLEEP": "1"})
    deadline = time.monotonic() + 20
    while not handled_uids(handler) and time.monotonic() < deadline:
        time.sleep(0.02)
    second = signed_in.run("fetch", "--exec", "./handler.sh")
    assert second.returncode == 75
    assert "another fetch is running" in second.stderr
    assert slow.wait(timeout=30) == 0
    assert len(handled_uids(handler)) == 3  # nothing twice
    waited = signed_in.run("fetch", "--exec", "./handler.sh", "--wait", "5")
    assert waited.returncode == 0


def peak_rss_of_fetch(account: Account, maildir: Path) -> int:
    proc = account.start("fetch", "--maildir", str(maildir), output=False)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss * 1024


def test_large_message_is_fetched_with_bounded_memory(signed_in: Account) -> None:
    maildir = signed_in.home / "Mail"
    assert signed_in.run("fetch", "--maildir", str(maildir)).returncode == 0
    signed_in.seed(message(0))
    baseline = peak_rss_of_fetch(signed_in, maildir)
    big = message(1, size=30 * 1024 * 1024)
    signed_in.seed(big)
    peak = peak_rss_of_fetch(signed_in, maildir)
    assert local(big) in maildir_messages(maildir)
    grown = peak - baseline
    assert grown < 3 * len(big), f"{grown / 1e6:.0f} MB more for a {len(big) / 1e6:.0f} MB message"
    print(f"baseline {baseline / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB, message {len(big) / 1e6:.0f} MB")


def test_fetch_needs_a_destination(signed_in: Account) -> None:
    result = signed_in.run("fetch")
    assert result.returncode == 64
    assert "--maildir DIR and/or --exec CMD" in result.stderr


def test_each_folder_and_account_has_its_own_state(signed_in: Account, handler: Path) -> None:
    servers, address = signed_in.servers, signed_in.address
    servers.seed(address, message(1), folder="Work")
    for folder in ("INBOX", "Work"):
        assert signed_in.run("fetch", "--folder", folder, "--exec", "./handler.sh").returncode == 0
    signed_in.seed(message(2))
    servers.seed(address, message(3), folder="Work")
    for folder in ("INBOX", "Work"):
        result = signed_in.run("fetch", "--folder", folder, "--exec", "./handler.sh", "--json")
        assert result.returncode == 0, result.stderr
        assert [json.loads(line)["subject"] for line in result.stdout.splitlines()] == [
            "message 2" if folder == "INBOX" else "message 3"
        ]
    states = sorted(p.name for p in signed_in.home.glob("fetch-*.json"))
    assert len(states) == 2, states
    assert all(address.split("@")[0] in name for name in states)


ENV_HANDLER = """\
import json, os, sys
uid = os.environ["MAILBOT_UID"]
logdir = os.environ["LOGDIR"]
with open(os.path.join(logdir, uid + ".eml"), "wb") as out:
    out.write(sys.stdin.buffer.read())
env = {k: v for k, v in os.environ.items() if k.startswith("MAILBOT_")}
with open(os.path.join(logdir, uid + ".env.json"), "w", encoding="utf-8") as out:
    json.dump(env, out, ensure_ascii=False)
"""

UNSAFE = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069") | {
    chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]
}


def test_every_corpus_message_is_fetched_as_json_and_through_exec(signed_in: Account) -> None:
    """Hostile charsets, surrogates and bidi controls: fetch --json and --exec deliver all of them."""
    from tests.support.corpus import malformed_corpus

    corpus = malformed_corpus()
    for _, raw in corpus:
        signed_in.seed(raw)
    logdir = signed_in.home / "handled"
    logdir.mkdir()
    script = signed_in.home / "env_handler.py"
    script.write_text(ENV_HANDLER)
    signed_in.env["LOGDIR"] = str(logdir)
    maildir = signed_in.home / "Mail"
    result = signed_in.run(
        "fetch", "--backfill", str(len(corpus)), "--json", "--maildir", str(maildir), "--exec", f"python3 {script}"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    result.stdout_bytes.decode("utf-8")  # strict: no surrogate reached stdout
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["uid"] for r in records] == list(range(1, len(corpus) + 1))
    assert [r["exit_status"] for r in records] == [0] * len(corpus)
    by_name = {name: records[uid - 1] for uid, (name, _) in enumerate(corpus, 1)}
    assert by_name["unicode_escape_charset_subject"]["subject"] == "\\ud800 x"
    assert by_name["bidi_override_subject"]["subject"] == "invoicefdp.exe"
    assert (by_name["bidi_display_name"]["from"], by_name["bidi_display_name"]["from_address"]) == (
        "Bank moc.evil",
        "phish@example.net",
    )
    for record in records:
        for key in ("subject", "from", "from_address", "message_id"):
            assert not set(record[key] or "") & UNSAFE, (record["uid"], key, record[key])
    for uid, (name, raw) in enumerate(corpus, 1):
        env = json.loads((logdir / f"{uid}.env.json").read_text(encoding="utf-8"))
        assert env["MAILBOT_UID"] == str(uid)
        assert env["MAILBOT_SUBJECT"] == records[uid - 1]["subject"], name
        for key in ("MAILBOT_SUBJECT", "MAILBOT_FROM", "MAILBOT_FROM_ADDRESS"):
            assert not set(env[key]) & UNSAFE, (name, key, env[key])
        handed = (logdir / f"{uid}.eml").read_bytes()
        [stored] = [p for p in (maildir / "new").iterdir() if f".M{uid}V" in p.name]
        # The handler gets the Maildir's bytes: LF line endings (Dovecot serves a NUL as 0x80).
        served = re.sub(rb"\r?\n", b"\n", raw.replace(b"\x00", b"\x80"))
        assert handed == stored.read_bytes() == served, name


def test_maildir_files_are_lf_and_0600_in_an_open_maildir_and_exec_gets_the_same_bytes(
    signed_in: Account, handler: Path
) -> None:
    maildir = signed_in.home / "Mail"
    for sub in ("", "cur", "new", "tmp"):
        (maildir / sub).mkdir(mode=0o755)
        os.chmod(maildir / sub, 0o755)  # noqa: S103 - an existing Maildir others may list
    assert signed_in.run("fetch", "--maildir", str(maildir)).returncode == 0
    signed_in.seed(message(1))
    old_umask = os.umask(0)  # the child inherits it: 0600 must not depend on the umask
    try:
        result = signed_in.run("fetch", "--maildir", str(maildir), "--exec", "./handler.sh")
    finally:
        os.umask(old_umask)
    assert result.returncode == 0, result.stderr
    [stored] = list((maildir / "new").iterdir())
    assert stored.read_bytes() == local(message(1))
    assert b"\r" not in stored.read_bytes()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    [uid] = handled_uids(handler)
    assert (handler / f"{uid}.eml").read_bytes() == stored.read_bytes()


def _rewind_state(account: Account, uid: int) -> None:
    """What a crash after delivery and before the state save leaves: the state one message back."""
    [state_path] = account.home.glob("fetch-*.json")
    state = json.loads(state_path.read_text())
    state["last_uid"] = uid - 1
    state_path.write_text(json.dumps(state))


@pytest.mark.parametrize("where", ["new", "cur"])
def test_a_redelivery_after_a_crash_is_recognised_in_new_and_in_cur_with_flags(signed_in: Account, where: str) -> None:
    maildir = signed_in.home / "Mail"
    assert signed_in.run("fetch", "--maildir", str(maildir)).returncode == 0
    signed_in.seed(message(1))
    first = signed_in.run("fetch", "--maildir", str(maildir), "--json")
    assert first.returncode == 0, first.stderr
    [record] = [json.loads(line) for line in first.stdout.splitlines()]
    delivered = Path(record["path"])
    if where == "cur":  # a mail reader saw it and marked it read
        delivered = delivered.rename(maildir / "cur" / (delivered.name + ":2,S"))
    _rewind_state(signed_in, record["uid"])
    again = signed_in.run("fetch", "--maildir", str(maildir), "--json", "-v")
    assert again.returncode == 0, again.stderr
    [second] = [json.loads(line) for line in again.stdout.splitlines()]
    assert second["uid"] == record["uid"] and second["path"] == str(delivered)
    assert "is already delivered (re-run after a crash); not delivering it twice" in again.stderr
    files = [p for sub in ("new", "cur", "tmp") for p in (maildir / sub).iterdir()]
    assert files == [delivered]
    assert delivered.read_bytes() == local(message(1))


def test_a_redelivery_to_a_handler_carries_the_same_uid_pair(signed_in: Account, handler: Path) -> None:
    """What a duplicate looks like for a script (README): the same MAILBOT_UIDVALIDITY and MAILBOT_UID."""
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    signed_in.seed(message(1))
    first = signed_in.run("fetch", "--exec", "./handler.sh", "--json")
    [uid] = handled_uids(handler)
    _rewind_state(signed_in, uid)
    again = signed_in.run("fetch", "--exec", "./handler.sh", "--json")
    assert again.returncode == 0, again.stderr
    assert handled_uids(handler) == [uid, uid]
    assert [json.loads(line)["uid"] for line in (first.stdout + again.stdout).splitlines()] == [uid, uid]
