"""A latency-injecting TCP proxy (asyncio) that counts connections and bytes each way.

Every chunk read from one side is written to the other ``delay`` seconds later (order
kept, no bandwidth limit), so a request/response exchange costs ``2 * delay`` more than on
loopback. The TCP handshake is emulated too: the client's ``connect()`` returns at once
(the kernel accepts on the proxy's socket), so the proxy opens the upstream connection
only ``3 * delay`` after the accept and never delivers client data before that -- which
reproduces the real timeline (SYN out, SYN-ACK back, ACK + first data out: the server
sees the first byte 1.5 RTT after the client started connecting, and a server-first
greeting reaches the client 2 RTT after it started).

Both sockets ACK at once (TCP_QUICKACK): on loopback a delayed ACK holds a sender's second
small write back by ~40 ms (Nagle), which happens in runs without delay and not with it,
and would hide a round trip (imaplib sends an AUTHENTICATE continuation and its CRLF apart).

All proxies share one event loop in a daemon thread (:class:`ProxyLoop`). Counters and the
per-chunk timeline are reset with :meth:`LatencyProxy.reset` and read with
:meth:`LatencyProxy.snapshot` between runs; ``delay`` may be changed between runs (a
connection keeps the delay it was accepted with).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

UP = "c>s"  # client to server
DOWN = "s>c"  # server to client
_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)
_SPIN = 0.0015  # finish the last stretch of a wait with sleep(0) yields: epoll rounds up to ms


@dataclass
class Chunk:
    t: float  # seconds since the connection was accepted, when the proxy read it
    conn: int
    direction: str
    size: int  # 0 = end of stream (half-close)


@dataclass
class Stats:
    connections: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)  # delivery time minus scheduled time


class ProxyLoop:
    """An asyncio loop in a daemon thread, for the proxies."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="latency-proxy", daemon=True)
        self._thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


