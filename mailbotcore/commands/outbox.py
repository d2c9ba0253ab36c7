"""``outbox DIR``: send every queued ``.eml`` over one SMTP connection, losing nothing.

Like a mail queue: a message leaves ``DIR`` only by moving to ``DIR/sent/`` after the
server accepted it, or to ``DIR/failed/`` (with a ``.error`` file saying why) after a
permanent refusal. A temporary failure leaves it, and everything after it, in place for
the next run. Sending is paced to ``MAILBOT_SEND_RATE`` messages per minute so Exchange's
limit is respected instead of collecting 4xx refusals.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from mailbotcore.commands.options import OutboxOptions
from mailbotcore.commands.transport import GraphProviders, Transport
from mailbotcore.config import Settings
from mailbotcore.errors import (
    BadInputError,
    InputFileError,
    MailbotError,
    RecipientsDeferred,
    RecipientsRefused,
    ServiceRefused,
    TemporaryFailure,
)
from mailbotcore.mail import compose
from mailbotcore.net import smtp as smtp_client
from mailbotcore.results import OutboxRecord
from mailbotcore.store import files as fileutil
from mailbotcore.store import queue
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.outbox")
WINDOW = 60.0


class Pacer:
    """Spread sends evenly: at least 60/rate seconds apart, so ``rate`` per minute is never exceeded
    (Exchange Online counts 30 per minute) and nothing is refused for going too fast."""

    def __init__(self, rate: float) -> None:
        self.interval = WINDOW / rate
        self.last: float | None = None

    def wait(self) -> None:
        if self.last is not None:
            pause = self.last + self.interval - time.monotonic()
            if pause > 0:
                log.debug("pacing: waiting %.2f s", pause)
                time.sleep(pause)
        self.last = time.monotonic()


def crlf(data: bytes) -> bytes:
    """Files from other programs may use bare LF (or bare CR); SMTP needs CRLF."""
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


MAX_LINE = 998  # octets, without the CRLF (RFC 5321 4.5.3.1.6)


def overlong_line(data: bytes) -> int | None:
    """The number of the first line longer than SMTP allows in ``data`` (CRLF), or None."""
    match = re.search(rb"[^\r\n]{%d}" % (MAX_LINE + 1), data)
    return data.count(b"\n", 0, match.start()) + 1 if match else None


class Outbox:
    """One run over the queue: one SMTP connection, messages in order, each sent or set aside."""

    def __init__(
        self,
        options: OutboxOptions,
        settings: Settings,
        provider: TokenProvider,
        graph_providers: GraphProviders | None = None,
    ) -> None:
        self.settings = settings
        self.directory = options.directory
        self.provider = provider
        # SMTP or Microsoft Graph (OUTLOOK_SEND_VIA), one message at a time: never more than one
        # request per mailbox in flight (Graph allows 4), paced by the same Pacer either way.
        self.stack = ExitStack()
        self.transport = self.stack.enter_context(Transport(settings, self.provider, graph_providers))
        self.failed = 0
        self.deferred = 0

    @property
    def connections(self) -> int:
        return self.transport.connections

    def run(self) -> Iterator[OutboxRecord]:
        pacer = Pacer(self.settings.send_rate)
        with self.stack:
            for path in queue.queued(self.directory):
                raw = queue.read(path)
                if raw is None:
                    continue  # taken by someone else meanwhile (should not happen under the lock)
                # CRLF first (bare CR and LF alike): the header fields are found by their line ends.
                remaining, raw = queue.remaining_recipients(crlf(raw))
                sender, recipients, data = compose.envelope_from_raw(raw)
                if remaining is not None:  # sent before to the others: only these are left
                    recipients = remaining
                if not sender or not recipients:
                    yield self.fail(
                        path,
                        "the message has no From address" if not sender else "the message has no recipients",
                    )
                    continue
                if (line := overlong_line(data)) is not None:
                    yield self.fail(
                        path,
                        f"line {line} is longer than the {MAX_LINE} octets SMTP allows; nothing was sent",
                        hint="wrap long lines, or encode the body (quoted-printable or base64) before queueing it",
                    )
                    continue
                pacer.wait()
                yield self.send_one(path, sender, recipients, data)

    def send_one(self, path: Path, sender: str, recipients: list[str], data: bytes) -> OutboxRecord:
        try:
            try:
                self.transport.send(sender, recipients, data)
            except smtp_client.NotStarted:
                # The server closed an idle connection before this transaction: nothing was sent.
                log.info("connection closed by the server; reconnecting")
                self.transport.reconnect()
                self.transport.send(sender, recipients, data)
        except RecipientsDeferred as exc:
            return self.defer(path, exc.deferred, exc.message)
        except RecipientsRefused as exc:
            if exc.deferred:
                # Refused for good for some, for now for others: the permanent part goes to failed/,
                # the message stays queued for the deferred recipients only.
                self.fail_copy(path, exc.message + (f"\nhint: {exc.hint}" if exc.hint else ""))
                return self.defer(path, exc.deferred, exc.message)
            if exc.accepted:  # accepted for some: it is sent, never send it again
                target = queue.move(path, "sent")
                queue.note(target, exc.message)
                self.failed += 1
                return OutboxRecord(path.name, "partly-sent", str(target), exc.message)
            return self.fail(path, exc.message)
        except (ServiceRefused, BadInputError) as exc:
            return self.fail(path, exc.message + (f"\nhint: {exc.hint}" if exc.hint else ""))
        except MailbotError:
            # Temporary (network, 4xx) or sign-in: leave this and later messages queued.
            log.info("stopping: %s stays queued", path.name)
            raise
        return OutboxRecord(path.name, "sent", str(queue.move(path, "sent")))

    def fail(self, path: Path, reason: str, hint: str | None = None) -> OutboxRecord:
        reason += f"\nhint: {hint}" if hint else ""
        target = queue.move(path, "failed")
        queue.note(target, reason)
        self.failed += 1
        return OutboxRecord(path.name, "failed", str(target), reason)

    def defer(self, path: Path, deferred: list[str], reason: str) -> OutboxRecord:
        """Keep ``path`` queued for the ``deferred`` recipients only (the others have it)."""
        queue.keep_for(path, deferred)
        self.deferred += 1
        log.info("%s stays queued for %s", path.name, ", ".join(deferred))
        return OutboxRecord(path.name, "deferred", str(path), reason)

    def fail_copy(self, path: Path, reason: str) -> None:
        """A copy in failed/ (with its reason) of a message that also stays queued."""
        _, raw = queue.remaining_recipients(queue.read(path) or b"")
        queue.note(queue.copy_to(path, "failed", raw), reason)
        self.failed += 1


def send_queued(
    options: OutboxOptions,
    settings: Settings,
    provider: TokenProvider,
    graph_providers: GraphProviders | None = None,
) -> Iterator[OutboxRecord]:
    """Send every queued message, yielding what became of each; refusals raise at the end."""
    directory = options.directory
    if not directory.is_dir():
        raise InputFileError(f"the queue folder {directory} does not exist")
    busy = f"another outbox run is sending from {directory}"
    with fileutil.FileLock(directory / ".outbox.lock", options.wait, busy):
        box = Outbox(options, settings, provider, graph_providers)
        yield from box.run()
    log.info("outbox: %d connection(s) over %s", box.connections, box.transport.via)
    if box.deferred:
        refused = f"; {box.failed} message(s) were refused" if box.failed else ""
        raise TemporaryFailure(
            f"{box.deferred} message(s) stay queued for recipients the server refused for now{refused}",
            hint="the next outbox run sends them to those recipients only"
            + (f"; the reasons for the refusals are in {directory / 'failed'}" if box.failed else ""),
        )
    if box.failed:
        raise ServiceRefused(
            f"{box.failed} message(s) were refused by the server",
            hint=f"the reasons are in the .error files in {directory / 'failed'} (and {directory / 'sent'})",
        )
