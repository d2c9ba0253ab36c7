"""Scenario group ``fetch``."""

from __future__ import annotations

import sys
import time

from benchmarks.bench import USER, Bench, batches


def run(bench: Bench) -> None:
    print("fetch of new messages; one very large message", file=sys.stderr)
    small, large = bench.sizes.fetch
    for count in (small, large):
        folder = f"Fetch{count}"
        bench.seed_folder(USER, folder, 10)  # mail that was there before the first fetch
        sizes, prepare = bench._fetch_setup(folder, lambda f=folder, c=count: bench.seed_folder(USER, f, c))
        sc = bench.measure(
            f"fetch_{count}",
            f"mailbot fetch, {count} new messages (--maildir)",
            bench.mailbot("fetch", "--folder", folder, "--maildir", str(bench.root / "fetched" / folder)),
            bench.fetch_env(folder),
            messages=count,
            prepare=prepare,
            timeline=count == large,
        )
        sc.extra["message_bytes"] = sum(sizes)
        sc.extra["largest_message"] = max(sizes)
        sc.extra["expected_batches"] = batches(sizes, 10 * 1024 * 1024)
    # One very large message: peak memory.
    folder = "FetchBig"
    bench.seed_folder(USER, folder, 3)
    big = int(bench.sizes.big_message_mb * 1024 * 1024)
    raw_big = bench.factory.big_message(USER, big, time.time() - 60)

    def add_big(f: str = folder) -> list[int]:
        bench.servers.seed(USER, raw_big, folder=f, internaldate=time.time() - 60)
        return [len(raw_big)]

    sizes, prepare = bench._fetch_setup(folder, add_big)
    sc = bench.measure(
        "fetch_big",
        f"mailbot fetch, one new {bench.sizes.big_message_mb:g} MB message",
        bench.mailbot("fetch", "--folder", folder, "--maildir", str(bench.root / "fetched" / folder)),
        bench.fetch_env(folder),
        messages=1,
        prepare=prepare,
        reps=min(bench.reps, 3),
    )
    sc.extra["largest_message"] = len(raw_big)
