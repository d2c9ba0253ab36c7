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
from mailbotcore.config import Settings
from mailbotcore.errors import (
    BadInputError,
    InputFileError,
    MailbotError,
    RecipientsRefused,
    ServiceRefused,
)
from mailbotcore.mail import compose
from mailbotcore.net import smtp as smtp_client
from mailbotcore.results import OutboxRecord
from mailbotcore.store import files as fileutil
from mailbotcore.store import queue
from mailbotcore.wire import sasl
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
    """Files from other programs may use bare LF; SMTP needs CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


class Outbox:
    """One run over the queue: one SMTP connection, messages in order, each sent or set aside."""

    def __init__(self, options: OutboxOptions, settings: Settings, provider: TokenProvider) -> None:
        self.settings = settings
        self.directory = options.directory
        self.provider = sasl.lasting(provider, sasl.LONG_OPERATION_SECONDS)  # a token that outlasts the run
        self.stack = ExitStack()
        self.session: smtp_client.SmtpSession | None = None
        self.connections = 0
        self.failed = 0

    def connect(self) -> smtp_client.SmtpSession:
        if self.session is None:
            self.session = self.stack.enter_context(smtp_client.connect(self.settings, self.provider))
            self.connections += 1
        return self.session

    def reconnect(self) -> smtp_client.SmtpSession:
        self.stack.close()
        self.stack = ExitStack()
        self.session = None
        return self.connect()

    def run(self) -> Iterator[OutboxRecord]:
        pacer = Pacer(self.settings.send_rate)
        with self.stack:
            for path in queue.queued(self.directory):
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:
                    continue  # taken by someone else meanwhile (should not happen under the lock)
                sender, recipients, data = compose.envelope_from_raw(raw)
                if not sender or not recipients:
                    yield self.fail(
                        path,
                        "the message has no From address" if not sender else "the message has no recipients",
                    )
                    continue
                pacer.wait()
                yield self.send_one(path, sender, recipients, crlf(data))

    def send_one(self, path: Path, sender: str, recipients: list[str], data: bytes) -> OutboxRecord:
        session = self.connect()
        try:
            try:
                session.send(sender, recipients, data)
            except smtp_client.NotStarted:
                # The server closed an idle connection before this transaction: nothing was sent.
                log.info("connection closed by the server; reconnecting")
                self.reconnect().send(sender, recipients, data)
        except RecipientsRefused as exc:
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

    def fail(self, path: Path, reason: str) -> OutboxRecord:
        target = queue.move(path, "failed")
        queue.note(target, reason)
        self.failed += 1
        return OutboxRecord(path.name, "failed", str(target), reason)


def send_queued(options: OutboxOptions, settings: Settings, provider: TokenProvider) -> Iterator[OutboxRecord]:
    """Send every queued message, yielding what became of each; refusals raise at the end."""
    directory = options.directory
    if not directory.is_dir():
        raise InputFileError(f"the queue folder {directory} does not exist")
    busy = f"another outbox run is sending from {directory}"
    with fileutil.FileLock(directory / ".outbox.lock", options.wait, busy):
        box = Outbox(options, settings, provider)
        yield from box.run()
    log.info("outbox: %d connection(s)", box.connections)
    if box.failed:
        raise ServiceRefused(
            f"{box.failed} message(s) were refused by the server",
            hint=f"the reasons are in the .error files in {directory / 'failed'} (and {directory / 'sent'})",
        )
