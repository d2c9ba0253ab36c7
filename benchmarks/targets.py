"""The benchmark's targets, as a table: what is measured, the goal, and whether it was met.

Each row of :data:`THRESHOLDS` names a scenario (by key), a figure of it and a limit; a row of
:data:`VERSUS` compares a figure of mailbot's scenario with the same figure of a peer's in the same
run. :func:`evaluate` turns them (and the structural checks below: round trips, connections,
memory ratios) into :class:`Target` records for the report. A missing scenario (not run, or
skipped) leaves its rows out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.bench import label, num

if TYPE_CHECKING:
    from benchmarks.bench import Bench, Scenario


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: could not be evaluated
    margin: str


@dataclass(frozen=True)
class Threshold:
    """``scenario``'s ``figure`` must be at most ``limit`` (in ``unit``; CPU is stored in seconds)."""

    name: str
    scenario: str
    figure: str  # a Scenario attribute: cpu_s, peak_rss_mb, wall_s_no_delay, ...
    limit: float
    unit: str  # "ms" (figure in seconds, shown in ms) or "MB"


@dataclass(frozen=True)
class Versus:
    """mailbot's ``scenario`` must be at most as high as the peer's ``peer`` on ``figure``."""

    name: str
    scenario: str
    peer: str
    figure: str
    unit: str


# Issue 15: a cron run with a valid cached token, 0 ms delay.
THRESHOLDS: list[Threshold] = [
    Threshold("cron fetch, nothing new: CPU", "cron_valid", "cpu_s", 0.050, "ms"),
    Threshold("cron fetch, nothing new: peak RSS", "cron_valid", "peak_rss_mb", 20, "MB"),
    Threshold("list -n 10: CPU", "list_10", "cpu_s", 0.050, "ms"),
    Threshold("list -n 10: peak RSS", "list_10", "peak_rss_mb", 20, "MB"),
    Threshold("send --queue: CPU", "send_queue", "cpu_s", 0.030, "ms"),
]
VERSUS: list[Versus] = [
    Versus("nothing-new fetch: CPU vs getmail6", "nothing_new_mailbot", "nothing_new_getmail6", "cpu_s", "ms"),
    Versus(
        "nothing-new fetch: peak RSS vs getmail6", "nothing_new_mailbot", "nothing_new_getmail6", "peak_rss_mb", "MB"
    ),
    Versus(
        "nothing-new fetch: wall vs getmail6", "nothing_new_mailbot", "nothing_new_getmail6", "wall_s_no_delay", "ms"
    ),
    Versus(
        "fetch of many new ~5 KB messages: wall (RTT) vs getmail6",
        "fetch1000_mailbot",
        "fetch1000_getmail6",
        "wall_s_delay",
        "ms",
    ),
    Versus(
        "fetch of new 1 MB messages: wall (RTT) vs getmail6",
        "fetch20mb_mailbot",
        "fetch20mb_getmail6",
        "wall_s_delay",
        "ms",
    ),
    Versus(
        "sending the queued messages: wall (RTT) vs msmtp once per message",
        "send100_mailbot",
        "send100_msmtp",
        "wall_s_delay",
        "ms",
    ),
    Versus("send --queue: CPU vs msmtpq", "send_queue", "queue_msmtpq", "cpu_s", "ms"),
]


def _show(value: float, unit: str) -> str:
    return f"{value * 1000:.1f} ms" if unit == "ms" else f"{value:.1f} MB"


def _figure(s: Scenario, figure: str) -> float | None:
    value: Any = getattr(s, figure, None)
    return float(value) if isinstance(value, (int, float)) else None


def thresholds(by: dict[str, Scenario]) -> list[Target]:
    out = []
    for row in THRESHOLDS:
        s = by.get(row.scenario)
        value = _figure(s, row.figure) if s else None
        if value is None:
            continue
        out.append(
            Target(
                row.name,
                f"<= {_show(row.limit, row.unit)}",
                _show(value, row.unit),
                value <= row.limit,
                f"{'+' if value > row.limit else ''}{_show(value - row.limit, row.unit)}",
            )
        )
    return out


def versus(by: dict[str, Scenario]) -> list[Target]:
    out = []
    for row in VERSUS:
        ours, theirs = by.get(row.scenario), by.get(row.peer)
        a = _figure(ours, row.figure) if ours else None
        b = _figure(theirs, row.figure) if theirs else None
        if a is None or b is None:
            continue
        out.append(
            Target(
                row.name,
                "at most the peer's",
                f"{_show(a, row.unit)} vs {_show(b, row.unit)}",
                a <= b,
                f"{'+' if a > b else ''}{_show(a - b, row.unit)}" + (f" ({a / b:.2f}x)" if b else ""),
            )
        )
    return out


def exactly_once(by: dict[str, Scenario]) -> list[Target]:
    out = []
    for s in by.values():
        check = s.extra.get("exactly_once")
        if isinstance(check, dict):
            ok = all(check.get(k) == 0 for k in ("missing", "duplicates", "corrupt", "unknown"))
            out.append(
                Target(
                    f"{s.name}: every message exactly once (Message-ID + body hash)",
                    f"{check.get('expected')} delivered once",
                    f"{check.get('delivered_once')} once, {check.get('missing')} missing, "
                    f"{check.get('duplicates')} duplicated, {check.get('corrupt')} altered, "
                    f"{check.get('unknown')} not expected",
                    ok,
                    "-" if ok else f"{check.get('missing', 0) + check.get('duplicates', 0)} off",
                )
            )
    return out


def evaluate(bench: Bench) -> list[Target]:
    by = {s.key: s for s in bench.scenarios if s.skipped is None}
    return _legacy(bench) + thresholds(by) + versus(by) + exactly_once(by)


