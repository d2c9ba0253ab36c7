"""The IMAP reply table, strict numbers in FETCH replies, and the deadline reader (over a
socketpair: a peer that keeps talking is cut off at the deadline, not per read)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from mailbotcore import errors
from mailbotcore.net import deadline
from mailbotcore.wire import imap as imapwire

WHERE = "IMAP server h port 993"

# (command, status, server text, subject) -> (exit code, whole message, hint start or None)
REPLY_TABLE = {
    "authenticationfailed": (
        ("AUTHENTICATE", "NO", "[AUTHENTICATIONFAILED] Invalid credentials", None),
        (77, f"{WHERE} refused the sign-in: [AUTHENTICATIONFAILED] Invalid credentials", "the server refused the token"),
    ),
    "nonexistent": (
        ("EXAMINE", "NO", "[NONEXISTENT] Unknown Mailbox: Foo", "folder 'Foo'"),
        (65, f"folder 'Foo' does not exist on {WHERE}: [NONEXISTENT] Unknown Mailbox: Foo", None),
    ),
    "trycreate": (
        ("UID COPY", "NO", "[TRYCREATE] Mailbox doesn't exist: Archive", "folder 'Archive'"),
        (65, f"folder 'Archive' does not exist on {WHERE} (UID COPY): [TRYCREATE] Mailbox doesn't exist: Archive",
         "create the folder first"),
    ),
    "unavailable": (
        ("EXAMINE", "NO", "[UNAVAILABLE] Backend down", None),
        (75, f"{WHERE} cannot EXAMINE for now: [UNAVAILABLE] Backend down", None),
    ),
    "limit": (
        ("UID FETCH", "NO", "[LIMIT] Too many connections", None),
        (75, f"{WHERE} refused UID FETCH: a server limit was reached: [LIMIT] Too many connections", "too many"),
    ),
    "overquota": (
        ("UID COPY", "NO", "[OVERQUOTA] Quota exceeded", None),
        (75, f"{WHERE} refused UID COPY: the mailbox is over its quota: [OVERQUOTA] Quota exceeded", "free space"),
    ),
    "alreadyexists": (
        ("CREATE", "NO", "[ALREADYEXISTS] Mailbox exists", "folder 'X'"),
        (69, f"{WHERE} refused CREATE: folder 'X' already exists: [ALREADYEXISTS] Mailbox exists", None),
    ),
    "bye-access-token-expired": (
        ("UID FETCH", "BYE", "Session invalidated - AccessTokenExpired", None),
        (75, f"{WHERE} ended the session during UID FETCH: the access token expired: "
         "Session invalidated - AccessTokenExpired", "the next run signs in"),
    ),
    "throttled": (
        ("UID SEARCH", "NO", "Request is throttled. Suggested Backoff Time: 5000 milliseconds", None),
        (75, f"{WHERE} is throttling requests (UID SEARCH): Request is throttled. Suggested Backoff Time: "
         "5000 milliseconds", "Exchange asks mailbot to wait"),
    ),
    "authenticated-but-not-connected": (
        ("SELECT", "NO", "User is authenticated but not connected.", None),
        (69, f"{WHERE} refused SELECT: User is authenticated but not connected.", "Exchange signed you in"),
    ),
    "plain-no": (("UID STORE", "NO", "Permission denied", None), (69, f"{WHERE} refused UID STORE: Permission denied", None)),
    "plain-bad": (("FETCH", "BAD", "Parse error", None), (69, f"{WHERE} refused FETCH: Parse error", None)),
    "plain-bye": (
        ("EXAMINE", "BYE", "socket error: EOF", None),
        (75, f"connection to {WHERE} was lost during EXAMINE: socket error: EOF", None),
    ),
    "control-characters-cleaned": (
        ("LIST", "NO", "\x1b]52;c;ZXZpbA==\x07 \u202eevil", None),
        (69, f"{WHERE} refused LIST: ]52;c;ZXZpbA== evil", None),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("reply", "expected"), REPLY_TABLE.values(), ids=REPLY_TABLE.keys())
def test_imap_reply_table(reply: tuple, expected: tuple) -> None:
    command, status, text, subject = reply
    code, message, hint = expected
    error = imapwire.reply_error(command, status, text, WHERE, "mailbot login", subject)
    assert (error.exit_code, error.message) == (code, message)
    if hint is None:
        assert error.hint is None
    else:
        assert error.hint is not None and error.hint.startswith(hint)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"1 (UID 4x FLAGS ())", "UID '4x' is not a number"),
        (b"1 (UID abc)", "UID 'abc' is not a number"),
        (b"1 (UID 4294967296)", "UID '4294967296' is not a number"),
        (b"1 (UID 3 RFC822.SIZE -1)", "RFC822.SIZE '-1' is not a number"),
        (b"1 (UID 3 RFC822.SIZE )", "RFC822.SIZE '' is not a number"),
    ],
)
def test_parse_fetch_refuses_malformed_numbers(line: bytes, message: str) -> None:
    with pytest.raises(imapwire.ProtocolViolation, match=message):
        imapwire.parse_fetch([line])


def test_parse_fetch_still_reads_good_numbers() -> None:
    (item,) = imapwire.parse_fetch([b"1 (UID 4294967295 RFC822.SIZE 12 FLAGS (\\Seen))"])
    assert (item.uid, item.size, item.flags) == (4294967295, 12, ["\\Seen"])


def _talker(sock: socket.socket, line: bytes, every: float, stop: threading.Event) -> threading.Thread:
    def talk() -> None:
        while not stop.is_set():
            try:
                sock.sendall(line)
            except OSError:
                return
            time.sleep(every)

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    return thread


def test_a_peer_that_keeps_talking_is_cut_off_at_the_deadline() -> None:
    ours, theirs = socket.socketpair()
    stop = threading.Event()
    _talker(theirs, b"* OK still thinking\r\n", 0.05, stop)
    timer = deadline.Timer(WHERE, 0.5, 1000)
    reader = deadline.DeadlineReader(ours, timer)
    started = time.monotonic()
    lines = 0
    try:
        with pytest.raises(deadline.DeadlineExceeded) as caught, timer.bound("EXAMINE"):
            while True:
                assert reader.readline(100) == b"* OK still thinking\r\n"
                lines += 1
    finally:
        stop.set()
        ours.close()
        theirs.close()
    assert 0.5 <= time.monotonic() - started < 0.9
    assert lines >= 3  # each read succeeded: a per-read timeout would never have ended this
    assert caught.value.message == f"{WHERE} did not complete EXAMINE within 0.5 s"
    assert caught.value.exit_code == errors.EX_TEMPFAIL


def test_a_line_dripped_byte_by_byte_is_cut_off_too() -> None:
    ours, theirs = socket.socketpair()
    stop = threading.Event()
    _talker(theirs, b"x", 0.05, stop)
    timer = deadline.Timer(WHERE, 0.4, 1000)
    try:
        with pytest.raises(deadline.DeadlineExceeded), timer.bound("the greeting"):
            deadline.DeadlineReader(ours, timer).readline(1000)
    finally:
        stop.set()
        ours.close()
        theirs.close()


def test_nested_deadline_never_extends_the_outer_one_and_transfers_get_time() -> None:
    timer = deadline.Timer(WHERE, 10, 1000)
    with timer.bound("IDLE", 1.0):
        with timer.bound("UID FETCH"):  # asks for 10 s, gets what is left of IDLE's 1 s
            assert timer.remaining() <= 1.0
            assert timer.exceeded().message == f"{WHERE} did not complete IDLE within 1 s"
            timer.allow_transfer(deadline.MIN_RATE * 5)
            assert 5.0 < timer.remaining() <= 6.0
        assert 5.0 < timer.remaining() <= 6.0  # the outer operation got the transfer time too
    assert timer.remaining() == 10  # outside any bound: the per-read timeout


def test_a_literal_over_the_limit_is_refused_before_reading() -> None:
    ours, theirs = socket.socketpair()
    timer = deadline.Timer(WHERE, 1, 1000)
    try:
        with pytest.raises(deadline.TooLarge) as caught:
            deadline.DeadlineReader(ours, timer).read(1001)
        assert caught.value.exit_code == errors.EX_UNAVAILABLE
        assert caught.value.message == (
            f"{WHERE} announced a literal of 1001 bytes, more than the 1000 bytes mailbot accepts; nothing was read"
        )
        theirs.sendall(b"y" * 1500 + b"\r\n")
        with pytest.raises(deadline.TooLarge, match="sent a line longer than the 1000 bytes"):
            deadline.DeadlineReader(ours, timer).readline(1000, refuse=True)
    finally:
        ours.close()
        theirs.close()
