"""IMAP IDLE (RFC 2177) on an open :class:`~mailbotcore.net.imap.ImapSession`.

Python 3.11's imaplib has no IDLE, and its reader (``sock.makefile``) cannot wait with a
deadline: a socket timeout in the middle of a read leaves the file object unusable. So
:func:`install` replaces the connection's reader with :class:`LineReader` (the same
``readline``/``read`` imaplib calls for every command, over the same socket), which can
also wait for a line until a deadline or until a wake-up descriptor (the service's stop
pipe) becomes readable, with ``select()``.

Every wait is bounded as a whole: the ``+`` continuation and the tagged answer to
``DONE`` must arrive within ``timeout`` seconds, else :class:`TemporaryFailure` (the
caller reconnects). ``* BYE`` of any kind is :class:`ServerClosed`, carrying Exchange's
suggested back-off when it throttles.
"""

from __future__ import annotations

import logging
import select
import ssl
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from mailbotcore.errors import ServiceRefused, TemporaryFailure
from mailbotcore.net.imap import ImapSession
from mailbotcore.net.tls import network_error
from mailbotcore.wire import idle as idlewire
from mailbotcore.wire.text import clean_line

log = logging.getLogger("mailbot.imap")
_CHUNK = 65536
STOP_GRACE = 3.0  # seconds to wait for the answer to DONE when the service is stopping


class ServerClosed(TemporaryFailure):
    """The server ended the session (``* BYE``); ``retry_after`` is its suggested back-off, if any."""

    def __init__(self, message: str, text: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.text = text
        self.retry_after = retry_after


class IdleRefused(ServiceRefused):
    """The server answered IDLE with NO or BAD: poll instead."""


class LineReader:
    """A buffered reader over the session's socket with deadline- and wake-up-aware waits."""

    def __init__(self, sock: Any, leftover: bytes = b"") -> None:
        self.sock = sock
        self.buffer = bytearray(leftover)
        self.eof = False

    # -- what imaplib calls ------------------------------------------------------------------

    def readline(self, limit: int = -1) -> bytes:
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0 or self.eof or (0 < limit <= len(self.buffer)):
                size = end + 1 if end >= 0 else len(self.buffer)
                if limit > 0:
                    size = min(size, limit)
                return self._take(size)
            self._recv()

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self.buffer) < size) and not self.eof:
            self._recv()
        return self._take(len(self.buffer) if size < 0 else min(size, len(self.buffer)))

    def close(self) -> None:
        self.buffer = bytearray()

    # -- waiting -------------------------------------------------------------------------------

    def wait_line(self, deadline: float, wake_fd: int | None = None) -> bytes | None:
        """The next line, or None when ``deadline`` (monotonic) passes or ``wake_fd`` is readable.

        A line announcing a literal (``{n}``) is returned together with the literal and the
        rest of its line, so a caller sees whole responses."""
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                size = idlewire.literal_size(bytes(self.buffer[: end + 1]))
                if size is None:
                    return self._take(end + 1)
                if len(self.buffer) > end + 1 + size and self.buffer.find(b"\n", end + 1 + size) >= 0:
                    return self._take(self.buffer.find(b"\n", end + 1 + size) + 1)
            if self.eof:
                raise EOFError("the server closed the connection")
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
            if not pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                watched = [self.sock] if wake_fd is None else [self.sock, wake_fd]
                ready, _, _ = select.select(watched, [], [], remaining)
                if wake_fd is not None and wake_fd in ready:
                    return None
                if not ready:
                    continue
            self._recv()

    # -- internals -----------------------------------------------------------------------------

    def _recv(self) -> None:
        data = self.sock.recv(_CHUNK)
        if not data:
            self.eof = True
        self.buffer += data

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def install(session: ImapSession) -> LineReader:
    """Put a :class:`LineReader` in place of imaplib's reader (once per session), keeping
    whatever the old one had buffered."""
    conn = session.conn
    if isinstance(conn.file, LineReader):
        return conn.file
    leftover = b""
    timeout = conn.sock.gettimeout()
    try:
        conn.sock.settimeout(0)  # only what is already buffered: never wait here
        with suppress(OSError, ValueError):
            leftover = conn.file.read1(_CHUNK) or b""  # type: ignore[union-attr]
    finally:
        conn.sock.settimeout(timeout)
    reader = LineReader(conn.sock, leftover)
    conn.file = reader  # type: ignore[assignment]
    return reader


