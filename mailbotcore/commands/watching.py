"""``watch``: ``fetch`` as a long-running service, woken by IMAP IDLE.

The same state file, lock and delivery code as ``fetch`` (:class:`~mailbotcore.commands.
fetching.Fetcher` over an open session), so a ``fetch`` after a ``watch`` and the reverse
continue without a duplicate or a gap. A session is: connect, SELECT, catch up on
everything after the last processed UID, then IDLE (or sleep ``--poll`` seconds where IDLE
is not offered); on ``EXISTS`` catch up again. IDLE is re-issued every ``idle_renewal``
seconds, and the session is replaced with one signed in with a fresh token before the
access token expires.

Anything that ends a session (``* BYE``, a dropped connection, a TLS error, a server that
stops answering) means: reconnect after an exponential back-off with jitter, 1 s up to
5 minutes, at least what Exchange suggests when it throttles. A failing handler is retried
with the same back-off, on the same session, and nothing after it is processed meanwhile.
A sign-in that needs a person ends the service (exit 77).
"""

from __future__ import annotations

import logging
import math
import os
import random
import select
import signal
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import suppress
from types import FrameType

from mailbotcore.commands.fetching import Fetcher
from mailbotcore.commands.options import WatchOptions
from mailbotcore.config import Settings
from mailbotcore.errors import (
    BadInputError,
    ConfigError,
    MailbotError,
    OutputError,
    SignInRequired,
    TemporaryFailure,
    UsageError,
)
from mailbotcore.mail import headers as messages
from mailbotcore.net import idle as imap_idle
from mailbotcore.net import imap as imap_client
from mailbotcore.results import FetchedRecord, Notice
from mailbotcore.store import files as fileutil
from mailbotcore.store.fetch_state import StateFile
from mailbotcore.wire import idle as idlewire
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.watch")
# Errors that no reconnect can fix: they end the service with their exit code.
FATAL = (SignInRequired, UsageError, ConfigError, OutputError, BadInputError)
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 300.0


class Stopper:
    """A stop request (SIGTERM/SIGINT) as a flag plus a pipe that ``select()`` can wait on."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self.stopped = False

    def fileno(self) -> int:
        return self._read

    def stop(self, *_: object) -> None:
        self.stopped = True
        with suppress(OSError):  # a full pipe already wakes the waiter
            os.write(self._write, b"x")

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until a stop request; True when stopped."""
        if not self.stopped and seconds > 0:
            select.select([self._read], [], [], seconds)
        return self.stopped

    def install(self) -> Callable[[], None]:
        """Handle SIGTERM and SIGINT by asking the service to stop; returns the undo."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, frame: FrameType | None) -> None:
            if not self.stopped:
                log.info("signal %d: stopping after the current message", signum)
            self.stop()

        for sig in previous:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


class Backoff:
    """Exponential back-off with jitter: about 1, 2, 4 ... s, capped at 5 minutes."""

    def __init__(self, first: float = BACKOFF_FIRST, cap: float = BACKOFF_MAX) -> None:
        self.first, self.cap = first, cap
        self.failures = 0

    def next(self, at_least: float | None = None) -> float:
        ceiling = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        delay = max(self.first, random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not a secret
        return max(delay, at_least) if at_least else delay

    def reset(self) -> None:
        self.failures = 0


class HandlerFailed(TemporaryFailure):
    """The ``--exec`` handler failed for one message: retry it on the same session."""


class _WatchFetcher(Fetcher):
    """``fetch``'s Fetcher, with a handler failure told apart from a connection failure."""

    def run_handler(self, uid: int, raw: bytes, summary: messages.MessageSummary) -> int:
        try:
            return super().run_handler(uid, raw, summary)
        except TemporaryFailure as exc:
            raise HandlerFailed(exc.message.split(";")[0]) from exc


def renewal_margin(lifetime: float) -> float:
    """How long before the access token's expiry to replace the session: a tenth of its
    remaining life, 1 s to 5 minutes (an hour's token: 5 minutes early)."""
    return min(300.0, max(1.0, lifetime / 10))


