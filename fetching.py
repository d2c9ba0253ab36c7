"""``fetch``: hand every new message to a Maildir and/or a command, once.

The promise is at-least-once with at most one duplicate after a crash: the state file
(UIDVALIDITY, highest processed UID, its INTERNALDATE) is written atomically after each
message, so a kill at any moment re-processes at most the message in flight and never
skips one. Messages come down in UID batches bounded by size (``BODY.PEEK[]``, flags
untouched), so memory is bounded by the batch, not by how much mail is waiting.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fileutil
import imap_client
import imapwire
import messages
from auth import Authenticator, person_present
from config import Settings
from errors import EX_OK, OutputError, TemporaryFailure, UsageError

log = logging.getLogger("mailbot.fetch")
SIZE_ITEMS = "(UID RFC822.SIZE INTERNALDATE)"
BODY_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"


@dataclass
class FetchState:
    """Where the last run stopped, for one account and folder."""

    uidvalidity: int
    last_uid: int
    last_internaldate: float | None = None


@dataclass
class NewMessage:
    uid: int
    size: int
    internaldate: float | None


def _slug(text: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:40]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class StateFile:
    def __init__(self, settings: Settings, account: str, folder: str) -> None:
        # Not with_suffix(): the slugs contain dots, and a suffix swap would cut the name there.
        base = f"fetch-{_slug(account.lower())}-{_slug(folder)}"
        self.path = settings.state_dir / f"{base}.json"
        self.lock_path = settings.state_dir / f"{base}.lock"

    def load(self) -> FetchState | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return FetchState(int(data["uidvalidity"]), int(data["last_uid"]), data.get("last_internaldate"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Never guess: a lost state would replay or skip mail.
            raise UsageError(
                f"the fetch state {self.path} is unreadable ({exc}); it was left as it is",
                hint="repair it, or delete it to start afresh from the newest message",
            ) from exc

    def save(self, state: FetchState) -> None:
        fileutil.atomic_write(self.path, json.dumps(asdict(state)).encode(), mode=0o600)


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
    def __init__(
        self, args: argparse.Namespace, settings: Settings, session: imap_client.ImapSession, uidvalidity: int
    ) -> None:
        self.args = args
        self.uidvalidity = uidvalidity
        self.settings = settings
        self.session = session
        self.folder = args.folder
        self.account = settings.mailbox_user
        self.maildir = Path(args.maildir) if args.maildir else None
        self.host = re.sub(r"[/:]", "_", socket.gethostname()) or "localhost"
        self.tag = hashlib.sha256(f"{self.account.lower()}\0{self.folder}".encode()).hexdigest()[:8]
        self.processed = 0

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
        data = self.session.uid("SEARCH", "SINCE", imapwire.search_date(day))
        uids = sorted(int(uid) for uid in b" ".join(d for d in data if d).split())
        if not uids:
            return []
        candidates = self._sized(self.session.uid("FETCH", _compact(uids), SIZE_ITEMS))
        return [m for m in candidates if (m.internaldate or 0.0) > after]

    def plan(self, state: FetchState | None, info: dict[str, int]) -> tuple[list[NewMessage], FetchState]:
        uidvalidity, exists = info.get("uidvalidity", 0), info["exists"]
        if state is None or (state.uidvalidity != uidvalidity and state.last_internaldate is None):
            # One FETCH of the newest messages gives both the starting UID and its arrival time.
            newest = self.newest(max(1, self.args.backfill or 0), exists)
            todo = newest[-self.args.backfill :] if self.args.backfill else []
            start_uid = newest[-1].uid if newest else info.get("uidnext", 1) - 1
            anchor = (todo or newest)[0 if todo else -1].internaldate if newest else None
            base = FetchState(uidvalidity, todo[0].uid - 1 if todo else start_uid, anchor or time.time())
            if not self.args.quiet:
                print(
                    f"first fetch of {self.folder!r} for {self.account}: "
                    + (
                        f"processing the newest {len(todo)} existing messages, then new mail"
                        if todo
                        else f"existing messages left alone (up to UID {start_uid}); new mail from now on "
                        "(use --backfill N to process the newest N)"
                    ),
                    file=sys.stderr,
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

    def run(self, state_file: StateFile, info: dict[str, int]) -> int:
        previous = state_file.load()
        todo, state = self.plan(previous, info)
        if previous is None or previous != state:
            state_file.save(state)
        limit = max(1, int(self.args.batch_mb * 1024 * 1024))
        for batch in batches(todo, limit):
            data = self.session.uid("FETCH", _compact([m.uid for m in batch]), BODY_ITEMS)
            fetched = {item.uid: item for item in imapwire.parse_fetch(data) if item.uid is not None}
            del data  # free the batch's raw response as we go
            for new in batch:
                item = fetched.pop(new.uid, None)
                if item is None or "" not in item.sections:
                    log.info("UID %s vanished before it could be fetched; skipping it", new.uid)
                    continue
                raw = item.sections.pop("")
                self.process(new, raw)
                self.after_processing(new.uid)
                state = FetchState(state.uidvalidity, new.uid, new.internaldate or state.last_internaldate)
                state_file.save(state)
                self.processed += 1
        return self.processed

    def process(self, new: NewMessage, raw: bytes) -> None:
        end = raw.find(b"\r\n\r\n")
        header_block = raw[: end if end >= 0 else raw.find(b"\n\n")]  # a slice: no copy of the body
        summary = messages.summarize(new.uid, [], len(raw), header_block)
        record: dict[str, Any] = {
            "uid": new.uid,
            "folder": self.folder,
            "date": summary.date.isoformat() if summary.date else None,
            "from": summary.from_,
            "subject": summary.subject,
            "size": len(raw),
        }
        if self.maildir is not None:
            try:
                record["path"] = str(self.deliver_maildir(self.maildir, new, raw))
            except OSError as exc:
                raise OutputError(
                    f"cannot deliver UID {new.uid} into the Maildir {self.maildir}: {exc.strerror or exc}"
                ) from exc
        if self.args.exec_cmd:
            record["exit_status"] = self.run_handler(new.uid, raw, summary)
        if self.args.json:
            print(json.dumps(record, ensure_ascii=False), flush=True)
        log.info("processed UID %s (%d bytes)", new.uid, len(raw))

    def deliver_maildir(self, maildir: Path, new: NewMessage, raw: bytes) -> Path:
        """Maildir delivery: write in tmp/, fsync, rename into new/. The name is the same for the
        same message, so a re-delivery after a crash is noticed and not written twice."""
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        when = int(new.internaldate or time.time())
        name = f"{when}.M{new.uid}V{self.uidvalidity}T{self.tag}.{self.host}"
        final = maildir / "new" / name
        if final.exists():
            log.info(
                "UID %s is already in %s (re-run after a crash); not delivering it twice", new.uid, final
            )
            return final
        tmp = maildir / "tmp" / name
        with open(tmp, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, final)
        fileutil.fsync_dir(final.parent)
        return final

    def run_handler(self, uid: int, raw: bytes, summary: messages.MessageSummary) -> int:
        env = dict(
            os.environ,
            MAILBOT_UID=str(uid),
            MAILBOT_UIDVALIDITY=str(self.uidvalidity),
            MAILBOT_FOLDER=self.folder,
            MAILBOT_FROM=summary.from_,
            MAILBOT_SUBJECT=summary.subject,
        )
        # Handler output goes to our stderr: stdout is reserved for --json.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", self.args.exec_cmd],
            stdin=subprocess.PIPE,
            stdout=sys.stderr.fileno(),
            env=env,
            start_new_session=True,  # so a timeout kills the whole handler, not just the shell
        )
        try:
            proc.communicate(raw, timeout=self.args.exec_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise TemporaryFailure(
                f"handler for UID {uid} did not finish within {self.args.exec_timeout:g} s; it was killed "
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
        if self.args.mark_seen:
            self.session.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Seen)")
        if self.args.move_to:
            target = imapwire.quoted_folder(self.args.move_to).decode("ascii")
            if self.session.has_capability("MOVE"):
                self.session.uid("MOVE", str(uid), target)
            else:
                self.session.uid("COPY", str(uid), target)
                self.session.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
                self.session.uid("EXPUNGE", str(uid))  # UIDPLUS: only this message, never others


def fetch_command(args: argparse.Namespace, settings: Settings) -> int:
    if not args.maildir and not args.exec_cmd:
        raise UsageError("fetch needs a destination: --maildir DIR and/or --exec CMD")
    if args.move_to and args.move_to == args.folder:
        raise UsageError("--move-to must name another folder than --folder")
    auth = Authenticator(settings, interactive=person_present())
    state_file = StateFile(settings, settings.mailbox_user, args.folder)
    busy = f"another fetch is running for {settings.mailbox_user} {args.folder!r}"
    writable = bool(args.mark_seen or args.move_to)
    with (
        fileutil.FileLock(state_file.lock_path, args.wait, busy),
        imap_client.connect(settings, auth.provider) as session,
    ):
        info = session.select(args.folder, readonly=not writable)
        count = Fetcher(args, settings, session, info.get("uidvalidity", 0)).run(state_file, info)
    log.info("fetched %d new message(s) from %r", count, args.folder)
    return EX_OK
