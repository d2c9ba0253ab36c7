"""``send --queue`` and ``outbox``: queued mail is sent once, over one connection, and never lost."""

from __future__ import annotations

import email
import email.policy
import json
import time
from pathlib import Path

from tests.conftest import Account


def eml(sender: str, to: str, subject: str, bcc: str | None = None, lf_only: bool = False) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Message-ID: <{subject}@test>"]
    if bcc:
        lines.append(f"Bcc: {bcc}")
    text = "\r\n".join([*lines, "", f"body of {subject}", ""])
    return text.replace("\r\n", "\n").encode() if lf_only else text.encode()


def queue_to_self(account: Account, prefix: str, count: int) -> Path:
    """An outbox folder holding ``count`` messages from the account to itself: 0.eml, 1.eml, ..."""
    queue = account.home / "outbox"
    queue.mkdir()
    for n in range(count):
        (queue / f"{n}.eml").write_bytes(eml(account.address, account.address, f"{prefix}{n}"))
    return queue


def delivered_subjects(account: Account, address: str | None = None) -> list[str]:
    found = []
    for path in account.servers.messages(address or account.address):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.append(str(msg["Subject"]))
    return sorted(found)


def wait_for_count(account: Account, count: int, address: str | None = None) -> None:
    account.servers.wait_for(
        lambda: len(account.servers.messages(address or account.address)) >= count, what=f"{count} deliveries"
    )


def test_twenty_queued_messages_arrive_once_over_one_connection(signed_in: Account) -> None:
    queue = signed_in.home / "outbox"
    queue.mkdir()
    me = signed_in.address
    for n in range(18):
        (queue / f"{n:03d}.eml").write_bytes(eml(me, me, f"queued-{n:02d}", lf_only=n % 2 == 1))
    for n in (18, 19):
        queued = signed_in.run("send", "--queue", str(queue), "--to", me, "--subject", f"queued-{n:02d}", "--body", "b")
        assert queued.returncode == 0, queued.stderr
        assert (queue / queued.stdout.strip()).is_file()
    result = signed_in.run("-v", "outbox", str(queue), "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["sent"] * 20
    assert result.stderr.count("connecting to") == 1  # one connection, one authentication
    assert result.stderr.count("(pipelined)") == 20  # MAIL, RCPT and DATA in one write per message
    assert sorted(p.name for p in (queue / "sent").iterdir()) == sorted(r["file"] for r in records)
    assert not list(queue.glob("*.eml"))
    wait_for_count(signed_in, 20)
    time.sleep(0.5)  # a duplicate would arrive about now
    assert delivered_subjects(signed_in) == [f"queued-{n:02d}" for n in range(20)]
    # a second run has nothing to do and connects to nothing
    again = signed_in.run("-v", "outbox", str(queue))
    assert again.returncode == 0 and "connecting to" not in again.stderr


def test_bcc_header_becomes_envelope_and_is_stripped(signed_in: Account) -> None:
    servers = signed_in.servers
    hidden = f"hidden{time.time_ns()}@example.com"
    servers.add_user(hidden)
    queue = signed_in.home / "outbox"
    queue.mkdir()
    (queue / "1.eml").write_bytes(eml(signed_in.address, signed_in.address, "with-bcc", bcc=hidden))
    assert signed_in.run("outbox", str(queue)).returncode == 0
    wait_for_count(signed_in, 1, hidden)
    wait_for_count(signed_in, 1)
    for address in (hidden, signed_in.address):
        msg = email.message_from_bytes(servers.messages(address)[0].read_bytes(), policy=email.policy.default)
        assert msg["Subject"] == "with-bcc"
        assert msg["Bcc"] is None
        assert hidden not in str(msg["To"]) + str(msg.get("Cc", ""))


def test_refused_sender_goes_to_failed_with_reason(signed_in: Account) -> None:
    queue = signed_in.home / "outbox"
    queue.mkdir()
    me = signed_in.address
    (queue / "1.eml").write_bytes(eml(me, me, "good-1"))
    (queue / "2.eml").write_bytes(eml("someone-else@example.com", me, "forged"))
    (queue / "3.eml").write_bytes(eml(me, me, "good-2"))
    result = signed_in.run("outbox", str(queue))
    assert result.returncode == 69
    assert "error: 1 message(s) were refused by the server" in result.stderr
    assert sorted(p.name for p in (queue / "sent").iterdir()) == ["1.eml", "3.eml"]
    assert sorted(p.name for p in (queue / "failed").iterdir()) == ["2.eml", "2.eml.error"]
    reason = (queue / "failed" / "2.eml.error").read_text()
    assert "refused the sender someone-else@example.com: 553" in reason
    wait_for_count(signed_in, 2)
    assert delivered_subjects(signed_in) == ["good-1", "good-2"]


def test_server_stopped_mid_queue_keeps_the_rest(signed_in: Account) -> None:
    servers = signed_in.servers
    queue = queue_to_self(signed_in, "m", 4)
    # 20 per minute = 3 s apart: time to see the first delivered and stop the server, even on a busy CI
    proc = signed_in.start("outbox", str(queue), env={"MAILBOT_SEND_RATE": "20"})
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("sent: 0.eml")
        wait_for_count(signed_in, 1)  # let Postfix finish delivering it: a killed Postfix re-delivers
        servers.stop_postfix()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 75, err
        assert err.count("error:") == 1
        assert sorted(p.name for p in queue.glob("*.eml")) == ["1.eml", "2.eml", "3.eml"]
    finally:
        servers.start_postfix()
    result = signed_in.run("outbox", str(queue))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (queue / "sent").iterdir()) == ["0.eml", "1.eml", "2.eml", "3.eml"]
    wait_for_count(signed_in, 4)
    time.sleep(0.5)
    assert delivered_subjects(signed_in) == ["m0", "m1", "m2", "m3"]


