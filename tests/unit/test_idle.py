"""IDLE's pure parts: response lines, Exchange's throttling hint, the deadline-aware reader,
the back-off and the token renewal margin of ``watch``."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from mailbotcore.commands.watching import Backoff, Stopper, renewal_margin
from mailbotcore.net.idle import LineReader
from mailbotcore.wire import idle as idlewire


def test_parse_lines_while_idling() -> None:
    assert idlewire.parse_line(b"+ idling\r\n", b"A5") == idlewire.Line("continuation", text="idling")
    assert idlewire.parse_line(b"* 23 EXISTS\r\n", b"A5") == idlewire.Line("EXISTS", 23, "")
    assert idlewire.parse_line(b"* 3 EXPUNGE\r\n").kind == "EXPUNGE"
    assert idlewire.parse_line(b"* OK Still here\r\n") == idlewire.Line("OK", None, "Still here")
    bye = idlewire.parse_line(b"* BYE Session invalidated - AccessTokenExpired\r\n", b"A5")
    assert bye == idlewire.Line("BYE", None, "Session invalidated - AccessTokenExpired")
    done = idlewire.parse_line(b"A5 OK Idle completed (0.001 + 1.5 secs).\r\n", b"A5")
    assert done.kind == "tagged" and done.status == "OK" and done.text.startswith("Idle completed")
    assert idlewire.parse_line(b"A5 bad unknown\r\n", b"A5").status == "BAD"
    assert idlewire.parse_line(b"A51 OK other\r\n", b"A5").kind == "unknown"  # not our tag
    assert idlewire.parse_line(b"garbage").kind == "unknown"
    assert idlewire.parse_line(b"* 99999999999999999999 EXISTS").number is None  # no huge ints


def test_literal_size_and_throttling_hint() -> None:
    assert idlewire.literal_size(b"* 1 FETCH (BODY[] {42}\r\n") == 42
    assert idlewire.literal_size(b"* 1 FETCH (FLAGS ())\r\n") is None
    text = "Request is throttled. Suggested Backoff Time: 4200 milliseconds"
    assert idlewire.suggested_backoff(text) == 4.2
    assert idlewire.suggested_backoff("Session invalidated - AccessTokenExpired") is None


def test_backoff_doubles_with_jitter_from_1_s_up_to_5_minutes() -> None:
    backoff = Backoff()
    delays = [backoff.next() for _ in range(14)]
    assert all(1.0 <= d <= 300.0 for d in delays)
    for n, d in enumerate(delays[:8]):
        assert 2**n / 2 <= d <= 2**n or (n == 0 and d == 1.0)
    assert delays[-1] >= 150  # capped, still jittered
    assert len({round(d, 6) for d in delays[-5:]}) > 1  # jitter: not all equal
    assert backoff.next(at_least=400) == 400  # Exchange's suggestion wins when longer
    backoff.reset()
    assert backoff.next() == 1.0


def test_renewal_margin() -> None:
    assert renewal_margin(3600) == 300
    assert renewal_margin(600) == 60
    assert renewal_margin(6) == 1


def pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    return a, b


def test_line_reader_reads_lines_and_literals_like_imaplib_expects() -> None:
    ours, theirs = pair()
    reader = LineReader(ours, b"* 1 EXI")
    theirs.sendall(b"STS\r\n* 2 FETCH (BODY[] {5}\r\nab\ncd)\r\nA1 OK done\r\n")
    assert reader.readline() == b"* 1 EXISTS\r\n"
    assert reader.wait_line(time.monotonic() + 1) == b"* 2 FETCH (BODY[] {5}\r\nab\ncd)\r\n"
    assert reader.readline() == b"A1 OK done\r\n"
    theirs.sendall(b"12345")
    assert reader.read(3) == b"123"
    assert reader.read(2) == b"45"
    theirs.close()
    assert reader.readline() == b""  # EOF, as imaplib expects from a file
    with pytest.raises(EOFError):
        reader.wait_line(time.monotonic() + 1)


def test_wait_line_keeps_its_deadline_and_wakes_on_the_stop_pipe() -> None:
    ours, theirs = pair()
    reader = LineReader(ours)
    started = time.monotonic()
    assert reader.wait_line(started + 0.2) is None
    assert 0.18 <= time.monotonic() - started < 1.0
    theirs.sendall(b"* OK partial")  # no end of line: still bounded
    started = time.monotonic()
    assert reader.wait_line(started + 0.2) is None
    assert time.monotonic() - started < 1.0
    stopper = Stopper()
    threading.Timer(0.1, stopper.stop).start()
    started = time.monotonic()
    assert reader.wait_line(started + 10, stopper.fileno()) is None
    assert time.monotonic() - started < 1.0
    assert stopper.sleep(10) is True  # stopped: no more waiting
    theirs.sendall(b" line\r\n")
    assert reader.wait_line(time.monotonic() + 1) == b"* OK partial line\r\n"
    os.close(stopper.fileno())
