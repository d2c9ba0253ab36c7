"""``outbox DIR``: send every queued ``.eml`` over one SMTP connection, losing nothing.

Like a mail queue: a message leaves ``DIR`` only by moving to ``DIR/sent/`` after the
server accepted it, or to ``DIR/failed/`` (with a ``.error`` file saying why) after a
permanent refusal. A temporary failure leaves it, and everything after it, in place for
the next run. Sending is paced to ``MAILBOT_SEND_RATE`` messages per minute so Exchange's
limit is respected instead of collecting 4xx refusals.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import compose
import fileutil
import smtp_client
from auth import Authenticator, person_present
from config import Settings
from errors import (
    EX_OK,
    EX_UNAVAILABLE,
    BadInputError,
    InputFileError,
    MailbotError,
    RecipientsRefused,
    ServiceRefused,
)

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


def _move(path: Path, folder: str) -> Path:
    target_dir = path.parent / folder
    target_dir.mkdir(exist_ok=True, mode=0o700)
    target = target_dir / path.name
    os.replace(path, target)
    fileutil.fsync_dir(target_dir)
    fileutil.fsync_dir(path.parent)
    return target


def _note(path: Path, text: str) -> None:
    fileutil.atomic_write(path.with_name(path.name + ".error"), (text + "\n").encode(), mode=0o600)


class Outbox:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.directory = Path(args.directory)
        self.auth = Authenticator(settings, interactive=person_present())
        self.stack = ExitStack()
        self.session: smtp_client.SmtpSession | None = None
        self.connections = 0
        self.failed = 0

    def connect(self) -> smtp_client.SmtpSession:
        if self.session is None:
            self.session = self.stack.enter_context(smtp_client.connect(self.settings, self.auth.provider))
            self.connections += 1
        return self.session

    def reconnect(self) -> smtp_client.SmtpSession:
        self.stack.close()
        self.stack = ExitStack()
        self.session = None
        return self.connect()

    def queued(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.suffix == ".eml" and p.is_file())
        except OSError as exc:
            raise InputFileError(f"cannot read the queue {self.directory}: {exc.strerror or exc}") from exc

    def run(self) -> int:
        pacer = Pacer(self.settings.send_rate)
        with self.stack:
            for path in self.queued():
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:
                    continue  # taken by someone else meanwhile (should not happen under the lock)
                sender, recipients, data = compose.envelope_from_raw(raw)
                if not sender or not recipients:
                    self.fail(
                        path,
                        "the message has no From address" if not sender else "the message has no recipients",
                    )
                    continue
                pacer.wait()
                self.send_one(path, sender, recipients, crlf(data))
        return EX_UNAVAILABLE if self.failed else EX_OK

    def send_one(self, path: Path, sender: str, recipients: list[str], data: bytes) -> None:
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
                self.report(path, _move(path, "sent"), "partly-sent", exc.message)
                _note(path.parent / "sent" / path.name, exc.message)
                self.failed += 1
                return
            self.fail(path, exc.message)
            return
        except (ServiceRefused, BadInputError) as exc:
            self.fail(path, exc.message + (f"\nhint: {exc.hint}" if exc.hint else ""))
            return
        except MailbotError:
            # Temporary (network, 4xx) or sign-in: leave this and later messages queued.
            log.info("stopping: %s stays queued", path.name)
            raise
        self.report(path, _move(path, "sent"), "sent", None)

    def fail(self, path: Path, reason: str) -> None:
        target = _move(path, "failed")
        _note(target, reason)
        print(f"failed: {path.name}: {reason.splitlines()[0]}", file=sys.stderr)
        self.report(path, target, "failed", reason)
        self.failed += 1

    def report(self, path: Path, target: Path, status: str, reason: str | None) -> None:
        if self.args.json:
            print(
                json.dumps({"file": path.name, "status": status, "path": str(target), "error": reason}),
                flush=True,
            )
        elif status != "failed":
            print(f"{status}: {path.name}")


def outbox_command(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        raise InputFileError(f"the queue folder {directory} does not exist")
    busy = f"another outbox run is sending from {directory}"
    with fileutil.FileLock(directory / ".outbox.lock", args.wait, busy):
        box = Outbox(args, settings)
        status = box.run()
    log.info("outbox: %d connection(s)", box.connections)
    if status != EX_OK:
        raise ServiceRefused(
            f"{box.failed} message(s) were refused by the server",
            hint=f"the reasons are in the .error files in {directory / 'failed'} (and {directory / 'sent'})",
        )
    return status