def _legacy(bench: Bench) -> list[Target]:
    by = {s.key: s for s in bench.scenarios if s.skipped is None}
    out: list[Target] = []
    big = [by.get(f"list_{label(n)}") for n in bench.sizes.big]
    if all(big) and bench.delay > 0:
        a, b = big  # type: ignore[misc]
        diff = b.effective_rts - a.effective_rts
        out.append(
            Target(
                f"list -n {bench.sizes.list_n}: same round trips on {label(a.messages)} and {label(b.messages)}",
                "difference at most 0.5 RT",
                f"{a.effective_rts:.2f} vs {b.effective_rts:.2f} (server think time removed: "
                f"{num(a.effective_rts_excl_server)} vs {num(b.effective_rts_excl_server)}; "
                f"seen {a.rts_seen} vs {b.rts_seen})",
                abs(diff) <= 0.5,
                f"{diff:+.2f} RT",
            )
        )
        worst = max(a.effective_rts, b.effective_rts)
        out.append(
            Target(
                f"list -n {bench.sizes.list_n}: effective round trips",
                "<= 6.5 (floor ~5.5)",
                f"{worst:.2f} (server think time removed: "
                f"{num(max(a.effective_rts_excl_server or 0, b.effective_rts_excl_server or 0))}; "
                f"seen {max(a.rts_seen or 0, b.rts_seen or 0)})",
                worst <= 6.5,
                f"{worst - 6.5:+.2f} RT vs 6.5",
            )
        )
        ratios = [s.extra.get("bytes_ratio_to_header_bytes") for s in (a, b)]
        if all(ratios):
            r = max(ratios)
            s = a if ratios[0] == r else b
            out.append(
                Target(
                    f"list -n {bench.sizes.list_n}: bytes from server vs header bytes of the fetched fields",
                    "<= 1.5x",
                    f"{s.bytes_from_server:,} B / {s.extra['header_bytes']:,} B = {r:.2f}x",
                    r <= 1.5,
                    f"{r - 1.5:+.2f}x ({s.bytes_from_server - 1.5 * s.extra['header_bytes']:+,.0f} B)",
                )
            )
    for key, goal in (("cron_valid", 0), ("cron_expired", 1)):
        s = by.get(key)
        if s:
            runs = s.extra.get("idp_requests_each_run", [])
            ok = all(x == goal for x in runs)
            out.append(
                Target(
                    f"{s.name}: identity-platform requests",
                    f"{goal} per run",
                    f"{runs} per run",
                    ok,
                    f"{max(runs) - goal:+d}" if ok else f"{max(runs) - goal:+d} (max)",
                )
            )
    if bench.startup:
        rows = {r["command"]: r for r in bench.startup["commands"]}
        help_row, argparse_row = rows["python mailbot.py --help"], rows['python -c "import argparse"']
        ratio = help_row["ratio_to_argparse"]
        out.append(
            Target(
                '--help start-up vs python -c "import argparse"',
                "<= 1.5x",
                f"{help_row['median_ms']} ms vs {argparse_row['median_ms']} ms = {ratio:.2f}x",
                ratio <= 1.5,
                f"{ratio - 1.5:+.2f}x",
            )
        )
        out.append(
            Target(
                "--help does not import msal",
                "msal not imported",
                "imported" if bench.startup["help_imports_msal"] else "not imported",
                not bench.startup["help_imports_msal"],
                "-" if not bench.startup["help_imports_msal"] else "msal imported",
            )
        )
    small, large = (by.get(f"fetch_{n}") for n in bench.sizes.fetch)
    if small and large and bench.delay > 0:
        extra_batches = large.extra["expected_batches"] - small.extra["expected_batches"]
        extra_rts = large.effective_rts - small.effective_rts
        out.append(
            Target(
                f"fetch {large.messages} vs {small.messages} new messages: round trips grow with batches, not count",
                f"extra RTs <= extra batches ({extra_batches}) + 0.5",
                f"{small.effective_rts:.2f} -> {large.effective_rts:.2f} RTs ({extra_rts:+.2f}; seen "
                f"{small.rts_seen} -> {large.rts_seen}); "
                f"{small.extra['expected_batches']} -> {large.extra['expected_batches']} "
                "batches of <= 10 MB",
                extra_rts <= extra_batches + 0.5,
                f"{extra_rts - extra_batches - 0.5:+.2f} RT",
            )
        )
    big_fetch = by.get("fetch_big")
    if big_fetch:
        largest = big_fetch.extra["largest_message"]
        peak = big_fetch.peak_rss_mb * 1024 * 1024
        ref = by.get(f"fetch_{bench.sizes.fetch[1]}")
        versus = f" (fetch of small messages: {ref.peak_rss_mb:.0f} MB)" if ref else ""
        out.append(
            Target(
                f"fetch of one {largest / 2**20:.0f} MB message: peak memory",
                "< 3x the message",
                f"{big_fetch.peak_rss_mb:.0f} MB = {peak / largest:.2f}x{versus}",
                peak < 3 * largest,
                f"{(peak - 3 * largest) / 2**20:+.0f} MB vs 3x",
            )
        )
    ob = by.get("outbox")
    if ob:
        out.append(
            Target(
                f"outbox {ob.messages}: connections",
                "1",
                str(ob.connections),
                ob.connections == 1,
                f"{ob.connections - 1:+d}",
            )
        )
        auths = ob.extra.get("authentications")
        out.append(
            Target(
                f"outbox {ob.messages}: authentications",
                "1",
                str(auths),
                auths == 1,
                f"{auths - 1:+d}" if auths is not None else "?",
            )
        )
    return out