class Watcher:
    def __init__(
        self,
        options: WatchOptions,
        settings: Settings,
        provider: TokenProvider,
        expires_at: Callable[[], float | None] | None,
        stopper: Stopper,
    ) -> None:
        self.options = options
        self.settings = settings
        self.provider = provider
        self.expires_at = expires_at or (lambda: None)
        self.stopper = stopper
        self.folder = options.folder
        self.account = settings.mailbox_user
        self.state_file = StateFile(settings.state_dir, self.account, options.folder)
        self.connections = 0

    def run(self) -> Iterator[Notice | FetchedRecord]:
        backoff = Backoff()
        refresh = False
        while not self.stopper.stopped:
            started = time.monotonic()
            try:
                if refresh or self._token_expiring():
                    self.provider(force_refresh=True)
                refresh = False
                renew = yield from self._session()
                if renew:
                    refresh = True
                    yield Notice("access token about to expire: reconnecting with a fresh one")
                    if time.monotonic() - started >= 5:
                        backoff.reset()
                    elif self.stopper.sleep(backoff.next()):
                        break  # tokens that live only seconds must not turn into a connection loop
                continue
            except FATAL:
                raise
            except MailbotError as exc:
                if time.monotonic() - started > 60:
                    backoff.reset()  # that session worked for a while: start the back-off afresh
                text = exc.message
                if self.stopper.stopped:
                    yield Notice(text)  # ending anyway: no reconnect
                    break
                refresh = "AccessTokenExpired" in text or "expired" in text.lower()
                retry_after = exc.retry_after if isinstance(exc, imap_idle.ServerClosed) else None
                delay = backoff.next(retry_after or idlewire.suggested_backoff(text))
                yield Notice(f"{text}; reconnecting in {delay:.1f} s")
                if self.stopper.sleep(delay):
                    break
        yield Notice(f"stopped watching {self.folder!r} for {self.account}")

    def _token_expiring(self) -> bool:
        expiry = self.expires_at()
        return expiry is not None and expiry - time.time() < 30

    def _session(self) -> Generator[Notice | FetchedRecord, None, bool]:
        """One connection, until it must be replaced (returns True: token renewal) or a stop
        request (returns False). Failures propagate to :meth:`run`."""
        writable = bool(self.options.mark_seen or self.options.move_to)
        self.connections += 1
        with imap_client.connect(self.settings, self.provider) as session:
            imap_idle.install(session)
            info = session.select(self.folder, readonly=not writable)
            session.conn.untagged_responses.clear()  # SELECT's EXISTS is in info: not new mail
            expiry = self.expires_at()
            renew_at = math.inf
            if expiry is not None:
                left = expiry - time.time()
                renew_at = time.monotonic() + left - renewal_margin(left)
            can_idle = session.has_capability("IDLE")
            how = "IDLE" if can_idle else f"polling every {self.options.poll:g} s (no IDLE)"
            yield Notice(f"watching {self.folder!r} for {self.account} ({how})")
            while True:
                yield from self._catch_up(session, info)
                if self.stopper.stopped:
                    return False
                if time.monotonic() >= renew_at:
                    return True
                if session.conn.untagged_responses.pop("EXISTS", None):
                    session.conn.untagged_responses.clear()
                    continue  # mail came in during the pass
                session.conn.untagged_responses.clear()  # nothing piles up over months
                now = time.monotonic()
                if can_idle:
                    until = min(now + self.options.idle_renewal, renew_at)
                    try:
                        result = imap_idle.idle(session, until, self.stopper.fileno(), self.settings.timeout)
                    except imap_idle.IdleRefused as exc:
                        yield Notice(f"{exc.message}; polling every {self.options.poll:g} s instead")
                        can_idle = False
                        continue
                    if result.woken:
                        return False
                else:
                    if self.stopper.sleep(min(now + self.options.poll, renew_at) - now):
                        return False
                    session.call("noop")  # lets the server see new mail before the pass looks

    def _catch_up(self, session: imap_client.ImapSession, info: dict[str, int]) -> Iterator[Notice | FetchedRecord]:
        """Everything after the last processed UID, in order, with fetch's rules; a failing
        handler is retried (same message, same session) after a back-off."""
        retry = Backoff()
        while True:
            fetcher = _WatchFetcher(self.options, self.settings, session, info.get("uidvalidity", 0))
            try:
                for result in fetcher.run(self.state_file, info):
                    yield result
                    if isinstance(result, FetchedRecord):
                        yield Notice(f"processed UID {result.uid} ({result.size} bytes)")
                    if self.stopper.stopped:
                        return
                return
            except HandlerFailed as exc:
                delay = retry.next()
                yield Notice(f"{exc.message}; retrying it (and holding back later messages) in {delay:.1f} s")
                if self.stopper.sleep(delay):
                    return


def watch(
    options: WatchOptions,
    settings: Settings,
    provider: TokenProvider,
    expires_at: Callable[[], float | None] | None = None,
    stopper: Stopper | None = None,
) -> Iterator[Notice | FetchedRecord]:
    """Deliver new mail of ``options.folder`` as it arrives until ``stopper`` is stopped."""
    if not options.maildir and not options.exec_cmd:
        raise UsageError("watch needs a destination: --maildir DIR and/or --exec CMD")
    if options.move_to and options.move_to == options.folder:
        raise UsageError("--move-to must name another folder than --folder")
    watcher = Watcher(options, settings, provider, expires_at, stopper or Stopper())
    busy = f"another fetch or watch is running for {watcher.account} {options.folder!r}"
    with fileutil.FileLock(watcher.state_file.lock_path, options.wait, busy):
        yield from watcher.run()
