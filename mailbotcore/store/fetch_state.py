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
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return FetchState(int(data["uidvalidity"]), int(data["last_uid"]), data.get("last_internaldate"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Never guess: a lost state would replay or skip mail.
            raise ConfigError(
                f"the fetch state {self.path} is unreadable ({exc}); it was left as it is",
                hint="repair it, or delete it to start afresh from the newest message",
            ) from exc

    def save(self, state: FetchState) -> None:
        fileutil.atomic_write(self.path, json.dumps(asdict(state)).encode(), mode=0o600)
