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
(default ``benchmarks/results/latest.json``, git-ignored).

Scenarios: ``list -n 50`` on two large folders, side by side with the tutorial approach
(imaplib: SEARCH ALL, then one FETCH RFC822 per message) and with imap_tools (optional
peer: ``pip install imap-tools``; skipped with a note when missing); a cron ``fetch``
with a valid and with an expired access token; start-up (``--help`` against ``python -c
pass`` and ``import argparse``; import time of the ``list`` path; msal must not be imported
by ``--help``); ``fetch`` of many new messages and of one very large message; ``outbox``
with 100 queued messages.

Exit status: 0 done (targets are reported, not asserted), 2 usage, 4 the test bed cannot
run here (not root, Dovecot/Postfix or trustme missing), 1 a benchmarked command failed.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import importlib.util
import json
import os
import platform
import random
import re
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import mailgen  # noqa: E402
from benchmarks.proxy import (  # noqa: E402
    Chunk,
    LatencyProxy,
    ProxyLoop,
    Stats,
    describe,
    think_time,
    waits,
)

MAILBOT = REPO / "mailbot.py"
PEERS = REPO / "benchmarks" / "peers.py"
SPAWNER = REPO / "benchmarks" / "spawner.py"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "latest.json"
CLIENT_ID = "5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f"
LIST_FIELDS = "DATE FROM TO CC SUBJECT MESSAGE-ID"  # what mailbot's list fetches (reading.py)
EXIT_UNAVAILABLE = 4
USER = "bench@example.com"
EXPIRED_USER = "bench-expired@example.com"
SINK = "sink@example.com"


# ====================================================================== sizes


@dataclass(frozen=True)
class Sizes:
    big: tuple[int, int]  # the two large folders for list -n 50 and imap_tools
    baseline: tuple[int, int]  # folders the tutorial approach reads completely
    list_n: int
    fetch: tuple[int, int]  # new messages for fetch (the second is "500")
    big_message_mb: float
    outbox: int
    cron_inbox: int
    startup_reps: int


FULL = Sizes((10_000, 100_000), (50, 500), 50, (50, 500), 50, 100, 200, 20)
QUICK = Sizes((200, 2_000), (5, 20), 50, (5, 20), 2, 5, 20, 5)


def label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


# ====================================================================== results


@dataclass
class Scenario:
    key: str
    name: str
    command: str
    messages: int | None = None
    reps: int = 0
    wall_s_no_delay: float | None = None
    wall_s_delay: float | None = None
    walls_no_delay: list[float] = field(default_factory=list)
    walls_delay: list[float] = field(default_factory=list)
    effective_rts: float | None = None
    effective_rts_excl_server: float | None = None  # server think time (from the timeline) removed
    rts_seen: int | None = None
    bytes_from_server: int | None = None
    bytes_to_server: int | None = None
    connections: int | None = None
    peak_rss_mb: float | None = None
    idp_requests: int | None = None
    idp_requests_by_endpoint: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None  # None: could not be evaluated
    margin: str


@dataclass
class RunResult:
    wall: float
    rss_kb: int
    rc: int
    stdout: bytes
    stderr: bytes
    proxies: dict[str, Stats]
    idp: dict[str, int]


class CommandFailed(RuntimeError):
    pass


