"""The benchmark's scenario groups, one module each, in the order they run.

A group is a function ``run(bench)`` that seeds what it needs and calls ``bench.measure(...)``
(or appends skipped :class:`benchmarks.bench.Scenario` records with the reason). ``run.py
--only NAME`` selects groups by the names registered here. To add one (e.g. ``watch``, the IDLE
latency benchmark in ``benchmarks/watch_bench.py``), give it a ``run(bench)`` and call
:func:`register` — here, next to the others — or add it to :data:`GROUPS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from benchmarks.scenarios import cron, fetching, listing, outbox, peers, startup

if TYPE_CHECKING:
    from benchmarks.bench import Bench

Group = Callable[["Bench"], None]

GROUPS: dict[str, Group] = {
    "list": listing.run,
    "cron": cron.run,
    "startup": startup.run,
    "fetch": fetching.run,
    "outbox": outbox.run,
    "peers": peers.run,
}


def register(name: str, group: Group) -> None:
    """Add a scenario group (runs after the ones above, selectable with ``--only name``)."""
    if name in GROUPS:
        raise ValueError(f"scenario group {name!r} is already registered")
    GROUPS[name] = group