def test_overlapping_outbox_runs(signed_in: Account) -> None:
    queue = queue_to_self(signed_in, "o", 3)
    slow = signed_in.start("outbox", str(queue), env={"MAILBOT_SEND_RATE": "60"})
    assert slow.stdout is not None
    assert slow.stdout.readline().startswith("sent:")
    second = signed_in.run("outbox", str(queue))
    assert second.returncode == 75
    assert "another outbox run is sending from" in second.stderr
    assert slow.wait(timeout=30) == 0
    wait_for_count(signed_in, 3)
    time.sleep(0.5)
    assert delivered_subjects(signed_in) == ["o0", "o1", "o2"]


def test_pacing_spreads_messages(signed_in: Account) -> None:
    queue = queue_to_self(signed_in, "p", 3)
    started = time.monotonic()
    result = signed_in.run("outbox", str(queue), env={"MAILBOT_SEND_RATE": "120"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1.0  # 3 messages at 120/min: two 0.5 s gaps


def test_missing_queue_folder_is_66(signed_in: Account) -> None:
    result = signed_in.run("outbox", str(signed_in.home / "nope"))
    assert result.returncode == 66
    assert "does not exist" in result.stderr


def test_queue_validates_like_send(signed_in: Account, tmp_path: Path) -> None:
    queue = tmp_path / "q"
    queue.mkdir()
    bad = signed_in.run("send", "--queue", str(queue), "--to", "not-an-address", "--body", "x")
    assert bad.returncode == 65
    assert list(queue.iterdir()) == []


def test_outbox_reconnects_when_the_server_drops_the_connection(signed_in: Account) -> None:
    servers = signed_in.servers
    queue = queue_to_self(signed_in, "r", 3)
    proc = signed_in.start("-v", "outbox", str(queue), env={"MAILBOT_SEND_RATE": "20"})  # 3 s between messages
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("sent: 0.eml")
    wait_for_count(signed_in, 1)
    servers.stop_postfix()  # the open connection dies with it
    servers.start_postfix()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert err.count("connecting to") == 2  # one reconnection, then the rest on it
    assert sorted(p.name for p in (queue / "sent").iterdir()) == ["0.eml", "1.eml", "2.eml"]
    wait_for_count(signed_in, 3)
    time.sleep(0.5)
    assert delivered_subjects(signed_in) == ["r0", "r1", "r2"]
