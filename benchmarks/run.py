#!/usr/bin/env python3
"""Benchmark mailbot against a real Dovecot + Postfix behind a latency-injecting proxy.

One command, from a fresh clone (as root, with the test bed's packages installed:
``bash tests/support/setup-testbed.sh`` and ``pip install -r requirements-test.txt``)::

    python benchmarks/run.py            # full run: 10,000 / 100,000-message folders, a few minutes
    python benchmarks/run.py --quick    # tiny sizes, ~20 s (what tests/test_benchmark_smoke.py runs)

It starts the test bed (Dovecot, Postfix and the identity stand-in from ``tests/``) in a
temporary directory, seeds realistic mail straight into the Maildirs, and puts an asyncio
proxy (``benchmarks/proxy.py``) with a configurable one-way delay in front of IMAPS,
SMTP submission (STARTTLS) and the identity stand-in. Every command runs as a child
process (``python mailbot.py ...``, or the peers in ``benchmarks/peers.py``) with delay 0
and with delay D, alternately, ``--reps`` times each; the medians give

    effective round trips = (wall time with delay D - wall time without) / (2 D)

(process start-up and imports are in both and cancel out). Per scenario it reports wall
times, effective round trips, the round trips seen in the proxy's timeline, bytes
received from the servers, connections, peak memory of the child (``os.wait4``'s
``ru_maxrss``, taken by the small helper ``benchmarks/spawner.py`` so that the benchmark's
own memory does not leak into it; floor ~14 MB) and requests to the identity stand-in;
then the targets, met or missed and by how much. The same figures go to a JSON file
(default ``benchmarks/results/latest.json``; the committed one is what README -> Performance is
generated from: ``python benchmarks/report.py --readme``).

Scenario groups (``benchmarks/scenarios/``, one module each, registered in
``benchmarks/scenarios/__init__.py``; ``--only`` picks some): ``list`` (``list -n 50`` on two large
folders, side by side with the tutorial approach and imap_tools, an optional peer: ``pip install
imap-tools``), ``cron`` (a cron ``fetch`` with a valid and with an expired access token; ``list -n
10``), ``startup`` (``--help`` against ``python -c pass`` and ``import argparse``; import time of the
``list`` path), ``fetch`` (many new messages; one very large message), ``outbox`` (100 queued), and
``peers`` (getmail6 and msmtp from Debian's packages against mailbot: fetch of 1,000 x 5 KB and 20 x
1 MB, the nothing-new run on a 1,000-message folder, 100 sends, ``send --queue``; every tool's
delivery checked exactly once). Per scenario also the CPU seconds of the process tree (user +
system, from ``wait4``). The targets are a table in ``benchmarks/targets.py``; the report and the
README's Performance block come from ``benchmarks/report.py``.

Exit status: 0 done (targets are reported, not asserted), 2 usage, 4 the test bed cannot
run here (not root, Dovecot/Postfix or trustme missing), 1 a benchmarked command failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import report  # noqa: E402
from benchmarks.bench import (  # noqa: E402
    DEFAULT_JSON,
    EXIT_UNAVAILABLE,
    EXPIRED_USER,
    FULL,
    QUICK,
    USER,
    Bench,
    CommandFailed,
    label,
)
from benchmarks.scenarios import GROUPS  # noqa: E402
from benchmarks.targets import evaluate  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="full run: 10,000- and 100,000-message folders (~5.7 GB of realistic mail on /dev/shm),\n"
        "baseline on 50/500 messages, fetch of 50/500 new messages and of one 50 MB message,\n"
        "outbox of 100; about 3.5 minutes on 2 cores.\n"
        "--quick: 200/2,000-message folders, baseline 5/20, fetch 5/20 and 2 MB, outbox of 5, one rep.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repetition (smoke test, ~20 s)")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=25.0,
        metavar="MS",
        help="one-way delay added by the proxy (default 25 = 50 ms RTT)",
    )
    parser.add_argument(
        "--reps",
        type=int,
        default=None,
        metavar="N",
        help="runs per scenario and delay; medians are reported (default 7, --quick 1)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"write the figures here (default {DEFAULT_JSON.relative_to(REPO)})",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=tuple(GROUPS),
        help="run only these scenario groups (repeatable; default all)",
    )
    parser.add_argument(
        "--long-run-s",
        type=float,
        default=10.0,
        metavar="S",
        help="a command whose delayed run takes longer than S seconds is run once with delay (default 10)",
    )
    parser.add_argument(
        "--no-imap-tools",
        action="store_true",
        help="leave out the optional imap_tools peer even if installed",
    )
    parser.add_argument(
        "--python",
        type=Path,
        default=None,
        metavar="PATH",
        help="the interpreter that runs mailbot.py (default: this one); e.g. .venv/bin/python, a venv of "
        "/usr/bin/python3 as in the README's quick start, the interpreter Debian's getmail6 uses",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, mail) after the run")
    args = parser.parse_args(argv)
    if args.python is not None:
        args.python = args.python.absolute()
    if args.reps is None:
        args.reps = 1 if args.quick else 7
    if args.reps < 1 or args.delay_ms < 0:
        parser.error("--reps must be >= 1 and --delay-ms >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if importlib.util.find_spec("trustme") is None:
        print("error: trustme is missing: pip install -r requirements-test.txt", file=sys.stderr)
        return EXIT_UNAVAILABLE
    from tests.support.mailservers import TestbedUnavailable

    bench = Bench(args, sizes)
    failed: list[str] = []
    started = time.perf_counter()
    try:
        try:
            bench.start()
        except TestbedUnavailable as exc:
            print(f"error: the test bed cannot run here: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"test bed up in {bench.root}; signing in", file=sys.stderr)
        bench.login(USER)
        bench.idp.access_token_lifetime = 120
        bench.login(EXPIRED_USER)
        bench.idp.access_token_lifetime = 3600
        groups = args.only or list(GROUPS)
        if "startup" in groups and "list" not in groups:
            bench.seed_folder(USER, f"Bench{label(sizes.big[0])}", 10)
        for name, group in GROUPS.items():
            if name in groups:
                try:
                    group(bench)
                except CommandFailed as exc:  # the other groups still run; the report says what stopped
                    first_line = str(exc).splitlines()[0]
                    print(f"error: scenario group {name} stopped: {exc}", file=sys.stderr)
                    bench.notes.append(f"scenario group {name} stopped early: {first_line}")
                    failed.append(name)
        targets = evaluate(bench)
        text, data = report.build(bench, targets)
    except CommandFailed as exc:
        print(f"error: a benchmarked command failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.stop()
    elapsed = time.perf_counter() - started
    data["settings"]["elapsed_s"] = round(elapsed, 1)
    print(text)
    print(f"\n(total benchmark time {elapsed:.0f} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"figures written to {args.json}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
