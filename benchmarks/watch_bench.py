#!/usr/bin/env python3
"""Benchmark ``mailbot watch`` against the real test bed (Dovecot, the identity stand-in).

    python benchmarks/watch_bench.py                    # 50 messages, 10 idle minutes, 10,000 for memory
    python benchmarks/watch_bench.py --idle-minutes 3   # shorter idle period
    python benchmarks/watch_bench.py --quick            # tiny sizes (seconds), for a smoke test

Measures, on one running ``watch`` (no latency proxy: the figures are local):

* **latency**: from a message's arrival at the server (its file appearing in the Maildir,
  which Dovecot notices by inotify) to the ``--exec`` handler starting (its first action
  writes the time), median and p95 over ``--messages`` messages sent one at a time.
  Dovecot waits 0.5 s after a mailbox change before it tells IDLE clients (a constant in
  its source), which is the floor here; cron ``fetch`` every 5 minutes averages 150 s.
* **idle CPU**: user + system CPU seconds of the watch process over ``--idle-minutes``
  with no mail (from ``/proc/PID/stat``), and the IMAP connections it opened meanwhile
  (Dovecot's rawlog: one file per session), scaled to a day; the expected figure is
  ``token renewals a day`` (one session per access token: 86400 / (lifetime - margin)),
  IDLE being re-issued on the same connection.
* **memory**: resident set size (``VmRSS``) of a ``watch --maildir`` after 100 delivered
  messages and after 10,000, the mail arriving in bursts of ``--burst`` (100), each burst
  delivered before the next arrives, as in service. (A single backlog of thousands of
  messages instead measures fetch's batch of ``--batch-mb`` 10 MB, not growth.)

Writes the figures as JSON (``--json``, default ``benchmarks/results/watch.json``) and
prints them. ``run_watch_bench()`` is the same as a function (for ``benchmarks/run.py``).
Exit status: 0 done, 4 the test bed cannot run here.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MAILBOT = REPO / "mailbot.py"
CLIENT_ID = "5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "watch.json"
EXIT_UNAVAILABLE = 4
DOVECOT_NOTIFY_DELAY = 0.5
HANDLER = '#!/bin/sh\necho "$MAILBOT_UID $(date +%s.%N)" >> "$BENCH_LOG"\ncat > /dev/null\n'


def _message(n: int, size: int = 2000) -> bytes:
    body = (b"x" * 76 + b"\r\n") * max(1, size // 78)
    return (
        f"From: Sender {n} <s{n}@example.org>\r\nTo: bench@example.com\r\nSubject: watch bench {n}\r\n"
        f"Message-ID: <wb{n}@example.org>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\n"
    ).encode() + body


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class _Bed:
    """Dovecot + Postfix + the identity stand-in in a temporary directory, and one account."""

    def __init__(self) -> None:
        import trustme

        from tests.support.idp import IdentityStandIn
        from tests.support.mailservers import MailServers

        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
        self.root = Path(tempfile.mkdtemp(prefix="mailbot-watch-bench-", dir=shm))
        self.root.chmod(0o755)
        self.ca = trustme.CA()
        jwt_key = secrets.token_bytes(32)
        self.ca_pem = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.servers = MailServers(self.root / "mailservers", self.ca, trustme.CA(), jwt_key)
        self.idp: Any = None
        self.servers.start()
        (self.root / "idp").mkdir()
        self.idp = IdentityStandIn(self.ca, jwt_key, workdir=self.root / "idp")
        self.idp.interval = 0
        self.user = "watchbench@example.com"
        self.servers.add_user(self.user)
        self.home = self.root / "home"
        self.home.mkdir()
        (self.home / "empty.env").write_text("")
        (self.home / "handler.sh").write_text(HANDLER)
        (self.home / "handler.sh").chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTLOOK_", "MAILBOT_"))} | {
            "HOME": str(self.home),
            "MAILBOT_ENV_FILE": str(self.home / "empty.env"),
            "OUTLOOK_USERNAME": self.user,
            "OUTLOOK_CLIENT_ID": CLIENT_ID,
            "OUTLOOK_AUTHORITY": self.idp.authority("organizations"),
            "OUTLOOK_IMAP_SERVER": self.servers.host,
            "OUTLOOK_IMAP_PORT": str(self.servers.imaps_port),
            "OUTLOOK_SMTP_SERVER": self.servers.host,
            "OUTLOOK_SMTP_PORT": str(self.servers.submission_port),
            "MAILBOT_TOKEN_CACHE": str(self.home / "token_cache.json"),
            "MAILBOT_STATE_DIR": str(self.home / "state"),
            "MAILBOT_CA_BUNDLE": str(self.ca_pem),
            "MAILBOT_TIMEOUT": "30",
            "BENCH_LOG": str(self.home / "handled.log"),
        }
        self.idp.auto_approve(self.user, after_polls=0)
        self.mailbot("login")

    def mailbot(self, *args: str) -> None:
        proc = subprocess.run(
            [sys.executable, str(MAILBOT), *args],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mailbot {' '.join(args)} exited {proc.returncode}: {proc.stderr}")

    def start_watch(self, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.home / "watch.stderr", "ab")  # noqa: SIM115 - the child's stderr
        proc = subprocess.Popen(
            [sys.executable, str(MAILBOT), "watch", *args],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        _wait(lambda: b"watching " in (self.home / "watch.stderr").read_bytes(), 30, "watch to start")
        return proc

    def sessions(self) -> int:
        return len(list((self.servers.home(self.user) / "rawlog").glob("*.in")))

    def stop(self) -> None:
        if self.idp is not None:
            self.idp.stop()
        self.servers.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _stop(proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - started


def _handled(log: Path) -> list[tuple[int, float]]:
    if not log.exists():
        return []
    return [(int(uid), float(when)) for uid, when in (line.split() for line in log.read_text().splitlines())]


def run_watch_bench(
    messages: int = 50,
    idle_minutes: float = 10.0,
    rss_first: int = 100,
    rss_total: int = 10_000,
    burst: int = 100,
    parts: tuple[str, ...] = ("latency", "idle", "memory"),
) -> dict[str, Any]:
    """Run the measurements named in ``parts`` on a fresh test bed; the figures as a dict."""
    bed = _Bed()
    figures: dict[str, Any] = {}
    try:
        if "latency" in parts or "idle" in parts:
            proc = bed.start_watch("--exec", "./handler.sh")
            if "latency" in parts:
                figures["latency"] = _latency(bed, messages)
            if "idle" in parts:
                figures["idle"] = _idle(bed, proc, idle_minutes)
            _stop(proc)
        if "memory" in parts:
            figures["memory"] = _memory(bed, rss_first, rss_total, burst)
    finally:
        bed.stop()
    return figures


def _latency(bed: _Bed, messages: int) -> dict[str, Any]:
    """One message at a time, each after the previous one was handled."""
    log = Path(bed.env["BENCH_LOG"])
    latencies = []
    for n in range(messages):
        arrived = time.time()
        bed.servers.seed(bed.user, _message(n))
        _wait(lambda n=n: len(_handled(log)) > n, 30, f"message {n}")
        latencies.append(_handled(log)[-1][1] - arrived)
        time.sleep(0.2)
    median = statistics.median(latencies)
    p95 = _percentile(latencies, 0.95)
    return {
        "messages": messages,
        "median_s": round(median, 4),
        "p95_s": round(p95, 4),
        "min_s": round(min(latencies), 4),
        "max_s": round(max(latencies), 4),
        "floor_s": DOVECOT_NOTIFY_DELAY,
        "goal": "median <= floor + 0.15 s, p95 <= 1 s",
        "met": median <= DOVECOT_NOTIFY_DELAY + 0.15 and p95 <= 1.0,
        "cron_fetch_every_5_min_mean_s": 150.0,
    }


def _idle(bed: _Bed, proc: subprocess.Popen[bytes], idle_minutes: float) -> dict[str, Any]:
    """No mail for ``idle_minutes``: CPU used and connections opened meanwhile."""
    time.sleep(1.0)
    sessions_before = bed.sessions()
    cpu_before = _cpu_seconds(proc.pid)
    idle_started = time.monotonic()
    time.sleep(idle_minutes * 60)
    idle_seconds = time.monotonic() - idle_started
    idle_cpu = _cpu_seconds(proc.pid) - cpu_before
    idle_connections = bed.sessions() - sessions_before
    commands = bed.servers.imap_commands(bed.user)
    lifetime = float(bed.idp.access_token_lifetime)
    margin = min(300.0, max(1.0, lifetime / 10))
    return {
        "seconds": round(idle_seconds, 1),
        "cpu_s": round(idle_cpu, 3),
        "cpu_resolution_s": round(1 / os.sysconf("SC_CLK_TCK"), 3),
        "cpu_s_per_10_min": round(idle_cpu * 600 / idle_seconds, 3),
        "goal": "<= 1 s per 10 idle minutes",
        "met": idle_cpu * 600 / idle_seconds <= 1.0,
        "connections_opened": idle_connections,
        "connections_per_day_measured": round(idle_connections * 86400 / idle_seconds, 1),
        "idle_commands_total": sum(c.split()[1:2] == ["IDLE"] for c in commands),
        "access_token_lifetime_s": lifetime,
        "connections_per_day_expected": round(86400 / (lifetime - margin), 1),
        "idle_renewal_s": 540,
        "still_running": proc.poll() is None,
    }


def _memory(bed: _Bed, first: int, total: int, burst: int) -> dict[str, Any]:
    """RSS of a Maildir-only watch after ``first`` and after ``total`` delivered messages, the
    mail arriving in bursts of ``burst`` (each delivered before the next arrives), as in service."""
    maildir = bed.home / "Mail"
    proc = bed.start_watch("--maildir", str(maildir))

    def delivered() -> int:
        return len(os.listdir(maildir / "new")) if (maildir / "new").is_dir() else 0

    trend: dict[int, int] = {}
    rss_after_first = 0
    started = time.monotonic()
    sent = 0
    while sent < total:
        size = min(burst, total - sent)
        for n in range(sent, sent + size):
            bed.servers.seed(bed.user, _message(100_000 + n))
        sent += size
        _wait(lambda sent=sent: delivered() >= sent, 300, f"{sent} delivered")
        if sent == first or (sent < first < sent + burst):
            time.sleep(0.2)
            rss_after_first = _rss_kb(proc.pid)
        if sent % 1000 == 0:
            trend[sent] = _rss_kb(proc.pid)
    seconds = time.monotonic() - started
    time.sleep(0.5)
    rss_after_total = _rss_kb(proc.pid)
    _stop(proc)
    growth = (rss_after_total - rss_after_first) / 1024
    return {
        "first": first,
        "total": total,
        "burst": burst,
        "rss_after_first_kb": rss_after_first,
        "rss_after_total_kb": rss_after_total,
        "rss_every_1000_kb": trend,
        "growth_mb": round(growth, 2),
        "goal": "<= 10 MB growth",
        "met": growth <= 10,
        "delivery_s": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark mailbot watch on the local test bed.")
    parser.add_argument("--messages", type=int, default=50, help="messages for the latency figure (default 50)")
    parser.add_argument("--idle-minutes", type=float, default=10.0, help="idle period (default 10)")
    parser.add_argument("--rss-total", type=int, default=10_000, help="messages for the memory figure")
    parser.add_argument("--burst", type=int, default=100, help="messages per burst for the memory figure")
    parser.add_argument(
        "--parts", default="latency,idle,memory", help="which figures, comma-separated (default: all three)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: 5 messages, 0.1 idle minutes, 300")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"write the figures here ({DEFAULT_JSON})")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.idle_minutes, args.rss_total = 5, 0.1, 300
    from tests.support.mailservers import TestbedUnavailable

    try:
        figures = run_watch_bench(
            args.messages,
            args.idle_minutes,
            min(100, args.rss_total),
            args.rss_total,
            args.burst,
            tuple(args.parts.split(",")),
        )
    except TestbedUnavailable as exc:
        print(f"error: the test bed cannot run here: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    text = json.dumps(figures, indent=2)
    print(text)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