@dataclass(frozen=True)
class IdleResult:
    new_mail: bool  # the server announced EXISTS
    woken: bool  # the wake-up descriptor fired (stop requested)


def idle(session: ImapSession, until: float, wake_fd: int | None, timeout: float) -> IdleResult:
    """IDLE until new mail (``EXISTS``), ``until`` (monotonic), or ``wake_fd``; then DONE.

    Raises :class:`ServerClosed` on ``* BYE``, :class:`IdleRefused` when IDLE is refused,
    :class:`TemporaryFailure` when the server is silent past ``timeout`` or the connection drops."""
    reader = install(session)
    conn = session.conn
    tag = conn._new_tag()
    try:
        try:
            conn.send(tag + b" IDLE\r\n")
            new_mail = _until_continuation(session, reader, tag, timeout)
            woken = False
            while not new_mail:
                line = reader.wait_line(until, wake_fd)
                if line is None:
                    woken = wake_fd is not None and _readable(wake_fd)
                    break
                new_mail = _untagged(session, idlewire.parse_line(line, tag))
            conn.send(b"DONE\r\n")
            # Stopping: a silent server must not hold the exit up for a whole MAILBOT_TIMEOUT.
            done_timeout = min(timeout, STOP_GRACE) if woken else timeout
            new_mail = _until_tagged(session, reader, tag, done_timeout) or new_mail
            return IdleResult(new_mail, woken)
        except (OSError, EOFError) as exc:
            s = session.settings
            raise network_error(exc, "IMAP", s.imap_host, s.imap_port, s.timeout) from exc
    finally:
        conn.tagged_commands.pop(tag, None)


def _until_continuation(session: ImapSession, reader: LineReader, tag: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    new_mail = False
    while True:
        line = reader.wait_line(deadline)
        if line is None:
            raise TemporaryFailure(f"{session.where} did not accept IDLE within {timeout:g} s")
        parsed = idlewire.parse_line(line, tag)
        if parsed.kind == "continuation":
            return new_mail
        if parsed.kind == "tagged":
            raise IdleRefused(f"{session.where} refused IDLE: {clean_line(parsed.text)}")
        new_mail = _untagged(session, parsed) or new_mail


def _until_tagged(session: ImapSession, reader: LineReader, tag: bytes, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    new_mail = False
    while True:
        line = reader.wait_line(deadline)
        if line is None:
            raise TemporaryFailure(f"{session.where} did not answer DONE within {timeout:g} s")
        parsed = idlewire.parse_line(line, tag)
        if parsed.kind == "tagged":
            if parsed.status != "OK":
                raise TemporaryFailure(f"{session.where} ended IDLE with {parsed.status}: {clean_line(parsed.text)}")
            return new_mail
        new_mail = _untagged(session, parsed) or new_mail


def _untagged(session: ImapSession, line: idlewire.Line) -> bool:
    """Act on one untagged line while idling; True for new mail."""
    if line.kind == "BYE":
        text = clean_line(line.text)
        raise ServerClosed(f"{session.where} closed the session: {text}", text, idlewire.suggested_backoff(text))
    if line.kind == "EXISTS":
        log.debug("imap < * %s EXISTS", line.number)
        return True
    return False  # EXPUNGE, RECENT, FETCH (flags), OK keep-alives: nothing to do


def _readable(fd: int) -> bool:
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)
