"""Scenario group ``peers``: mailbot side by side with getmail6 and msmtp (filled in below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.bench import Bench


def run(bench: Bench) -> None:
    pass