class Spawner:
    """The small helper process (benchmarks/spawner.py) that starts and measures the commands."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SPAWNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.proc.stdin is None or self.proc.stdout is None:
            raise RuntimeError("the spawner was started without pipes")
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise CommandFailed(f"the spawner exited ({self.proc.poll()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise CommandFailed(f"cannot run {request['argv']}: {reply['error']}")
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ====================================================================== the bench


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes) -> None:
        self.args = args
        self.sizes = sizes
        self.delay = args.delay_ms / 1000.0
        self.reps = args.reps
        self.scenarios: list[Scenario] = []
        self.notes: list[str] = []
        self.timelines: dict[str, list[str]] = {}
        self.startup: dict[str, Any] = {}
        self.seeded_bytes = 0
        self.spawner = Spawner()  # first, while this process is still small
        # tmpfs when there is one: fetch's fsyncs then cost little and vary less between runs.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
        self.root = Path(tempfile.mkdtemp(prefix="mailbot-bench-", dir=shm))
        self.root.chmod(0o755)
        self.servers: Any = None
        self.idp: Any = None
        self.ploop: ProxyLoop | None = None
        self.proxies: dict[str, LatencyProxy] = {}
        self.homes: dict[str, Path] = {}
        self.factory = mailgen.MailFactory()

    # ------------------------------------------------------------------ set-up / tear-down

    def start(self) -> None:
        import trustme

        from tests.support.idp import IdentityStandIn
        from tests.support.mailservers import MailServers

        self.ca = trustme.CA()
        self.jwt_key = secrets.token_bytes(32)
        self.ca_pem = self.root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_pem))
        self.servers = MailServers(self.root / "mailservers", self.ca, trustme.CA(), self.jwt_key)
        self.servers.start()
        (self.root / "idp").mkdir()
        self.idp = IdentityStandIn(self.ca, self.jwt_key, workdir=self.root / "idp")
        self.ploop = ProxyLoop()
        self.proxies = {
            "imap": LatencyProxy(self.ploop, "imap", "127.0.0.1", self.servers.imaps_port),
            "smtp": LatencyProxy(self.ploop, "smtp", "127.0.0.1", self.servers.submission_port),
            "idp": LatencyProxy(self.ploop, "idp", "127.0.0.1", self.idp.port),
        }
        # The stand-in's discovery document names base_url: make MSAL come back through the proxy.
        self.idp.base_url = f"https://localhost:{self.proxies['idp'].port}"
        for user in (USER, EXPIRED_USER, SINK):
            self.servers.add_user(user)

    def stop(self) -> None:
        self.spawner.close()
        for proxy in self.proxies.values():
            proxy.close()
        if self.ploop is not None:
            self.ploop.stop()
        if self.idp is not None:
            self.idp.stop()
        if self.servers is not None:
            self.servers.stop()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ environment

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTLOOK_", "MAILBOT_", "BENCH_"))}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's mailbot has its bytecode cached
        return env

    def home(self, user: str) -> Path:
        if user not in self.homes:
            home = self.root / "homes" / user.split("@")[0]
            (home / "state").mkdir(parents=True)
            (home / "empty.env").write_text("")
            self.homes[user] = home
        return self.homes[user]

    def env(self, user: str = USER) -> dict[str, str]:
        home = self.home(user)
        return self.base_env() | {
            "HOME": str(home),
            "MAILBOT_ENV_FILE": str(home / "empty.env"),
            "OUTLOOK_USERNAME": user,
            "OUTLOOK_CLIENT_ID": CLIENT_ID,
            "OUTLOOK_AUTHORITY": f"https://localhost:{self.proxies['idp'].port}/organizations",
            "OUTLOOK_IMAP_SERVER": "localhost",
            "OUTLOOK_IMAP_PORT": str(self.proxies["imap"].port),
            "OUTLOOK_IMAP_TLS": "implicit",
            "OUTLOOK_SMTP_SERVER": "localhost",
            "OUTLOOK_SMTP_PORT": str(self.proxies["smtp"].port),
            "OUTLOOK_SMTP_TLS": "starttls",
            "MAILBOT_TOKEN_CACHE": str(home / "token_cache.json"),
            "MAILBOT_STATE_DIR": str(home / "state"),
            "MAILBOT_CA_BUNDLE": str(self.ca_pem),
            "MAILBOT_TIMEOUT": "120",
            "MAILBOT_SEND_RATE": "100000",
        }

    def peer_env(self, user: str = USER) -> dict[str, str]:
        from tests.support import jwt_hs256

        return self.base_env() | {
            "BENCH_HOST": "localhost",
            "BENCH_PORT": str(self.proxies["imap"].port),
            "BENCH_CA": str(self.ca_pem),
            "BENCH_USER": user,
            "BENCH_TOKEN": jwt_hs256.access_token(user, self.jwt_key, lifetime=4 * 3600),
        }

    def mailbot(self, *args: str) -> list[str]:
        return [sys.executable, str(MAILBOT), *args]

    # ------------------------------------------------------------------ running one command

    def run_once(
        self,
        argv: list[str],
        env: dict[str, str],
        delay: float,
        prepare: Callable[[], None] | None = None,
        timeout: float = 900,
        cwd: Path | None = None,
    ) -> RunResult:
        if prepare is not None:
            prepare()
        for proxy in self.proxies.values():
            proxy.delay = delay
            proxy.reset()
        self.idp.reset_counts()
        out, err = self.root / "last-run.out", self.root / "last-run.err"
        request = {
            "argv": argv,
            "env": env,
            "cwd": str(cwd or self.root),
            "stdout": str(out),
            "stderr": str(err),
            "timeout": timeout,
        }
        reply = self.spawner.run(request)
        for proxy in self.proxies.values():
            proxy.wait_idle(5)
        return RunResult(
            reply["wall"],
            reply["maxrss_kb"],
            reply["returncode"],
            out.read_bytes(),
            err.read_bytes(),
            {name: proxy.snapshot() for name, proxy in self.proxies.items()},
            self.idp.counts(),
        )

    def check(self, result: RunResult, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> RunResult:
        if result.rc not in ok_codes:
            tail = result.stderr.decode("utf-8", "replace")[-3000:]
            raise CommandFailed(f"{' '.join(argv[1:])} exited {result.rc}:\n{tail}")
        return result

    def measure(
        self,
        key: str,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        messages: int | None = None,
        prepare: Callable[[], None] | None = None,
        warmup: bool = True,
        reps: int | None = None,
        timeline: bool = False,
    ) -> Scenario:
        """Run ``argv`` alternately without and with delay; medians give the effective round trips."""
        reps = reps or self.reps
        print(f"  {name} ...", file=sys.stderr, flush=True)
        if warmup and not self.args.quick:
            self.check(self.run_once(argv, env, 0.0, prepare), argv)
        plain: list[RunResult] = []
        delayed: list[RunResult] = []
        for i in range(reps):
            plain.append(self.check(self.run_once(argv, env, 0.0, prepare), argv))
            if i == 0 or delayed[-1].wall < self.args.long_run_s:
                delayed.append(self.check(self.run_once(argv, env, self.delay, prepare), argv))
        t0 = statistics.median(r.wall for r in plain)
        td = statistics.median(r.wall for r in delayed)
        # The same without the server's think time, which varies from run to run (Dovecot on a
        # 100,000-message folder: 60-100 ms for one FETCH).
        x0 = statistics.median(r.wall - self._think(r, 0.0) for r in plain)
        xd = statistics.median(r.wall - self._think(r, self.delay) for r in delayed)
        last = delayed[-1]
        chunks: list[Chunk] = [c for stats in last.proxies.values() for c in stats.chunks]
        # Connections of different proxies have separate numbering: count per proxy.
        seen = sum(waits(stats.chunks) for stats in last.proxies.values())
        idp_totals = [r.idp.get("total", 0) for r in plain + delayed]
        scenario = Scenario(
            key=key,
            name=name,
            command=" ".join(_shorten(a) for a in argv[1:]),
            messages=messages,
            reps=len(plain),
            wall_s_no_delay=round(t0, 4),
            wall_s_delay=round(td, 4),
            walls_no_delay=[round(r.wall, 4) for r in plain],
            walls_delay=[round(r.wall, 4) for r in delayed],
            effective_rts=round((td - t0) / (2 * self.delay), 2) if self.delay > 0 else None,
            effective_rts_excl_server=round((xd - x0) / (2 * self.delay), 2) if self.delay > 0 else None,
            rts_seen=seen,
            bytes_from_server=sum(s.bytes_down for n, s in last.proxies.items() if n != "idp"),
            bytes_to_server=sum(s.bytes_up for n, s in last.proxies.items() if n != "idp"),
            connections=sum(s.connections for n, s in last.proxies.items() if n != "idp"),
            peak_rss_mb=round(max(r.rss_kb for r in plain + delayed) / 1024, 1),
            idp_requests=max(idp_totals),
            idp_requests_by_endpoint={k: v for k, v in last.idp.items() if k != "total"},
        )
        scenario.extra["idp_bytes_from_server"] = last.proxies["idp"].bytes_down
        scenario.extra["idp_requests_each_run"] = idp_totals
        late = [x for s in last.proxies.values() for x in s.lateness]
        if late:
            scenario.extra["proxy_lateness_ms_mean"] = round(1000 * statistics.mean(late), 3)
        if timeline:
            self.timelines[key] = [
                f"[{n}] {line}" for n, s in last.proxies.items() if s.chunks for line in describe(s.chunks)
            ]
            scenario.extra["timeline"] = [asdict(c) for c in sorted(chunks, key=lambda c: (c.conn, c.t))][:400]
        scenario.extra["last_stdout_lines"] = len(last.stdout.splitlines())
        self.scenarios.append(scenario)
        return scenario

    @staticmethod
    def _think(result: RunResult, delay: float) -> float:
        return sum(think_time(stats.chunks, delay) for stats in result.proxies.values())

    # ------------------------------------------------------------------ seeding and sign-in

    def seed_folder(self, user: str, folder: str, count: int, end: float | None = None) -> list[int]:
        """``count`` realistic messages, oldest first, dated over three years up to ``end``."""
        end = end or time.time() - 3600
        span = 3 * 365 * 86400
        sizes = []
        for i in range(count):
            when = end - span + span * (i + 1) / count
            raw = self.factory.message(i, when, user)
            self.servers.seed(user, raw, folder=folder, seen=random.random() < 0.8, internaldate=when)
            sizes.append(len(raw))
        self.seeded_bytes += sum(sizes)
        return sizes

    def login(self, user: str) -> None:
        self.idp.interval = 0  # approved at the first poll; no waiting
        self.idp.auto_approve(user, after_polls=0)
        argv = self.mailbot("login")
        self.check(self.run_once(argv, self.env(user), 0.0), argv)

    # ------------------------------------------------------------------ direct IMAP (no proxy)

    def direct_imap(self, user: str = USER) -> _CountingIMAP:
        from tests.support import jwt_hs256

        token = jwt_hs256.access_token(user, self.jwt_key)
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        imap = _CountingIMAP("localhost", self.servers.imaps_port, ssl_context=ctx)
        imap.authenticate("XOAUTH2", lambda _c: f"user={user}\1auth=Bearer {token}\1\1".encode())
        return imap

    def list_bytes(self, folder: str, n: int) -> dict[str, int]:
        """For the newest ``n`` messages, straight from Dovecot (no TLS overhead counted):
        ``header_bytes``, what BODY.PEEK[HEADER.FIELDS (list's fields)] returns; ``fetch_response_bytes``,
        the whole response to mailbot's own FETCH items; ``full_header_bytes``, BODY.PEEK[HEADER]."""
        imap = self.direct_imap()
        out = {}
        try:
            _typ, data = imap.select(f'"{folder}"', readonly=True)
            exists = int(data[0])
            seqs = f"{max(1, exists - n + 1)}:{exists}"
            for key, items in (
                ("header_bytes", f"(BODY.PEEK[HEADER.FIELDS ({LIST_FIELDS})])"),
                ("full_header_bytes", "(BODY.PEEK[HEADER])"),
            ):
                _typ, data = imap.fetch(seqs, items)
                out[key] = sum(len(part[1]) for part in data if isinstance(part, tuple))
            imap.received = 0
            imap.fetch(seqs, _summary_items())
            out["fetch_response_bytes"] = imap.received
            # What a leaner FETCH would cost: without Cc (fetched, never shown nor in --json) and
            # INTERNALDATE (only a fallback for a missing Date).
            _typ, data = imap.fetch(seqs, "(BODY.PEEK[HEADER.FIELDS (CC)])")
            out["cc_header_bytes"] = sum(len(part[1]) - 2 for part in data if isinstance(part, tuple))
            lean_fields = LIST_FIELDS.replace(" CC", "")
            _typ, data = imap.fetch(seqs, f"(BODY.PEEK[HEADER.FIELDS ({lean_fields})])")
            out["lean_header_bytes"] = sum(len(part[1]) for part in data if isinstance(part, tuple))
            imap.received = 0
            imap.fetch(seqs, f"(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({lean_fields})])")
            out["lean_fetch_response_bytes"] = imap.received
        finally:
            imap.logout()
        return out

    # ================================================================== scenarios

    def scenario_list(self) -> None:
        s = self.sizes
        print("list -n 50 and its peers", file=sys.stderr)
        folders = {}
        for size in s.big:
            folder = f"Bench{label(size)}"
            t = time.perf_counter()
            self.seed_folder(USER, folder, size)
            print(f"  seeded {folder}: {size:,} messages in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            folders[size] = folder
        for size in s.baseline:
            self.seed_folder(USER, f"Small{size}", size)
        for size, folder in folders.items():
            sc = self.measure(
                f"list_{label(size)}",
                f"mailbot list -n {s.list_n} ({label(size)} folder)",
                self.mailbot("list", "-n", str(s.list_n), "--folder", folder),
                self.env(),
                messages=size,
                timeline=size == max(s.big),
            )
            e = sc.extra
            e.update(self.list_bytes(folder, s.list_n))
            hb = e["header_bytes"]
            e["bytes_ratio_to_header_bytes"] = round(sc.bytes_from_server / hb, 3) if hb else None
            lean_total = sc.bytes_from_server - e["fetch_response_bytes"] + e["lean_fetch_response_bytes"]
            e["lean_bytes_from_server_estimate"] = lean_total
            e["lean_ratio_estimate"] = round(lean_total / e["lean_header_bytes"], 3)
        for size in s.baseline:
            self.measure(
                f"baseline_{label(size)}",
                f"tutorial imaplib: SEARCH ALL + FETCH RFC822 each ({size}-message folder)",
                [sys.executable, str(PEERS), "baseline", f"Small{size}"],
                self.peer_env(),
                messages=size,
            )
        if self.args.no_imap_tools or importlib.util.find_spec("imap_tools") is None:
            note = (
                "imap_tools peer skipped (--no-imap-tools)"
                if self.args.no_imap_tools
                else "imap_tools peer skipped: it is not installed (pip install imap-tools)"
            )
            print(f"  {note}", file=sys.stderr)
            self.notes.append(note)
            for size in s.big:
                self.scenarios.append(
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
                self.measure(
                    f"imap_tools_{label(size)}",
                    f"imap_tools fetch(limit={s.list_n}, headers_only, bulk) ({label(size)} folder)",
                    [sys.executable, str(PEERS), "imap_tools", folder, "-n", str(s.list_n)],
                    self.peer_env(),
                    messages=size,
                )

    def scenario_cron(self) -> None:
        print("cron fetch: valid and expired access token", file=sys.stderr)
        for user, key, name in (
            (USER, "cron_valid", "cron fetch, nothing new, valid cached token"),
            (EXPIRED_USER, "cron_expired", "cron fetch, nothing new, expired access token"),
        ):
            self.seed_folder(user, "INBOX", self.sizes.cron_inbox)
            maildir = self.home(user) / "cron-maildir"
            argv = self.mailbot("fetch", "--maildir", str(maildir))
            if user == EXPIRED_USER:
                # Every token it gets lives 120 s, which MSAL deems expired (< 300 s left): a refresh per run.
                self.idp.access_token_lifetime = 120
            try:
                self.check(self.run_once(argv, self.env(user), 0.0), argv)  # first run: remembers where it is
                self.measure(
                    key,
                    name,
                    argv,
                    self.env(user),
                    messages=self.sizes.cron_inbox,
                    warmup=False,
                    timeline=True,
                )
            finally:
                self.idp.access_token_lifetime = 3600

    def scenario_startup(self) -> None:
        print("start-up", file=sys.stderr)
        env = self.base_env()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            'python -c "import argparse"': [sys.executable, "-c", "import argparse"],
            "python mailbot.py --help": [sys.executable, str(MAILBOT), "--help"],
            "python -c 'import list's modules'": [
                sys.executable,
                "-c",
                "import mailbotcore.commands.reading, mailbotcore.net.imap, mailbotcore.signin.authenticator",
            ],
        }
        for argv in commands.values():  # warm the bytecode caches
            subprocess.run(argv, env=env, cwd=REPO, capture_output=True, check=True)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        rss: dict[str, int] = {}
        for _ in range(self.sizes.startup_reps):
            for name, argv in commands.items():
                r = self.run_once(argv, env, 0.0, cwd=REPO)
                self.check(r, argv)
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
        help_imports = _importtime([sys.executable, "-X", "importtime", str(MAILBOT), "--help"], env, REPO)
        list_argv = [
            sys.executable,
            "-X",
            "importtime",
            str(MAILBOT),
            "list",
            "-n",
            str(self.sizes.list_n),
            "--folder",
            f"Bench{label(self.sizes.big[0])}",
        ]
        list_imports = _importtime(list_argv, self.env(), self.root)
        argparse_imports = _importtime([sys.executable, "-X", "importtime", "-c", "import argparse"], env, REPO)
        self.startup = {
            "commands": rows,
            "reps": self.sizes.startup_reps,
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

    def scenario_fetch(self) -> None:
        print("fetch of new messages; one very large message", file=sys.stderr)
        small, large = self.sizes.fetch
        for count in (small, large):
            folder = f"Fetch{count}"
            self.seed_folder(USER, folder, 10)  # mail that was there before the first fetch
            sizes, prepare = self._fetch_setup(folder, lambda f=folder, c=count: self.seed_folder(USER, f, c))
            sc = self.measure(
                f"fetch_{count}",
                f"mailbot fetch, {count} new messages (--maildir)",
                self.mailbot("fetch", "--folder", folder, "--maildir", str(self.root / "fetched" / folder)),
                self.fetch_env(folder),
                messages=count,
                prepare=prepare,
                timeline=count == large,
            )
            sc.extra["message_bytes"] = sum(sizes)
            sc.extra["largest_message"] = max(sizes)
            sc.extra["expected_batches"] = _batches(sizes, 10 * 1024 * 1024)
        # One very large message: peak memory.
        folder = "FetchBig"
        self.seed_folder(USER, folder, 3)
        big = int(self.sizes.big_message_mb * 1024 * 1024)
        raw_big = self.factory.big_message(USER, big, time.time() - 60)

        def add_big(f: str = folder) -> list[int]:
            self.servers.seed(USER, raw_big, folder=f, internaldate=time.time() - 60)
            return [len(raw_big)]

        sizes, prepare = self._fetch_setup(folder, add_big)
        sc = self.measure(
            "fetch_big",
            f"mailbot fetch, one new {self.sizes.big_message_mb:g} MB message",
            self.mailbot("fetch", "--folder", folder, "--maildir", str(self.root / "fetched" / folder)),
            self.fetch_env(folder),
            messages=1,
            prepare=prepare,
            reps=min(self.reps, 3),
        )
        sc.extra["largest_message"] = len(raw_big)

    def fetch_env(self, folder: str) -> dict[str, str]:
        """A state directory of its own per folder, so each scenario's state file is easy to find."""
        state = self.home(USER) / f"state-{folder}"
        state.mkdir(exist_ok=True)
        return self.env() | {"MAILBOT_STATE_DIR": str(state)}

    def _fetch_setup(self, folder: str, add: Callable[[], list[int]]) -> tuple[list[int], Callable[[], None]]:
        """First fetch (remembers the folder's end), then new mail; each run starts from that state."""
        env = self.fetch_env(folder)
        state_dir = Path(env["MAILBOT_STATE_DIR"])
        maildir = self.root / "fetched" / folder
        argv = self.mailbot("fetch", "--folder", folder, "--maildir", str(maildir))
        self.check(self.run_once(argv, env, 0.0), argv)
        created = sorted(state_dir.glob("*.json"))
        if len(created) != 1:
            raise CommandFailed(f"expected one fetch state file in {state_dir}, found {created}")
        state_file, state = created[0], created[0].read_bytes()
        sizes = add()

        def prepare() -> None:
            state_file.write_bytes(state)
            shutil.rmtree(maildir, ignore_errors=True)

        return sizes, prepare

    def scenario_outbox(self) -> None:
        print("outbox", file=sys.stderr)
        n = self.sizes.outbox
        queue = self.root / "outbox"
        rng = random.Random(5)
        messages = [mailgen.outgoing(USER, SINK, i, rng) for i in range(n)]
        log = self.servers.dir / "logs" / "postfix.log"

        def prepare() -> None:
            shutil.rmtree(queue, ignore_errors=True)
            queue.mkdir()
            for i, raw in enumerate(messages):
                (queue / f"{i:020d}-bench.eml").write_bytes(raw)
            self._log_offset = log.stat().st_size if log.exists() else 0

        sc = self.measure(
            "outbox",
            f"mailbot outbox, {n} queued messages",
            self.mailbot("outbox", str(queue)),
            self.env(),
            messages=n,
            prepare=prepare,
            timeline=True,
        )
        sent = len(list((queue / "sent").glob("*.eml")))
        sc.extra["sent"] = sent
        sc.extra["message_bytes"] = sum(len(m) for m in messages)
        sc.extra["ms_per_message_no_delay"] = round(1000 * sc.wall_s_no_delay / n, 2)
        sc.extra["ms_per_message_delay"] = round(1000 * sc.wall_s_delay / n, 2)
        if sc.effective_rts is not None:
            sc.extra["rts_per_message"] = round(sc.effective_rts / n, 2)
        # Authentications: the connection is TLS, so the proxy cannot see commands; a -vv run at
        # delay 0 logs every command mailbot sends (tokens redacted).
        argv = self.mailbot("-vv", "outbox", str(queue))
        r = self.check(self.run_once(argv, self.env(), 0.0, prepare), argv)
        text = r.stderr.decode("utf-8", "replace")
        # smtplib's debug lines: "send: 'AUTH XOAUTH2 <redacted>'" per authentication.
        sc.extra["authentications"] = len(re.findall(r"send: .?.?'AUTH ", text))
        sc.extra["connections_verbose_run"] = r.proxies["smtp"].connections
        sc.extra["default_pacing"] = "30 messages/minute (MAILBOT_SEND_RATE default): one every 2 s"
        sc.extra["default_pacing_minimum_s"] = round((n - 1) * 60 / 30, 1)

    # ================================================================== targets

    def targets(self) -> list[Target]:
        by = {s.key: s for s in self.scenarios if s.skipped is None}
        out: list[Target] = []
        big = [by.get(f"list_{label(n)}") for n in self.sizes.big]
        if all(big) and self.delay > 0:
            a, b = big  # type: ignore[misc]
            diff = b.effective_rts - a.effective_rts
            out.append(
                Target(
                    f"list -n {self.sizes.list_n}: same round trips on {label(a.messages)} and {label(b.messages)}",
                    "difference at most 0.5 RT",
                    f"{a.effective_rts:.2f} vs {b.effective_rts:.2f} (server think time removed: "
                    f"{_num(a.effective_rts_excl_server)} vs {_num(b.effective_rts_excl_server)}; "
                    f"seen {a.rts_seen} vs {b.rts_seen})",
                    abs(diff) <= 0.5,
                    f"{diff:+.2f} RT",
                )
            )
            worst = max(a.effective_rts, b.effective_rts)
            out.append(
                Target(
                    f"list -n {self.sizes.list_n}: effective round trips",
                    "<= 6.5 (floor ~5.5)",
                    f"{worst:.2f} (server think time removed: "
                    f"{_num(max(a.effective_rts_excl_server or 0, b.effective_rts_excl_server or 0))}; "
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
                        f"list -n {self.sizes.list_n}: bytes from server vs header bytes of the fetched fields",
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
        if self.startup:
            rows = {r["command"]: r for r in self.startup["commands"]}
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
                    "imported" if self.startup["help_imports_msal"] else "not imported",
                    not self.startup["help_imports_msal"],
                    "-" if not self.startup["help_imports_msal"] else "msal imported",
                )
            )
        small, large = (by.get(f"fetch_{n}") for n in self.sizes.fetch)
        if small and large and self.delay > 0:
            extra_batches = large.extra["expected_batches"] - small.extra["expected_batches"]
            extra_rts = large.effective_rts - small.effective_rts
            out.append(
                Target(
                    f"fetch {large.messages} vs {small.messages} new messages: round trips grow "
                    "with batches, not count",
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
            ref = by.get(f"fetch_{self.sizes.fetch[1]}")
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

    # ================================================================== report

    def machine(self) -> dict[str, Any]:
        cpu = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        info = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": cpu,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "dovecot": _version(["dovecot", "--version"]),
            "postfix": _version(["postconf", "-h", "mail_version"]),
            "imap_tools": _module_version("imap_tools"),
            "msal": _module_version("msal"),
        }
        return info

    def report(self, targets: list[Target]) -> tuple[str, dict[str, Any]]:
        d_ms = self.args.delay_ms
        lines = []
        m = self.machine()
        lines.append(
            f"mailbot benchmark — {m['date']} — {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, "
            f"Dovecot {m['dovecot']}, Postfix {m['postfix']}"
        )
        lines.append(
            f"one-way delay {d_ms:g} ms (RTT {2 * d_ms:g} ms); medians of {self.reps} run(s) per delay "
            f"(a command whose delayed run exceeds {self.args.long_run_s:g} s: one delayed run); "
            f"effective RTs = (t_delay - t_0) / RTT; RTs seen = round trips in the proxy's timeline"
            + (" [--quick sizes]" if self.args.quick else "")
        )
        lines.append("")
        lines.append(
            f"| Scenario | Wall, no delay | Wall, RTT {2 * d_ms:g} ms | Effective RTs | RTs seen | "
            "From server | Conns | Peak RSS | IdP reqs |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in self.scenarios:
            if s.skipped:
                lines.append(f"| {s.name} | skipped | | | | | | | |")
                continue
            lines.append(
                f"| {s.name} | {_secs(s.wall_s_no_delay)} | {_secs(s.wall_s_delay)} | "
                f"{_num(s.effective_rts)} | {s.rts_seen} | "
                f"{_bytes(s.bytes_from_server)} | {s.connections} | {s.peak_rss_mb:.0f} MB | "
                f"{s.idp_requests} |"
            )
        if self.startup:
            lines.append("")
            lines.append("| Start-up command | Median | vs `python -c pass` | vs `import argparse` | Peak RSS |")
            lines.append("|---|---:|---:|---:|---:|")
            for r in self.startup["commands"]:
                lines.append(
                    f"| `{r['command']}` | {r['median_ms']:.1f} ms | {r['ratio_to_pass']:.2f}x | "
                    f"{r['ratio_to_argparse']:.2f}x | {r['peak_rss_mb']:.0f} MB |"
                )
            st = self.startup
            top = ", ".join(f"{name} {ms:.0f} ms" for name, ms in st["list_run_top_imports"])
            help_msal = "imported" if st["help_imports_msal"] else "not imported"
            list_msal = "imported" if st["list_run_imports_msal"] else "not imported"
            lines.append("")
            lines.append(
                "Imports (-X importtime, top level summed): "
                f"`import argparse` {st['argparse_import_ms']:.1f} ms; "
                f"`mailbot.py --help` {st['help_import_ms']:.1f} ms (msal {help_msal}); "
                f"a real `list` run {st['list_run_import_ms']:.1f} ms = "
                f"{st['list_run_import_ratio_to_argparse']}x argparse (msal {list_msal}). Largest: {top}."
            )
        extras = self._extra_lines()
        if extras:
            lines.append("")
            lines.extend(extras)
        lines.append("")
        lines.append("| Target | Goal | Measured | Met | Margin |")
        lines.append("|---|---|---|---|---|")
        for t in targets:
            met = "n/a" if t.met is None else ("met" if t.met else "**missed**")
            lines.append(f"| {t.name} | {t.goal} | {t.measured} | {met} | {t.margin} |")
        for key, timeline in self.timelines.items():
            lines.append("")
            lines.append(f"Timeline of the last delayed run of {key} (proxy read times, ms since accept):")
            lines.append("```")
            lines.extend(timeline)
            lines.append("```")
        if self.notes:
            lines.append("")
            lines.extend(f"Note: {n}" for n in self.notes)
        text = "\n".join(lines)
        data = {
            "machine": m,
            "settings": {
                "delay_ms": d_ms,
                "rtt_ms": 2 * d_ms,
                "reps": self.reps,
                "quick": self.args.quick,
                "sizes": asdict(self.sizes),
                "seeded_bytes": self.seeded_bytes,
            },
            "scenarios": [asdict(s) for s in self.scenarios],
            "startup": self.startup,
            "targets": [asdict(t) for t in targets],
            "notes": self.notes,
            "markdown": text,
        }
        return text, data

    def _extra_lines(self) -> list[str]:
        by = {s.key: s for s in self.scenarios if s.skipped is None}
        out = []
        for n in self.sizes.big:
            s = by.get(f"list_{label(n)}")
            if s:
                e = s.extra
                framing = e["fetch_response_bytes"] - e["header_bytes"]
                session = s.bytes_from_server - e["fetch_response_bytes"]
                out.append(
                    f"list -n {self.sizes.list_n} ({label(n)}): {s.bytes_from_server:,} B from the server = "
                    f"{e['header_bytes']:,} B of header fields + {framing:,} B of FETCH framing (UID, FLAGS, "
                    f"INTERNALDATE, RFC822.SIZE, section names) + {session:,} B of TLS handshake, greeting, "
                    f"AUTHENTICATE, EXAMINE and TLS records ({e['bytes_ratio_to_header_bytes']}x the header "
                    f"fields; all headers of those messages would be {e['full_header_bytes']:,} B). "
                    f"Cc, fetched but never shown, is {e['cc_header_bytes']:,} B of it; without Cc and "
                    f"INTERNALDATE the run would take about {e['lean_bytes_from_server_estimate']:,} B = "
                    f"{e['lean_ratio_estimate']}x the remaining fields."
                )
        small, large = (by.get(f"baseline_{label(n)}") for n in self.sizes.baseline)
        if small and large and small.effective_rts and large.effective_rts:
            per_message = (large.effective_rts - small.effective_rts) / (large.messages - small.messages)
            out.append(
                f"Tutorial approach grows with the folder: {small.messages} -> {large.messages} messages = "
                f"{small.effective_rts:.1f} -> {large.effective_rts:.1f} RTs ({per_message:.2f} RT per "
                f"message), {_bytes(small.bytes_from_server)} -> {_bytes(large.bytes_from_server)}."
            )
        for n in self.sizes.fetch:
            s = by.get(f"fetch_{n}")
            if s:
                out.append(
                    f"fetch {n}: {_bytes(s.extra['message_bytes'])} of messages, "
                    f"{_bytes(s.bytes_from_server)} from the server, {s.extra['expected_batches']} batch(es) "
                    f"of <= 10 MB, {s.effective_rts} effective RTs."
                )
        s = by.get("fetch_big")
        ref = by.get(f"fetch_{self.sizes.fetch[1]}")
        if s and ref:
            out.append(
                f"fetch of one {s.extra['largest_message'] / 2**20:.1f} MB message: peak RSS "
                f"{s.peak_rss_mb:.0f} MB (fetch of small messages: {ref.peak_rss_mb:.0f} MB)."
            )
        s = by.get("outbox")
        if s:
            e = s.extra
            out.append(
                f"outbox {s.messages}: {e['ms_per_message_no_delay']} ms per message without delay, "
                f"{e['ms_per_message_delay']} ms with RTT {2 * self.args.delay_ms:g} ms "
                f"({e.get('rts_per_message')} RTs per message, set-up included); {s.connections} "
                f"connection(s), {e['authentications']} AUTH. MAILBOT_SEND_RATE=100000 here; by default "
                f"pacing is 30/min, so {s.messages} messages take at least "
                f"{e['default_pacing_minimum_s']:g} s."
            )
        return out


# ====================================================================== helpers


class _CountingIMAP(imaplib.IMAP4_SSL):
    """imaplib that counts the plaintext bytes it receives."""

    received = 0

    def read(self, size: int) -> bytes:
        data = super().read(size)
        self.received += len(data)
        return data

    def readline(self) -> bytes:
        line = super().readline()
        self.received += len(line)
        return line


def _summary_items() -> str:
    """The FETCH items of mailbot's list (reading.SUMMARY_ITEMS), whatever they are today."""
    try:
        from mailbotcore.commands import reading

        return str(reading.SUMMARY_ITEMS)
    except Exception:
        return f"(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS ({LIST_FIELDS})])"


def _shorten(arg: str) -> str:
    for prefix, short in ((str(REPO) + "/", ""), (tempfile.gettempdir() + "/", "$TMP/")):
        if arg.startswith(prefix):
            return short + arg[len(prefix) :]
    return re.sub(r"/tmp/mailbot-bench-[^/]+/", "$BENCH/", arg)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _secs(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def _bytes(n: int | None) -> str:
    if n is None:
        return ""
    if n >= 10 * 2**20:
        return f"{n / 2**20:.1f} MB"
    if n >= 10 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n:,} B"


def _batches(sizes: list[int], limit: int) -> int:
    """How many FETCH batches fetching.batches() makes (consecutive, <= limit, a bigger one alone)."""
    count, total = 0, 0
    for size in sizes:
        if count and total + size > limit:
            count, total = count + 1, 0
        elif not count:
            count = 1
        total += size
    return count


def _importtime(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    modules, top = [], []
    total = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if not m:
            continue
        name, cumulative = m[4], int(m[2])
        modules.append(name)
        if len(m[3]) == 1:  # top level
            total += cumulative
            top.append((name, cumulative / 1000))
    top.sort(key=lambda item: -item[1])
    return {
        "total_ms": round(total / 1000, 1),
        "modules": modules,
        "top": [(n, round(ms, 1)) for n, ms in top[:6]],
    }


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.split()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def _module_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name.replace("_", "-"))
    except Exception:
        return None


# ====================================================================== main


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
        choices=("list", "cron", "startup", "fetch", "outbox"),
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
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, mail) after the run")
    args = parser.parse_args(argv)
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
        groups = args.only or ["list", "cron", "startup", "fetch", "outbox"]
        if "startup" in groups and "list" not in groups:
            bench.seed_folder(USER, f"Bench{label(sizes.big[0])}", 10)
        for group in ("list", "cron", "startup", "fetch", "outbox"):
            if group in groups:
                getattr(bench, f"scenario_{group}")()
        targets = bench.targets()
        text, data = bench.report(targets)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
