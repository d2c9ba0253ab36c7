"""``fetch``: hand every new message to a Maildir and/or a command, once.

The promise is at-least-once with at most one duplicate after a crash: the state file
(UIDVALIDITY, highest processed UID, its INTERNALDATE) is written atomically after each
message, so a kill at any moment re-processes at most the message in flight and never
skips one. Messages come down in UID batches bounded by size (``BODY.PEEK[]``, flags
untouched), so memory is bounded by the batch, not by how much mail is waiting.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mailbotcore.commands.options import FetchOptions
from mailbotcore.config import Settings, child_environment
from mailbotcore.errors import ServiceRefused, TemporaryFailure, UsageError
from mailbotcore.mail import headers as messages
from mailbotcore.net import imap as imap_client
from mailbotcore.results import FetchedRecord, Notice
from mailbotcore.store import files as fileutil
from mailbotcore.store import maildir
from mailbotcore.store.fetch_state import FetchState, StateFile
from mailbotcore.wire import imap as imapwire
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.fetch")
SIZE_ITEMS = "(UID RFC822.SIZE INTERNALDATE)"
BODY_ITEMS = "(UID BODY.PEEK[])"  # size and INTERNALDATE come from SIZE_ITEMS; FLAGS are unused


@dataclass
class NewMessage:
    uid: int
    size: int
    internaldate: float | None


def _timestamp(value: str | None) -> float | None:
    parsed = messages.parse_internaldate(value) if value else None
    return parsed.timestamp() if parsed else None


def _compact(uids: list[int]) -> str:
    """UID set with ranges: 1,2,3,7 -> 1:3,7 (keeps commands short for long runs)."""
    parts: list[str] = []
    start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def batches(items: list[NewMessage], limit_bytes: int) -> Iterator[list[NewMessage]]:
    """Consecutive groups whose total size stays under ``limit_bytes`` (a bigger message goes alone)."""
    batch: list[NewMessage] = []
    total = 0
    for item in items:
        if batch and total + item.size > limit_bytes:
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += item.size
    if batch:
        yield batch


class Fetcher:
    """One fetch run over an open session: plan what is new, then deliver it in order."""

    def __init__(
        self, options: FetchOptions, settings: Settings, session: imap_client.ImapSession, uidvalidity: int
    ) -> None:
        self.options = options
        self.uidvalidity = uidvalidity
        self.settings = settings
        self.session = session
        self.folder = options.folder
        self.account = settings.mailbox_user
        self.host = re.sub(r"[/:]", "_", socket.gethostname()) or "localhost"
        self.tag = hashlib.sha256(f"{self.account.lower()}\0{self.folder}".encode()).hexdigest()[:8]
        self.notices: list[Notice] = []

    # -- finding what is new -------------------------------------------------------------

    def _sized(self, data: list[Any], above: int = 0) -> list[NewMessage]:
        found = [
            NewMessage(item.uid, item.size or 0, _timestamp(item.internaldate))
            for item in imapwire.parse_fetch(data)
            if item.uid is not None and item.uid > above
        ]
        return sorted(found, key=lambda m: m.uid)

    def list_after(self, last_uid: int) -> list[NewMessage]:
        """Messages with UID > last_uid, sizes included, in one round trip (no SEARCH)."""
        return self._sized(self.session.uid("FETCH", f"{last_uid + 1}:*", SIZE_ITEMS), above=last_uid)

    def newest(self, count: int, exists: int) -> list[NewMessage]:
        if exists == 0:
            return []
        return self._sized(self.session.fetch_seq(f"{max(1, exists - count + 1)}:{exists}", SIZE_ITEMS))

    def arrived_since(self, after: float) -> list[NewMessage]:
        """Messages whose INTERNALDATE is after ``after``: a server-side SEARCH SINCE (whole days,
        one day early for time zones), then their exact dates."""
        day = datetime.fromtimestamp(after - 86400, timezone.utc).date()
        uids = self.session.search(["SINCE", imapwire.search_date(day)])
        if not uids:
            return []
        candidates = self._sized(self.session.uid("FETCH", _compact(uids), SIZE_ITEMS))
        return [m for m in candidates if (m.internaldate or 0.0) > after]

    def plan(self, state: FetchState | None, info: dict[str, int]) -> tuple[list[NewMessage], FetchState]:
        uidvalidity, exists = info.get("uidvalidity", 0), info["exists"]
        if state is None or (state.uidvalidity != uidvalidity and state.last_internaldate is None):
            # One FETCH of the newest messages gives both the starting UID and its arrival time.
            newest = self.newest(max(1, self.options.backfill or 0), exists)
            todo = newest[-self.options.backfill :] if self.options.backfill else []
            start_uid = newest[-1].uid if newest else info.get("uidnext", 1) - 1
            anchor = (todo or newest)[0 if todo else -1].internaldate if newest else None
            base = FetchState(uidvalidity, todo[0].uid - 1 if todo else start_uid, anchor or time.time())
            self.notices.append(
                Notice(
                    f"first fetch of {self.folder!r} for {self.account}: "
                    + (
                        f"processing the newest {len(todo)} existing messages, then new mail"
                        if todo
                        else f"existing messages left alone (up to UID {start_uid}); new mail from now on "
                        "(use --backfill N to process the newest N)"
                    )
                )
            )
            return todo, base
        if state.uidvalidity != uidvalidity and state.last_internaldate is not None:
            # The folder was recreated and UIDs mean nothing now; arrival times still do.
            log.warning(
                "UIDVALIDITY of %r changed (%s -> %s): the folder was recreated; continuing with "
                "messages that arrived after the last processed one",
                self.folder,
                state.uidvalidity,
                uidvalidity,
            )
            todo = self.arrived_since(state.last_internaldate)
            start_uid = todo[0].uid - 1 if todo else info.get("uidnext", 1) - 1
            return todo, FetchState(uidvalidity, start_uid, state.last_internaldate)
        return self.list_after(state.last_uid), state

    # -- processing ----------------------------------------------------------------------

    def run(self, state_file: StateFile, info: dict[str, int]) -> Iterator[Notice | FetchedRecord]:
        previous = state_file.load()
        todo, state = self.plan(previous, info)
        yield from self.notices
        if previous is None or previous != state:
            state_file.save(state)
        limit = max(1, int(self.options.batch_mb * 1024 * 1024))
        for batch in batches(todo, limit):
            data = self.session.uid("FETCH", _compact([m.uid for m in batch]), BODY_ITEMS)
            fetched = {item.uid: item for item in imapwire.parse_fetch(data) if item.uid is not None}
            del data  # free the batch's raw response as we go
            for new in batch:
                item = fetched.pop(new.uid, None)
                if item is None or "" not in item.sections:
                    self.confirm_gone(new.uid)  # or stop here: never advance past an undelivered UID
                    state = FetchState(state.uidvalidity, new.uid, state.last_internaldate)
                    state_file.save(state)
                    continue
                raw = item.sections.pop("")
                record = self.process(new, raw)
                self.after_processing(new.uid)
                state = FetchState(state.uidvalidity, new.uid, new.internaldate or state.last_internaldate)
                state_file.save(state)
                yield record

    def confirm_gone(self, uid: int) -> None:
        """The server listed ``uid`` but did not return it: skip it only if the server confirms
        it is gone (expunged meanwhile, one warning); otherwise stop (75) before it."""
        if uid in self.session.search(["UID", str(uid)]):
            raise TemporaryFailure(
                f"{self.session.where} listed UID {uid} in {self.folder!r} but did not return it; stopping "
                f"before it (UID {uid} and later messages are fetched on the next run)"
            )
        log.warning("UID %s in %r was deleted on the server before it could be fetched; skipping it", uid, self.folder)

    def process(self, new: NewMessage, raw: bytes) -> FetchedRecord:
        """Deliver one message to the Maildir and/or the handler; the record says where it went."""
        end = raw.find(b"\r\n\r\n")
        header_block = raw[: end if end >= 0 else raw.find(b"\n\n")]  # a slice: no copy of the body
        summary = messages.summarize(new.uid, [], len(raw), header_block)
        path: str | None = None
        exit_status: int | None = None
        local = maildir.to_local(raw)  # LF line endings, for the Maildir and the handler alike
        if self.options.maildir is not None:
            name = f"M{new.uid}V{self.uidvalidity}T{self.tag}.{self.host}"
            path = str(maildir.deliver(self.options.maildir, name, local, new.internaldate))
        if self.options.exec_cmd:
            exit_status = self.run_handler(new.uid, local, summary)
        log.info("processed UID %s (%d bytes)", new.uid, len(raw))
        return FetchedRecord(
            uid=new.uid,
            folder=self.folder,
            date=summary.date.isoformat() if summary.date else None,
            from_=summary.from_,
            from_address=summary.from_address,
            subject=summary.subject,
            message_id=summary.message_id,
            size=len(raw),
            path=path,
            exit_status=exit_status,
        )

    def run_handler(self, uid: int, raw: bytes, summary: messages.MessageSummary) -> int:
        env = dict(
            child_environment(),  # without OUTLOOK_CLIENT_SECRET & co.
            MAILBOT_UID=str(uid),
            MAILBOT_UIDVALIDITY=str(self.uidvalidity),
            MAILBOT_FOLDER=self.folder,
            MAILBOT_FROM=summary.from_header,
            MAILBOT_FROM_ADDRESS=summary.from_address or "",
            MAILBOT_SUBJECT=summary.subject,
        )
        # Handler output goes to our stderr: stdout is reserved for --json.
        command = self.options.exec_cmd or "cat >/dev/null"
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=sys.stderr.fileno(),
            env=env,
            start_new_session=True,  # so a timeout kills the whole handler, not just the shell
        )
        try:
            proc.communicate(raw, timeout=self.options.exec_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TemporaryFailure(
                f"handler for UID {uid} did not finish within {self.options.exec_timeout:g} s; it was killed "
                f"and UID {uid} will be retried next run",
            ) from None
        except BrokenPipeError:
            proc.wait()
        if proc.returncode != 0:
            raise TemporaryFailure(
                f"handler for UID {uid} exited with status {proc.returncode}; UID {uid} and later "
                "messages will be retried next run"
            )
        return proc.returncode

    def after_processing(self, uid: int) -> None:
        if self.options.mark_seen:
            self.session.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Seen)")
        if self.options.move_to:
            target = imapwire.quoted_folder(self.options.move_to).decode("ascii")
            if self.session.has_capability("MOVE"):
                self.session.uid("MOVE", str(uid), target)
            else:
                self.session.uid("COPY", str(uid), target)
                self.session.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
                self.session.uid("EXPUNGE", str(uid))  # UIDPLUS: only this message, never others


def fetch(options: FetchOptions, settings: Settings, provider: TokenProvider) -> Iterator[Notice | FetchedRecord]:
    """Deliver every new message of ``options.folder``, in UID order, yielding a record for each."""
    if not options.maildir and not options.exec_cmd:
        raise UsageError("fetch needs a destination: --maildir DIR and/or --exec CMD")
    if options.move_to and options.move_to == options.folder:
        raise UsageError("--move-to must name another folder than --folder")
    state_file = StateFile(settings.state_dir, settings.mailbox_user, options.folder)
    busy = f"another fetch is running for {settings.mailbox_user} {options.folder!r}"
    writable = bool(options.mark_seen or options.move_to)
    count = 0
    with (
        fileutil.FileLock(state_file.lock_path, options.wait, busy),
        imap_client.connect(settings, provider) as session,
    ):
        info = session.select(options.folder, readonly=not writable)
        if options.move_to and not (session.has_capability("MOVE") or session.has_capability("UIDPLUS")):
            raise ServiceRefused(
                f"{session.where} offers neither MOVE nor UIDPLUS, so --move-to cannot remove only the moved "
                "message from the folder; nothing was fetched or copied",
                hint="run fetch without --move-to (the state file keeps track of what was fetched)",
            )
        for result in Fetcher(options, settings, session, info.get("uidvalidity", 0)).run(state_file, info):
            count += isinstance(result, FetchedRecord)
            yield result
    log.info("fetched %d new message(s) from %r", count, options.folder)
