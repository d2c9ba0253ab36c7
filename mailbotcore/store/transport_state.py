"""Which transport sends for an account, when ``OUTLOOK_SEND_VIA=auto`` learned that SMTP AUTH is off.

``send-via-<account>.json`` in the state folder: ``{"via": "graph", "reason": ..., "since": ...}``.
Written atomically (0600) when the fallback happens; removed by ``doctor --retest-smtp`` once
SMTP works again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from mailbotcore.store import files as fileutil
from mailbotcore.store.fetch_state import _slug


@dataclass(frozen=True)
class Remembered:
    via: str
    reason: str
    since: str


class TransportState:
    def __init__(self, state_dir: Path, account: str) -> None:
        self.path = state_dir / f"send-via-{_slug(account.lower())}.json"

    def load(self) -> Remembered | None:
        """The remembered choice; an unreadable file counts as none (SMTP is tried, and the file rewritten)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Remembered(str(data["via"]), str(data.get("reason", "")), str(data.get("since", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember(self, via: str, reason: str) -> None:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = json.dumps({"via": via, "reason": reason, "since": since}).encode()
        fileutil.atomic_write(self.path, body, mode=0o600)

    def forget(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
