#!/usr/bin/env python3
"""Run mailbot from a clone: ``python mailbot.py COMMAND ...``.

The program lives in the ``mailbotcore`` package beside this file; this launcher only puts
the clone first on ``sys.path`` (so a stray ``config.py`` or ``errors.py`` elsewhere cannot
stand in for mailbot's own modules) and says how to install the dependencies when they are
missing. Settings are read from the ``.env`` beside this file (see README → Configuration).
"""

import sys
from pathlib import Path

CLONE = Path(__file__).resolve().parent


def _dependencies_missing() -> str | None:
    import importlib.util

    for module, package in (("msal", "msal"), ("dotenv", "python-dotenv")):
        if importlib.util.find_spec(module) is None:
            return package
    return None


if __name__ == "__main__":
    sys.path.insert(0, str(CLONE))
    missing = _dependencies_missing()
    if missing is not None:
        print(
            f"error: the Python package {missing} is not installed; from {CLONE} run: "
            "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt "
            "(then use .venv/bin/python mailbot.py)",
            file=sys.stderr,
        )
        sys.exit(78)
    from mailbotcore.cli import main

    sys.exit(main(program="python mailbot.py", clone_dir=CLONE))
