"""Scenario group ``list``."""

from __future__ import annotations

import importlib.util
import sys
import time

from benchmarks.bench import PEERS, USER, Bench, Scenario, label


def run(bench: Bench) -> None:
    s = bench.sizes
    print("list -n 50 and its peers", file=sys.stderr)
    folders = {}
    for size in s.big:
        folder = f"Bench{label(size)}"
        t = time.perf_counter()
        bench.seed_folder(USER, folder, size)
        print(f"  seeded {folder}: {size:,} messages in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        folders[size] = folder
    for size in s.baseline:
        bench.seed_folder(USER, f"Small{size}", size)
    for size, folder in folders.items():
        sc = bench.measure(
            f"list_{label(size)}",
            f"mailbot list -n {s.list_n} ({label(size)} folder)",
            bench.mailbot("list", "-n", str(s.list_n), "--folder", folder),
            bench.env(),
            messages=size,
            timeline=size == max(s.big),
        )
        e = sc.extra
        e.update(bench.list_bytes(folder, s.list_n))
        hb = e["header_bytes"]
        e["bytes_ratio_to_header_bytes"] = round(sc.bytes_from_server / hb, 3) if hb else None
        lean_total = sc.bytes_from_server - e["fetch_response_bytes"] + e["lean_fetch_response_bytes"]
        e["lean_bytes_from_server_estimate"] = lean_total
        e["lean_ratio_estimate"] = round(lean_total / e["lean_header_bytes"], 3)
    for size in s.baseline:
        bench.measure(
            f"baseline_{label(size)}",
            f"tutorial imaplib: SEARCH ALL + FETCH RFC822 each ({size}-message folder)",
            [sys.executable, str(PEERS), "baseline", f"Small{size}"],
            bench.peer_env(),
            messages=size,
        )
    if bench.args.no_imap_tools or importlib.util.find_spec("imap_tools") is None:
        note = (
            "imap_tools peer skipped (--no-imap-tools)"
            if bench.args.no_imap_tools
            else "imap_tools peer skipped: it is not installed (pip install imap-tools)"
        )
        print(f"  {note}", file=sys.stderr)
        bench.notes.append(note)
        for size in s.big:
            bench.scenarios.append(
                Scenario(
                    f"imap_tools_{label(size)}",
                    f"imap_tools fetch(limit={s.list_n}) ({label(size)} folder)",
                    "",
                    size,
                    skipped=note,
                )
            )
    else:
        for size, folder in folders.items():
            bench.measure(
                f"imap_tools_{label(size)}",
                f"imap_tools fetch(limit={s.list_n}, headers_only, bulk) ({label(size)} folder)",
                [sys.executable, str(PEERS), "imap_tools", folder, "-n", str(s.list_n)],
                bench.peer_env(),
                messages=size,
            )
