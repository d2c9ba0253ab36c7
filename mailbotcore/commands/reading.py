"""``list`` and ``read``: look at mail without changing it.

``list`` costs the same on a 100-message and a 100,000-message folder: EXAMINE gives the
message count, and one FETCH of the last N sequence numbers brings flags, sizes and just
the header fields we show (BODY.PEEK, so nothing is marked read). Filters use one
server-side UID SEARCH and then one UID FETCH.
"""

from __future__ import annotations

import logging

from mailbotcore.commands.options import ListOptions, ReadOptions
from mailbotcore.config import Settings
from mailbotcore.errors import BadInputError, OutputError
from mailbotcore.mail import headers
from mailbotcore.mail.headers import MessageSummary
from mailbotcore.net import imap as imap_client
from mailbotcore.results import ReadResult
from mailbotcore.wire import imap as imapwire
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.list")
SUMMARY_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT MESSAGE-ID)])"


def search_criteria(options: ListOptions) -> tuple[list[str], bytes | None]:
    """UID SEARCH criteria for the filters, and at most one non-ASCII text sent as a literal.

    imaplib can send only one literal per command, so two non-ASCII filters are refused."""
    criteria: list[str] = []
    literal: bytes | None = None
    literal_key: str | None = None
    if options.unseen:
        criteria.append("UNSEEN")
    if options.since:
        criteria += ["SINCE", imapwire.search_date(options.since)]
    for key, value in (("FROM", options.from_), ("SUBJECT", options.subject)):
        if value is None:
            continue
        if "\r" in value or "\n" in value:
            raise BadInputError(f"--{key.lower()} must be one line")
        if value.isascii():
            criteria += [key, imapwire.quote(value).decode("ascii")]
        elif literal_key is None:
            literal_key, literal = key, value.encode("utf-8")
        else:
            raise BadInputError("only one of --from and --subject may contain non-ASCII text")
    if literal_key is not None:
        criteria.append(literal_key)  # imaplib sends the literal at the end of the command
    return criteria, literal


def list_messages(options: ListOptions, settings: Settings, provider: TokenProvider) -> list[MessageSummary]:
    """The newest ``options.limit`` messages matching the filters, newest first; nothing is changed."""
    with imap_client.connect(settings, provider) as session:
        return _summaries(session, options)


def _summaries(session: imap_client.ImapSession, options: ListOptions) -> list[MessageSummary]:
    info = session.select(options.folder, readonly=True)
    criteria, literal = search_criteria(options)
    if criteria:
        uids = session.search(criteria, literal)[-options.limit :]
        if not uids:
            return []
        raw = session.uid("FETCH", ",".join(map(str, uids)), SUMMARY_ITEMS)
    else:
        exists = info["exists"]
        if exists == 0:
            return []
        raw = session.fetch_seq(f"{max(1, exists - options.limit + 1)}:{exists}", SUMMARY_ITEMS)
    summaries = []
    for item in imapwire.parse_fetch(raw):
        if item.uid is None:  # an unsolicited FETCH (flag change by another client)
            continue
        summaries.append(
            headers.summarize(
                item.uid,
                item.flags,
                item.size or 0,
                item.sections.get("HEADER", b""),
                headers.parse_internaldate(item.internaldate) if item.internaldate else None,
            )
        )
    summaries.sort(key=lambda s: s.uid, reverse=True)
    return summaries[: options.limit]


def read_message(options: ReadOptions, settings: Settings, provider: TokenProvider) -> ReadResult:
    """One message by UID: its exact bytes and readable text; attachments saved when asked."""
    from mailbotcore.mail import readable  # HTML to text etc.: only read needs it (list stays cheap)

    with imap_client.connect(settings, provider) as session:
        session.select(options.folder, readonly=not options.mark_read)
        fetched = imapwire.parse_fetch(session.uid("FETCH", str(options.uid), "(UID FLAGS BODY.PEEK[])"))
        found = [item for item in fetched if item.uid == options.uid and "" in item.sections]
        if not found:
            raise BadInputError(f"there is no message with UID {options.uid} in {options.folder!r}")
        raw = found[0].sections[""]
        if options.mark_read:
            session.uid("STORE", str(options.uid), "+FLAGS.SILENT", "(\\Seen)")
    if options.raw and not options.save_attachments:
        return ReadResult(options.uid, raw, "", (), show_raw=True)
    message = readable.parse_for_reading(raw)
    saved: list[str] = []
    if options.save_attachments:
        directory = options.save_attachments
        for index, attachment in enumerate(message.attachments, 1):
            name = readable.safe_filename(attachment.filename, f"attachment-{index}")
            try:
                directory.mkdir(parents=True, exist_ok=True)
                path = readable.save_unique(directory, name, attachment.payload)
            except OSError as exc:
                raise OutputError(f"cannot save {name} into {directory}: {exc.strerror or exc}") from exc
            saved.append(str(path))
    text = "" if options.raw else readable.format_readable(message)
    return ReadResult(options.uid, raw, text, tuple(saved), show_raw=options.raw)
