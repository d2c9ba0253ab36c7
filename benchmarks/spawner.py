"""Runs the benchmarked commands and measures them: wall time and peak memory of each child.

Why a separate, small process: Linux carries a process's peak-RSS mark across ``exec``
(``ru_maxrss`` is the maximum over the images the process had), and ``subprocess`` starts
children with ``vfork``, whose pre-exec image is the parent's. Started from the benchmark
itself (hundreds of MB of proxy buffers and generated mail), every child would report at
least the benchmark's own peak. Started from this process, which stays at ~10 MB, a child
reports its own peak (floored at this process's ~10 MB).

Protocol: one JSON object per line on stdin ``{"argv", "env", "cwd", "stdout", "stderr",
"timeout"}`` (stdout/stderr: file paths), one JSON line back on stdout ``{"wall",
"returncode", "maxrss_kb", "cpu_s"}``. EOF on stdin ends it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time


def run(request: dict) -> dict:
    with open(request["stdout"], "wb") as out, open(request["stderr"], "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            request["argv"],
            env=request["env"],
            cwd=request["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        timer = threading.Timer(request.get("timeout", 900), lambda: _kill(proc.pid))
        timer.start()
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    # wait4's usage covers the child and the descendants it waited for (a token command, a
    # delivery agent): CPU is their sum, ru_maxrss the largest of them (the process tree's peak).
    return {
        "wall": wall,
        "returncode": proc.returncode,
        "maxrss_kb": usage.ru_maxrss,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = run(json.loads(line))
        except Exception as exc:  # report, keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
