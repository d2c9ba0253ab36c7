"""``send``: build a message safely, then send it, print it (--dry-run) or queue it (--queue).

Everything the user typed is validated before any connection, so a bad address or a
header with a line break never leaves a message half-sent.
"""

from __future__ import annotations

import argparse
import copy
import email.policy
import email.utils
import os
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import compose
import fileutil
import smtp_client
from auth import Authenticator, person_present
from config import Settings
from errors import EX_OK, InputFileError, OutputError, UsageError


def _read_text(path: str, what: str) -> str:
    data = fileutil.read_file(Path(path), what)
    return data.decode("utf-8", "replace")


def read_body(args: argparse.Namespace) -> str | None:
    """The text body: --body, --body-file, else standard input when it is not a terminal.

    Empty standard input (cron's /dev/null) is no body, so an --html-file still gets its
    text alternative derived."""
    if args.body is not None:
        return str(args.body)
    if args.body_file is not None:
        return _read_text(args.body_file, "body file")
    if sys.stdin is None or sys.stdin.closed:
        return None
    try:
        if sys.stdin.isatty():
            return None
        data = sys.stdin.buffer.read()
    except (OSError, ValueError) as exc:
        raise InputFileError(f"cannot read the body from standard input: {exc}") from exc
    return data.decode("utf-8", "replace") if data else None


@dataclass
class Outgoing:
    msg: EmailMessage
    sender: str
    recipients: list[str]
    bcc: list[tuple[str, str]]


def build_from_args(args: argparse.Namespace, settings: Settings) -> Outgoing:
    """The message and its envelope, or a MailbotError before anything is sent."""
    sender_text = args.from_ or settings.mailbox or settings.require_username()
    sender = compose.parse_addresses([sender_text], "--from")
    to = compose.parse_addresses(args.to, "--to")
    cc = compose.parse_addresses(args.cc, "--cc")
    bcc = compose.parse_addresses(args.bcc, "--bcc")
    if not (to or cc or bcc):
        raise UsageError("no recipients: give at least one --to, --cc or --bcc")
    reply_to = compose.parse_addresses([args.reply_to], "--reply-to") if args.reply_to else None
    html = _read_text(args.html_file, "HTML file") if args.html_file else None
    text = read_body(args)
    msg, recipients = compose.build_message(
        sender=sender[0],
        to=to,
        cc=cc,
        bcc=bcc,
        subject=compose.check_header_value(args.subject, "--subject"),
        text=text,
        html=html,
        attachments=[Path(p) for p in args.attach],
        reply_to=reply_to,
    )
    compose.check_size(msg, settings.max_message_mb)
    return Outgoing(msg, sender[0][1], recipients, bcc)


def queue_message(directory: Path, outgoing: Outgoing) -> Path:
    """Write the message into the outbox atomically; names sort in queue order.

    Bcc recipients are kept in a Bcc header: ``outbox`` turns them back into envelope
    recipients and strips the header before sending."""
    msg = outgoing.msg
    if outgoing.bcc:
        msg = copy.deepcopy(msg)
        msg["Bcc"] = ", ".join(email.utils.formataddr(pair) for pair in outgoing.bcc)
    name = f"{time.time_ns():020d}-{os.getpid()}.eml"
    path = directory / name
    try:
        fileutil.atomic_write(path, msg.as_bytes(policy=email.policy.SMTP), mode=0o600)
    except OSError as exc:
        raise OutputError(f"cannot write into the queue {directory}: {exc.strerror or exc}") from exc
    return path


def send_command(args: argparse.Namespace, settings: Settings) -> int:
    outgoing = build_from_args(args, settings)
    data = outgoing.msg.as_bytes(policy=email.policy.SMTP)
    if args.dry_run:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return EX_OK
    if args.queue:
        print(queue_message(Path(args.queue), outgoing).name)
        return EX_OK
    auth = Authenticator(settings, interactive=person_present())
    with smtp_client.connect(settings, auth.provider) as session:
        session.send(outgoing.sender, outgoing.recipients, data)
    print(outgoing.msg["Message-ID"])
    return EX_OK