class LatencyProxy:
    """Listens on 127.0.0.1:``port`` and forwards to ``target_host``:``target_port``."""

    def __init__(self, loop: ProxyLoop, name: str, target_host: str, target_port: int) -> None:
        self.name = name
        self.target = (target_host, target_port)
        self.delay = 0.0
        self._loop = loop
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stats = Stats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0
        self._server: asyncio.AbstractServer = loop.call(self._start())
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _start(self) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    # ------------------------------------------------------------------ control

    def reset(self) -> None:
        with self._lock:
            self._stats = Stats()

    def snapshot(self) -> Stats:
        with self._lock:
            s = self._stats
            return Stats(s.connections, s.bytes_up, s.bytes_down, list(s.chunks), list(s.lateness))

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until every connection has been closed on both sides."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._active == 0:
                    return True
            time.sleep(0.002)
        return False

    def close(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        with contextlib.suppress(Exception):
            self._loop.call(shutdown())

    # ------------------------------------------------------------------ forwarding

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # always set inside a handler; the check keeps type checkers calm
            self._tasks.add(task)
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        delay = self.delay
        conn = next(self._ids)
        stats = self._stats  # a reset() during the connection does not mix runs
        with self._lock:
            stats.connections += 1
            self._active += 1
        up: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        down: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        swriter: asyncio.StreamWriter | None = None
        helpers: list[asyncio.Task[None]] = []
        try:
            csock = cwriter.get_extra_info("socket")
            helpers.append(asyncio.create_task(self._read(creader, up, UP, conn, accepted, delay, stats, csock)))
            await self._wait_until(accepted + 3 * delay)  # emulated TCP handshake
            try:
                sreader, swriter = await asyncio.open_connection(*self.target)
            except OSError:
                return
            ssock = swriter.get_extra_info("socket")
            helpers.append(asyncio.create_task(self._read(sreader, down, DOWN, conn, accepted, delay, stats, ssock)))
            helpers.append(asyncio.create_task(self._write(down, cwriter, stats, accepted)))
            await self._write(up, swriter, stats, accepted + 3 * delay)
            await helpers[-1]  # the server side finishes too
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for helper in helpers:
                helper.cancel()
            for writer in (cwriter, swriter):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        writer.close()
            self._tasks.discard(task)
            with self._lock:
                self._active -= 1

    async def _read(
        self,
        reader: asyncio.StreamReader,
        queue: asyncio.Queue[tuple[float, bytes]],
        direction: str,
        conn: int,
        accepted: float,
        delay: float,
        stats: Stats,
        sock: Any = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await reader.read(262144)
            except OSError:
                data = b""
            if sock is not None and data:
                # ACK at once: a delayed ACK would hold back the sender's next small write
                # (Nagle) by up to 40 ms on loopback -- seen in runs without delay only, so it
                # would cancel out a round trip of the comparison.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            now = loop.time()
            with self._lock:
                stats.chunks.append(Chunk(now - accepted, conn, direction, len(data)))
                if direction == UP:
                    stats.bytes_up += len(data)
                else:
                    stats.bytes_down += len(data)
            queue.put_nowait((now + delay, data))
            if not data:
                return

    async def _write(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        writer: asyncio.StreamWriter,
        stats: Stats,
        not_before: float,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            at, data = await queue.get()
            at = max(at, not_before)
            await self._wait_until(at)
            with self._lock:
                stats.lateness.append(loop.time() - at)
            if not data:
                with contextlib.suppress(OSError):
                    if writer.can_write_eof():
                        writer.write_eof()
                return
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return

    @staticmethod
    async def _wait_until(at: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            remaining = at - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining - _SPIN if remaining > 2 * _SPIN else 0)


# ---------------------------------------------------------------------- timeline analysis


@dataclass
class Burst:
    conn: int
    direction: str
    start_ms: float
    end_ms: float
    size: int
    chunks: int


def bursts(chunks: list[Chunk]) -> list[Burst]:
    """Group each connection's chunks into bursts: maximal runs in one direction, in time order.
    End-of-stream markers close a burst but add no bytes."""
    out: list[Burst] = []
    for conn in sorted({c.conn for c in chunks}):
        current: Burst | None = None
        for c in sorted((c for c in chunks if c.conn == conn), key=lambda c: c.t):
            if current is None or current.direction != c.direction:
                current = Burst(conn, c.direction, c.t * 1000, c.t * 1000, 0, 0)
                out.append(current)
            current.end_ms = c.t * 1000
            current.size += c.size
            current.chunks += 1
    return out


def waits(chunks: list[Chunk]) -> int:
    """Round trips the client waited for, per the timeline: per connection, one for the TCP
    handshake plus one per server burst that arrived before the client closed its side
    (a reply the client did not wait for, e.g. to a LOGOUT sent just before closing, is not
    counted)."""
    total = 0
    for conn in sorted({c.conn for c in chunks}):
        mine = sorted((c for c in chunks if c.conn == conn), key=lambda c: c.t)
        client_eof = next((c.t for c in mine if c.direction == UP and c.size == 0), float("inf"))
        total += 1
        previous = None
        for c in mine:
            if c.t > client_eof:
                break
            if c.direction == DOWN and c.size and previous != DOWN:
                total += 1
            if c.size:
                previous = c.direction
    return total


def think_time(chunks: list[Chunk], delay: float) -> float:
    """Seconds the server spent before answering, summed over the exchanges the client waited
    for: from the moment the proxy delivered the client's last bytes (its read time + delay,
    and not before the emulated handshake's 3 * delay) to the server's first answer."""
    total = 0.0
    for conn in sorted({c.conn for c in chunks}):
        mine = [c for c in chunks if c.conn == conn]
        client_eof = next((c.t for c in mine if c.direction == UP and c.size == 0), float("inf"))
        seq = [b for b in bursts(mine) if b.size]
        for ask, answer in itertools.pairwise(seq):
            if ask.direction == UP and answer.direction == DOWN and answer.start_ms / 1000 <= client_eof:
                delivered = max(ask.end_ms / 1000 + delay, 3 * delay)
                total += max(0.0, answer.start_ms / 1000 - delivered)
    return total


def describe(chunks: list[Chunk], head: int = 30, tail: int = 6) -> list[str]:
    """Human-readable burst timeline (ms since each connection's accept): the first ``head``
    and the last ``tail`` bursts."""
    lines = []
    every = bursts(chunks)
    shown = every if len(every) <= head + tail else [*every[:head], None, *every[-tail:]]
    for b in shown:
        if b is None:
            lines.append(f"... {len(every) - head - tail} more bursts ...")
            continue
        arrow = "client -> server" if b.direction == UP else "server -> client"
        lines.append(
            f"conn {b.conn}  {b.start_ms:8.1f} ms  {arrow}  {b.size:>9,} B"
            + (f"  ({b.chunks} reads, until {b.end_ms:.1f} ms)" if b.chunks > 1 else "")
        )
    return lines
