"""The fetch state file: where the last ``fetch`` (or ``watch``) of one account and folder stopped.

UIDVALIDITY, the highest processed UID and its INTERNALDATE, written atomically after each
message, so a kill at any moment re-processes at most the message in flight.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from mailbotcore.errors import ConfigError
from mailbotcore.store import files as fileutil


@dataclass
class FetchState:
    """Where the last run stopped, for one account and folder."""

    uidvalidity: int
    last_uid: int
    last_internaldate: float | None = None


def _slug(text: str) -> str:
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:40]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class StateFile:
    """``fetch-<account>-<folder>.json`` and its lock in the state folder."""

    def __init__(self, state_dir: Path, account: str, folder: str) -> None:
        # Not with_suffix(): the slugs contain dots, and a suffix swap would cut the name there.
        base = f"fetch-{_slug(account.lower())}-{_slug(folder)}"
        self.path = state_dir / f"{base}.json"
        self.lock_path = state_dir / f"{base}.lock"

    def load(self) -> FetchState | None:
        """The saved state; None when there is none. Read like every file of ours
        (``files.read_private``: no symlink, a regular file of this user)."""
        raw = fileutil.read_private(self.path, "fetch state")
        if raw is None:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
            last_internaldate = data.get("last_internaldate")
            if last_internaldate is not None and not isinstance(last_internaldate, (int, float)):
                raise ValueError("last_internaldate is not a number")
            return FetchState(int(data["uidvalidity"]), int(data["last_uid"]), last_internaldate)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Never guess: a lost state would replay or skip mail.
            raise ConfigError(
                f"the fetch state {self.path} is unreadable ({exc}); it was left as it is",
                hint="repair it, or delete it to start afresh from the newest message",
            ) from exc

    def save(self, state: FetchState) -> None:
        """Atomically; a full disk is one line and exit 75, the previous state kept."""
        fileutil.make_dirs(self.path.parent, "the state folder")
        fileutil.write_private(self.path, json.dumps(asdict(state)).encode(), "fetch state")
