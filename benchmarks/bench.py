"""The benchmark's machinery: the test bed, the latency proxy, the measured child processes.

Scenarios (``benchmarks/scenarios/``) drive a :class:`Bench`; targets (``benchmarks/targets.py``) and
the report (``benchmarks/report.py``) read the :class:`Scenario` records it collects.
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
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
    cpu_s: float | None = None  # user + system CPU of the process tree, median of the runs without delay
    idp_requests: int | None = None
    idp_requests_by_endpoint: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None


@dataclass
class RunResult:
    wall: float
    rss_kb: int
    rc: int
    cpu: float
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
        """``python mailbot.py ARGS`` with the interpreter chosen by --python (default: this one)."""
        return [str(getattr(self.args, "python", None) or sys.executable), str(MAILBOT), *args]

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
            reply["cpu_s"],
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
            cpu_s=round(statistics.median(r.cpu for r in plain), 4),
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
            "dovecot": version(["dovecot", "--version"]),
            "postfix": version(["postconf", "-h", "mail_version"]),
            "imap_tools": module_version("imap_tools"),
            "msal": module_version("msal"),
            "mailbot_python": _interpreter(str(getattr(self.args, "python", None) or sys.executable)),
            "getmail6": version(["getmail", "--version"], index=1),
            "msmtp": version(["msmtp", "--version"], index=2),
        }
        return info


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


def num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def secs(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def nbytes(n: int | None) -> str:
    if n is None:
        return ""
    if n >= 10 * 2**20:
        return f"{n / 2**20:.1f} MB"
    if n >= 10 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n:,} B"


def batches(sizes: list[int], limit: int) -> int:
    """How many FETCH batches fetching.batches() makes (consecutive, <= limit, a bigger one alone)."""
    count, total = 0, 0
    for size in sizes:
        if count and total + size > limit:
            count, total = count + 1, 0
        elif not count:
            count = 1
        total += size
    return count


def importtime(argv: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
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


def _interpreter(python: str) -> str:
    try:
        out = subprocess.run([python, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return python
    return f"{_shorten(python)} ({out})"


def version(argv: list[str], index: int = 0) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.split()[index]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def module_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name.replace("_", "-"))
    except Exception:
        return None
