"""mailbot's settings, for scripts that reuse mailbot from a clone (``from config import load_settings``).

The same resolution the command line uses: option > environment > ``.env`` (the one beside
this file when there is no ``./.env``); see README → Configuration. Not installed by pip:
installed code imports ``mailbotcore.config`` instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

CLONE = Path(__file__).resolve().parent
if str(CLONE) not in sys.path:
    sys.path.insert(0, str(CLONE))

from mailbotcore.config import Settings  # noqa: E402
from mailbotcore.config import load_settings as _load_settings  # noqa: E402

__all__ = ["Settings", "load_settings"]


def load_settings(env_file: str | None = None, account: str | None = None) -> Settings:
    """The settings ``python mailbot.py`` would use (``env_file``: like ``--env-file``; ``account``: ``--account``)."""
    return _load_settings({"MAILBOT_ACCOUNT": account}, env_file=env_file, program="python mailbot.py", clone_dir=CLONE)
