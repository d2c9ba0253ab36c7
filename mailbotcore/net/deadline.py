"""Deadlines for whole network operations, and a socket reader that keeps to them.

A socket timeout bounds each read; a hostile or broken server that keeps talking (``* OK
still thinking`` every half second, endless ``250-`` lines, a greeting dripped one byte at
a time) never trips it. Here an *operation* (connecting with its greeting, signing in, one
command with its whole response) gets a deadline, and every read and write on the
connection is given only the time left until it:

    timer = Timer("IMAP server HOST port PORT", settings.timeout, limit_bytes)
    with timer.bound("EXAMINE"):
        ...  # every read/write in here ends by the deadline, or raises DeadlineExceeded

Bulk data is the one thing allowed to take longer than the timeout: an announced literal
(or a message body being sent) adds ``bytes / MIN_RATE`` seconds, so a 25 MB message on a
slow line is not cut off, while the total stays bounded by the size limit.

:class:`DeadlineReader` replaces the ``makefile()`` object imaplib and smtplib read from:
it buffers by itself and sets the socket timeout to the time left before every ``recv``,
and refuses a line longer than its limit without keeping it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mailbotcore.errors import ServiceRefused, TemporaryFailure

MIN_RATE = 128 * 1024  # bytes per second: the slowest transfer of announced bulk data we wait for
CHUNK = 64 * 1024
SIZE_HINT = "MAILBOT_MAX_MESSAGE_MB sets the largest message mailbot handles"


class DeadlineExceeded(TemporaryFailure):
    """An operation did not finish by its deadline (exit 75). Not an OSError: imaplib and smtplib
    wrap OSErrors into their own exceptions, this one passes through them unchanged."""


class TooLarge(ServiceRefused):
    """The server announced a literal (or sent a line) larger than mailbot accepts (exit 69)."""


@dataclass
class _Bound:
    what: str
    seconds: float
    expires: float


class Timer:
    """The deadline of the operation in progress on one connection.

    Outside any :meth:`bound`, each read or write gets ``timeout`` seconds of its own (the
    old per-read behaviour), so code that does not know about deadlines still ends."""

    def __init__(self, where: str, timeout: float, limit_bytes: int) -> None:
        self.where = where
        self.timeout = timeout
        self.limit_bytes = limit_bytes
        self.stack: list[_Bound] = []

    @property
    def current(self) -> _Bound | None:
        return self.stack[-1] if self.stack else None

    @contextmanager
    def bound(self, what: str, seconds: float | None = None) -> Iterator[None]:
        """Everything inside must finish within ``seconds`` (default: the timeout). A nested bound
        never extends an outer one: the earlier deadline wins (and is the one reported)."""
        seconds = self.timeout if seconds is None else seconds
        expires = time.monotonic() + seconds
        outer = self.current
        if outer is not None and outer.expires <= expires:
            bound = _Bound(outer.what, outer.seconds, outer.expires)
        else:
            bound = _Bound(what, seconds, expires)
        self.stack.append(bound)
        try:
            yield
        finally:
            self.stack.remove(bound)

    def allow_transfer(self, nbytes: int) -> None:
        """Announced bulk data of ``nbytes`` may take ``nbytes / MIN_RATE`` seconds more."""
        if nbytes > 0:
            for bound in self.stack:
                bound.expires += nbytes / MIN_RATE

    def remaining(self) -> float:
        """Seconds left for the next socket call; raises DeadlineExceeded when none are."""
        if self.current is None:
            return self.timeout
        left = self.current.expires - time.monotonic()
        if left <= 0:
            raise self.exceeded()
        return left

    def exceeded(self) -> DeadlineExceeded:
        bound = self.current
        if bound is None:
            return DeadlineExceeded(f"{self.where} did not answer within {self.timeout:g} s")
        return DeadlineExceeded(f"{self.where} did not complete {bound.what} within {bound.seconds:g} s")

    def check_size(self, nbytes: int, what: str) -> None:
        if nbytes > self.limit_bytes:
            raise TooLarge(
                f"{self.where} announced {what} of {nbytes} bytes, more than the {self.limit_bytes} "
                "bytes mailbot accepts; nothing was read",
                hint=SIZE_HINT,
            )


class DeadlineReader:
    """A buffered reader over a socket that keeps to a :class:`Timer` (``readline``/``read``)."""

    def __init__(self, sock: socket.socket, timer: Timer) -> None:
        self.sock = sock
        self.timer = timer
        self.buffer = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        """Read more from the socket into the buffer; False at end of file."""
        if self.eof:
            return False
        self.sock.settimeout(self.timer.remaining())
        try:
            chunk = self.sock.recv(CHUNK)
        except TimeoutError as exc:
            raise self.timer.exceeded() from exc  # the socket timeout was the time left
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def readline(self, limit: int = -1, refuse: bool = False) -> bytes:
        """One line with its LF; at most ``limit`` bytes (like ``BufferedReader.readline``).

        With ``refuse``, a line longer than ``limit`` raises TooLarge instead (its bytes are dropped)."""
        limit = self.timer.limit_bytes + 1 if limit is None or limit < 0 else limit
        start = 0
        while True:
            self.timer.remaining()  # a flood of short lines ends at the deadline too
            end = self.buffer.find(b"\n", start)
            if end >= 0 and end < limit:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                return line
            if len(self.buffer) >= limit:
                if refuse:
                    self.buffer.clear()
                    raise TooLarge(
                        f"{self.timer.where} sent a line longer than the {limit} bytes mailbot accepts; dropped",
                        hint=SIZE_HINT,
                    )
                line = bytes(self.buffer[:limit])
                del self.buffer[:limit]
                return line
            start = len(self.buffer)
            if not self._fill():
                line = bytes(self.buffer)
                self.buffer.clear()
                return line

    def read(self, size: int) -> bytes:
        """Exactly ``size`` bytes (fewer only at end of file), within the size limit."""
        self.timer.check_size(size, "a literal")
        self.timer.allow_transfer(size - len(self.buffer))
        while len(self.buffer) < size:
            if not self._fill():
                break
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def close(self) -> None:
        self.buffer.clear()


def send_all(sock: socket.socket, timer: Timer, data: bytes) -> None:
    """``sendall`` within the deadline (bulk data gets its transfer allowance first)."""
    if len(data) > CHUNK:
        timer.allow_transfer(len(data))
    sock.settimeout(timer.remaining())
    try:
        sock.sendall(data)
    except TimeoutError as exc:
        raise timer.exceeded() from exc
