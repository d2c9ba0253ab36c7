"""Scenario group ``startup``."""

from __future__ import annotations

import statistics
import subprocess
import sys

from benchmarks.bench import MAILBOT, REPO, Bench, importtime, label


def run(bench: Bench) -> None:
    print("start-up", file=sys.stderr)
    PY = str(bench.args.python or sys.executable)
    env = bench.base_env()
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        'python -c "import argparse"': [PY, "-c", "import argparse"],
        "python mailbot.py --help": [PY, str(MAILBOT), "--help"],
        "python -c 'import list's modules'": [
            PY,
            "-c",
            "import mailbotcore.commands.reading, mailbotcore.net.imap, mailbotcore.signin.authenticator",
        ],
    }
    for argv in commands.values():  # warm the bytecode caches
        subprocess.run(argv, env=env, cwd=REPO, capture_output=True, check=True)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    rss: dict[str, int] = {}
    for _ in range(bench.sizes.startup_reps):
        for name, argv in commands.items():
            r = bench.run_once(argv, env, 0.0, cwd=REPO)
            bench.check(r, argv)
            walls[name].append(r.wall)
            rss[name] = max(rss.get(name, 0), r.rss_kb)
    med = {name: statistics.median(v) for name, v in walls.items()}
    base, argparse_t = med["python -c pass"], med['python -c "import argparse"']
    rows = [
        {
            "command": name,
            "median_ms": round(1000 * med[name], 1),
            "ratio_to_pass": round(med[name] / base, 2),
            "ratio_to_argparse": round(med[name] / argparse_t, 2),
            "peak_rss_mb": round(rss[name] / 1024, 1),
        }
        for name in commands
    ]
    # Which modules --help imports, and what the list path imports when it really runs.
    help_imports = importtime([PY, "-X", "importtime", str(MAILBOT), "--help"], env, REPO)
    list_argv = [
        PY,
        "-X",
        "importtime",
        str(MAILBOT),
        "list",
        "-n",
        str(bench.sizes.list_n),
        "--folder",
        f"Bench{label(bench.sizes.big[0])}",
    ]
    list_imports = importtime(list_argv, bench.env(), bench.root)
    argparse_imports = importtime([PY, "-X", "importtime", "-c", "import argparse"], env, REPO)
    bench.startup = {
        "commands": rows,
        "reps": bench.sizes.startup_reps,
        "help_imports_msal": any(m == "msal" or m.startswith("msal.") for m in help_imports["modules"]),
        "help_import_ms": help_imports["total_ms"],
        "argparse_import_ms": argparse_imports["total_ms"],
        "list_run_import_ms": list_imports["total_ms"],
        "list_run_imports_msal": any(m == "msal" for m in list_imports["modules"]),
        "list_run_top_imports": list_imports["top"],
        "list_run_import_ratio_to_argparse": round(
            list_imports["total_ms"] / max(argparse_imports["total_ms"], 0.001), 1
        ),
    }
