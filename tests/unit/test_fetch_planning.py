"""fetch's planning, in process: what a run will deliver and where its state starts, for each kind of
folder history. The IMAP session is a small stand-in that answers FETCH/SEARCH the way Dovecot does
(the same protocol is exercised for real in tests/integration/test_fetch.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailbotcore.commands.fetching import Fetcher, NewMessage, batches
from mailbotcore.commands.options import FetchOptions
from mailbotcore.config import load_settings
from mailbotcore.results import Notice
from mailbotcore.store.fetch_state import FetchState


def stamp(day: int) -> float:
    return datetime(2026, 11, day, 10, 0, tzinfo=timezone.utc).timestamp()


class Folder:
    """UID -> (size, arrival day); answers what Fetcher asks and records the commands."""

    def __init__(self, messages: dict[int, tuple[int, int]]) -> None:
        self.messages = messages
        self.commands: list[str] = []

    def _lines(self, uids: list[int]) -> list[bytes]:
        lines = []
        for seq, uid in enumerate(sorted(self.messages), 1):
            if uid in uids:
                size, day = self.messages[uid]
                lines.append(
                    f'{seq} (UID {uid} RFC822.SIZE {size} INTERNALDATE "{day:02d}-Nov-2026 10:00:00 +0000")'.encode()
                )
        return lines

    def uid(self, command: str, uidset: str, items: str) -> list[bytes]:
        self.commands.append(f"UID {command} {uidset}")
        if uidset.endswith(":*"):
            low = int(uidset[:-2])
            wanted = [u for u in self.messages if u >= low] or [max(self.messages, default=0)]
            return self._lines(wanted)
        wanted = []
        for part in uidset.split(","):
            lo, _, hi = part.partition(":")
            wanted += list(range(int(lo), int(hi or lo) + 1))
        return self._lines(wanted)

    def fetch_seq(self, seqset: str, items: str) -> list[bytes]:
        self.commands.append(f"FETCH {seqset}")
        lo, hi = (int(x) for x in seqset.split(":"))
        ordered = sorted(self.messages)
        return self._lines(ordered[lo - 1 : hi])

    def search(self, criteria: list[str], literal: bytes | None = None) -> list[int]:
        self.commands.append("UID SEARCH " + " ".join(criteria))
        return sorted(self.messages)


@pytest.fixture
def settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_settings(environ={"OUTLOOK_USERNAME": "me@contoso.com"}, cwd=tmp_path, clone_dir=tmp_path)


def fetcher(settings, folder: Folder, **options) -> Fetcher:  # type: ignore[no-untyped-def]
    return Fetcher(FetchOptions(maildir=Path("/nonexistent"), **options), settings, folder, 7)  # type: ignore[arg-type]


def test_first_run_leaves_existing_mail_alone_and_says_so(settings) -> None:  # type: ignore[no-untyped-def]
    folder = Folder({3: (100, 20), 5: (200, 21)})
    planner = fetcher(settings, folder)
    todo, state = planner.plan(None, {"exists": 2, "uidvalidity": 7, "uidnext": 6})
    assert todo == []
    assert state == FetchState(7, 5, stamp(21))
    assert folder.commands == ["FETCH 2:2"]  # one FETCH of the newest: its UID and arrival time
    assert planner.notices == [
        Notice(
            "first fetch of 'INBOX' for me@contoso.com: existing messages left alone (up to UID 5); new mail "
            "from now on (use --backfill N to process the newest N)"
        )
    ]


def test_first_run_with_backfill_starts_before_the_newest_n(settings) -> None:  # type: ignore[no-untyped-def]
    folder = Folder({3: (100, 20), 5: (200, 21), 9: (300, 22)})
    todo, state = fetcher(settings, folder, backfill=2).plan(None, {"exists": 3, "uidvalidity": 7})
    assert [m.uid for m in todo] == [5, 9]
    assert state == FetchState(7, 4, stamp(21))


def test_empty_folder_starts_at_uidnext(settings) -> None:  # type: ignore[no-untyped-def]
    todo, state = fetcher(settings, Folder({})).plan(None, {"exists": 0, "uidvalidity": 7, "uidnext": 42})
    assert todo == []
    assert (state.uidvalidity, state.last_uid) == (7, 41)


def test_later_run_lists_everything_after_the_last_uid_in_one_command(settings) -> None:  # type: ignore[no-untyped-def]
    folder = Folder({3: (100, 20), 5: (200, 21), 9: (300, 22)})
    previous = FetchState(7, 3, stamp(20))
    todo, state = fetcher(settings, folder).plan(previous, {"exists": 3, "uidvalidity": 7})
    assert [(m.uid, m.size) for m in todo] == [(5, 200), (9, 300)]
    assert state is previous
    assert folder.commands == ["UID FETCH 4:*"]


def test_nothing_new_when_the_server_answers_the_last_uid_for_star(settings) -> None:  # type: ignore[no-untyped-def]
    # "n:*" with n above the highest UID still returns the highest message (RFC 3501): not new.
    folder = Folder({3: (100, 20)})
    todo, _ = fetcher(settings, folder).plan(FetchState(7, 3, stamp(20)), {"exists": 1, "uidvalidity": 7})
    assert todo == []


def test_recreated_folder_continues_by_arrival_time(settings) -> None:  # type: ignore[no-untyped-def]
    folder = Folder({1: (100, 19), 2: (200, 21), 3: (300, 22)})
    todo, state = fetcher(settings, folder).plan(FetchState(5, 90, stamp(20)), {"exists": 3, "uidvalidity": 7})
    assert [m.uid for m in todo] == [2, 3]
    assert state == FetchState(7, 1, stamp(20))
    assert folder.commands[0] == "UID SEARCH SINCE 19-Nov-2026"


def test_batches_respect_the_size_limit_and_keep_order() -> None:
    items = [NewMessage(uid, size, None) for uid, size in ((1, 4), (2, 4), (3, 9), (4, 1), (5, 1))]
    assert [[m.uid for m in b] for b in batches(items, 8)] == [[1, 2], [3], [4, 5]]
    assert list(batches([], 8)) == []
