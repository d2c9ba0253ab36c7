"""``list`` and ``read``: look at mail without changing it.

``list`` costs the same on a 100-message and a 100,000-message folder: EXAMINE gives the
message count, and one FETCH of the last N sequence numbers brings flags, sizes and just
the header fields we show (BODY.PEEK, so nothing is marked read). Filters use one
server-side UID SEARCH and then one UID FETCH.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import imap_client
import imapwire
import messages
import readable
from auth import Authenticator, person_present
from config import Settings
from errors import EX_OK, BadInputError, OutputError

log = logging.getLogger("mailbot.list")
SUMMARY_ITEMS = (
    "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT MESSAGE-ID)])"
)


def search_criteria(args: argparse.Namespace) -> tuple[list[str], bytes | None]:
    """UID SEARCH criteria for the filters, and at most one non-ASCII text sent as a literal.

    imaplib can send only one literal per command, so two non-ASCII filters are refused."""
    criteria: list[str] = []
    literal: bytes | None = None
    literal_key: str | None = None
    if args.unseen:
        criteria.append("UNSEEN")
    if args.since:
        criteria += ["SINCE", imapwire.search_date(args.since)]
    for key, value in (("FROM", args.from_), ("SUBJECT", args.subject)):
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


def list_messages(
    session: imap_client.ImapSession, args: argparse.Namespace
) -> list[messages.MessageSummary]:
    info = session.select(args.folder, readonly=True)
    criteria, literal = search_criteria(args)
    if criteria:
        if literal is not None:
            session.conn.literal = literal
            data = session.uid("SEARCH", "CHARSET", "UTF-8", *criteria)
        else:
            data = session.uid("SEARCH", *criteria)
        uids = sorted(int(uid) for uid in b" ".join(d for d in data if d).split())[-args.limit :]
        if not uids:
            return []
        raw = session.uid("FETCH", ",".join(map(str, uids)), SUMMARY_ITEMS)
    else:
        exists = info["exists"]
        if exists == 0:
            return []
        raw = session.fetch_seq(f"{max(1, exists - args.limit + 1)}:{exists}", SUMMARY_ITEMS)
    summaries = []
    for item in imapwire.parse_fetch(raw):
        if item.uid is None:  # an unsolicited FETCH (flag change by another client)
            continue
        summaries.append(
            messages.summarize(
                item.uid,
                item.flags,
                item.size or 0,
                item.sections.get("HEADER", b""),
                messages.parse_internaldate(item.internaldate) if item.internaldate else None,
            )
        )
    summaries.sort(key=lambda s: s.uid, reverse=True)
    return summaries[: args.limit]


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    auth = Authenticator(settings, interactive=person_present())
    with imap_client.connect(settings, auth.provider) as session:
        summaries = list_messages(session, args)
    if args.json:
        json.dump([s.to_json() for s in summaries], sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return EX_OK
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    for summary in summaries:
        print(messages.format_list_line(summary, width))
    return EX_OK


def read_command(args: argparse.Namespace, settings: Settings) -> int:
    auth = Authenticator(settings, interactive=person_present())
    with imap_client.connect(settings, auth.provider) as session:
        session.select(args.folder, readonly=not args.mark_read)
        fetched = imapwire.parse_fetch(session.uid("FETCH", str(args.uid), "(UID FLAGS BODY.PEEK[])"))
        found = [item for item in fetched if item.uid == args.uid and "" in item.sections]
        if not found:
            raise BadInputError(f"there is no message with UID {args.uid} in {args.folder!r}")
        raw = found[0].sections[""]
        if args.mark_read:
            session.uid("STORE", str(args.uid), "+FLAGS.SILENT", "(\\Seen)")
    if args.raw:
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
        if not args.save_attachments:
            return EX_OK
    message = readable.parse_for_reading(raw)
    if not args.raw:
        print(readable.format_readable(message))
    if args.save_attachments:
        directory = Path(args.save_attachments)
        for index, attachment in enumerate(message.attachments, 1):
            name = readable.safe_filename(attachment.filename, f"attachment-{index}")
            try:
                directory.mkdir(parents=True, exist_ok=True)
                path = readable.save_unique(directory, name, attachment.payload)
            except OSError as exc:
                raise OutputError(f"cannot save {name} into {directory}: {exc.strerror or exc}") from exc
            print(f"saved {path}", file=sys.stderr)
    return EX_OK
