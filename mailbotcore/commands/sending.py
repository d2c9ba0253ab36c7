"""``send``: build a message safely, then send it, print it (--dry-run) or queue it (--queue).

Everything the user typed is validated before any connection, so a bad address or a
header with a line break never leaves a message half-sent.
"""

from __future__ import annotations

import copy
import dataclasses
import email.policy
import email.utils
import os
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from mailbotcore.commands.options import SendOptions
from mailbotcore.config import Settings
from mailbotcore.errors import UsageError
from mailbotcore.mail import compose
from mailbotcore.results import SendResult
from mailbotcore.store import files as fileutil
from mailbotcore.wire.sasl import TokenProvider

if TYPE_CHECKING:
    from mailbotcore.commands.transport import GraphProviders


def _read_text(path: Path, what: str) -> str:
    data = fileutil.read_file(path, what)
    return data.decode("utf-8", "replace")


@dataclass
class Outgoing:
    msg: EmailMessage
    sender: str
    recipients: list[str]
    bcc: list[tuple[str, str]]


def build_outgoing(options: SendOptions, settings: Settings) -> Outgoing:
    """The message and its envelope, or a MailbotError before anything is sent."""
    sender_text = options.from_ or settings.mailbox or settings.require_username()
    sender = compose.parse_addresses([sender_text], "--from")
    to = compose.parse_addresses(list(options.to), "--to")
    cc = compose.parse_addresses(list(options.cc), "--cc")
    bcc = compose.parse_addresses(list(options.bcc), "--bcc")
    if not (to or cc or bcc):
        raise UsageError("no recipients: give at least one --to, --cc or --bcc")
    reply_to = compose.parse_addresses([options.reply_to], "--reply-to") if options.reply_to else None
    html = _read_text(options.html_file, "HTML file") if options.html_file else None
    text = _read_text(options.body_file, "body file") if options.body_file else options.body
    msg, recipients = compose.build_message(
        sender=sender[0],
        to=to,
        cc=cc,
        bcc=bcc,
        subject=compose.check_header_value(options.subject, "--subject"),
        text=text,
        html=html,
        attachments=list(options.attach),
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
        raise fileutil.os_failure(exc, "write into the queue", directory) from exc
    return path


def send(
    options: SendOptions,
    settings: Settings,
    provider: TokenProvider | None,
    graph_providers: GraphProviders | None = None,
) -> SendResult:
    """Send the message now, queue it (``options.queue``) or only build it (``options.dry_run``).

    It goes out over SMTP or Microsoft Graph as ``commands.transport`` chooses (OUTLOOK_SEND_VIA);
    ``graph_providers(scopes)`` gives Graph tokens (``Authenticator.provider_for``)."""
    outgoing = build_outgoing(options, settings)
    data = outgoing.msg.as_bytes(policy=email.policy.SMTP)
    result = SendResult(
        "sent", str(outgoing.msg["Message-ID"]), sender=outgoing.sender, recipients=tuple(outgoing.recipients)
    )
    if options.dry_run:
        return dataclasses.replace(result, status="dry-run", data=data)
    if options.queue:
        queued = queue_message(options.queue, outgoing)
        return dataclasses.replace(result, status="queued", queued_file=queued.name)
    if provider is None:
        raise UsageError("sending needs a sign-in")
    from mailbotcore.commands.transport import Transport  # smtplib/ssl/requests: not for --queue or --dry-run

    with Transport(settings, provider, graph_providers) as transport:
        transport.send(outgoing.sender, outgoing.recipients, data)
    return result
