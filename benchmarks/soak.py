#!/usr/bin/env python3
"""Soak run: mail keeps arriving and messages keep being queued while things break.

    python benchmarks/soak.py                # 10 minutes
    python benchmarks/soak.py --minutes 2 --seed 7 --json /tmp/soak.json

Not part of the test suite. It starts the test bed of the tests (Dovecot, Postfix, the identity
stand-in; loopback only, in a temporary directory) and, for ``--minutes``:

* **arrivals**: a new message lands in the mailbox every ``--arrival-s`` (straight into the
  Maildir, as the suite's ``seed`` does; each has a unique Message-ID and body);
* **queueing**: ``mailbot send --queue`` adds a message to an outbox folder every ``--queue-s``;
* **runs**: ``mailbot fetch --maildir`` and ``mailbot outbox`` every ``--interval-s``, as cron would;
* **faults**, at random moments (``--fault-s`` on average): restart Dovecot; restart Postfix;
  ``kill -9`` a mailbot run mid-way (fetch or outbox, after a random 30-200 ms); expire the access
  token in the cache (MSAL must refresh); make the identity stand-in answer 5xx to the next token
  requests; fill the small tmpfs (``--tmpfs-mb``) that holds the token cache, the fetch state, the
  outbox and the Maildir, and free it again a few seconds later.

Then the faults stop, a few clean rounds deliver what is left (bounded by ``--drain-s``), and it
checks: every arrived message is in the Maildir (0 lost), duplicates counted (at most one per
killed fetch), every queued message reached the recipient's mailbox exactly once (Message-ID +
body hash), the token cache is still there and signs in without a new device-code sign-in, and
no run printed a Python traceback. It prints a table and writes the figures as JSON (default
``benchmarks/results/soak.json``). Exit 0 when every check passes, 1 when one fails, 4 when the
test bed cannot run here (needs root: Dovecot, Postfix, mount -t tmpfs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.scenarios.peers import fingerprint, maildir_files, message  # noqa: E402

MAILBOT = REPO / "mailbot.py"
DEFAULT_JSON = REPO / "benchmarks" / "results" / "soak.json"
CLIENT_ID = "5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f"
USER = "soak@example.com"
SINK = "soak-sink@example.com"
EXIT_UNAVAILABLE = 4
FAULTS = ("restart_dovecot", "restart_postfix", "kill_fetch", "kill_outbox", "expire_token", "idp_5xx", "disk_full")


@dataclass
class Tally:
    runs: Counter[str] = field(default_factory=Counter)
    exit_codes: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    tracebacks: list[str] = field(default_factory=list)
    arrived: list[bytes] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)  # subject tokens
    queue_failures: int = 0
    timeline: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tally = Tally()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.chaos = threading.Event()
        self.root = Path(tempfile.mkdtemp(prefix="mailbot-soak-"))
        self.root.chmod(0o755)
        self.disk = self.root / "disk"  # the small tmpfs
        self.python = str(args.python or sys.executable)
        self.started = time.monotonic()

    # ------------------------------------------------------------------ set-up

    def start(self) -> None:
        import trustme

        from tests.support.idp import IdentityStandIn
        from tests.support.mailservers import MailServers

        ca = trustme.CA()
        key = os.urandom(32)
        self.ca_pem = self.root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        self.servers = MailServers(self.root / "mailservers", ca, trustme.CA(), key)
        self.servers.start()
        (self.root / "idp").mkdir()
        self.idp = IdentityStandIn(ca, key, workdir=self.root / "idp")
        for user in (USER, SINK):
            self.servers.add_user(user)
        self.disk.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.args.tmpfs_mb}m,mode=0755", "tmpfs", str(self.disk)],
            check=True,
        )
        for d in ("state", "outbox"):
            (self.disk / d).mkdir()
        (self.root / "empty.env").write_text("")
        self.idp.interval = 0
        self.idp.auto_approve(USER, after_polls=0)
        rc, _out, err = self.mailbot("login", timeout=60)
        if rc != 0:
            raise RuntimeError(f"login failed: {err}")
        self.cache_ok_at_start = self.cache_account_present()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            subprocess.run(["umount", "-l", str(self.disk)], check=False)
        with contextlib.suppress(Exception):
            self.idp.stop()
        with contextlib.suppress(Exception):
            self.servers.stop()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("OUTLOOK_", "MAILBOT_"))}
        return base | {
            "HOME": str(self.root),
            "MAILBOT_ENV_FILE": str(self.root / "empty.env"),
            "OUTLOOK_USERNAME": USER,
            "OUTLOOK_CLIENT_ID": CLIENT_ID,
            "OUTLOOK_AUTHORITY": self.idp.authority(),
            "OUTLOOK_IMAP_SERVER": "localhost",
            "OUTLOOK_IMAP_PORT": str(self.servers.imaps_port),
            "OUTLOOK_IMAP_TLS": "implicit",
            "OUTLOOK_SMTP_SERVER": "localhost",
            "OUTLOOK_SMTP_PORT": str(self.servers.submission_port),
            "OUTLOOK_SMTP_TLS": "starttls",
            "MAILBOT_TOKEN_CACHE": str(self.disk / "token_cache.json"),
            "MAILBOT_STATE_DIR": str(self.disk / "state"),
            "MAILBOT_CA_BUNDLE": str(self.ca_pem),
            "MAILBOT_TIMEOUT": "10",
            "MAILBOT_SEND_RATE": "100000",
        }

    def argv(self, *args: str) -> list[str]:
        return [self.python, str(MAILBOT), *args]

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s {text}"
        with self.lock:
            self.tally.timeline.append(line)
        if self.args.verbose:
            print(line, file=sys.stderr, flush=True)

    def record(self, what: str, rc: int, err: str) -> None:
        with self.lock:
            self.tally.runs[what] += 1
            self.tally.exit_codes[f"{what} {rc}"] += 1
            if "Traceback (most recent call last)" in err:
                self.tally.tracebacks.append(f"{what} exit {rc}:\n{err[-3000:]}")

    def mailbot(self, *args: str, timeout: float = 120, input: bytes | None = None) -> tuple[int, str, str]:
        proc = subprocess.run(
            self.argv(*args), env=self.env(), cwd=self.root, input=input, capture_output=True, timeout=timeout
        )
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    # ------------------------------------------------------------------ the workers

    def arrivals(self) -> None:
        n = 0
        while not self.stop.wait(self.args.arrival_s * self.rng.uniform(0.5, 1.5)):
            if not self.chaos.is_set():
                break
            raw = message(n, self.rng.randint(500, 6_000), self.rng, USER, "soak-in")
            self.servers.seed(USER, raw)
            with self.lock:
                self.tally.arrived.append(raw)
            n += 1

    def queueing(self) -> None:
        n = 0
        while not self.stop.wait(self.args.queue_s * self.rng.uniform(0.5, 1.5)):
            if not self.chaos.is_set():
                break
            token = f"soak-out-{n:05d}-{self.rng.randbytes(4).hex()}"
            rc, _out, err = self.mailbot(
                "send", "--to", SINK, "--subject", token, "--body", f"body of {token}\n", "--queue",
                str(self.disk / "outbox"), timeout=60,
            )  # fmt: skip
            self.record("send --queue", rc, err)
            if rc == 0:
                with self.lock:
                    self.tally.queued.append(token)
            else:  # the disk was full: the caller knows (exit code), nothing was queued
                with self.lock:
                    self.tally.queue_failures += 1
            n += 1

    def one_round(self, kill: str | None = None) -> None:
        for what, args in (
            ("fetch", ("fetch", "--maildir", str(self.disk / "Maildir"))),
            ("outbox", ("outbox", str(self.disk / "outbox"))),
        ):
            if kill == what:
                proc = subprocess.Popen(
                    self.argv(*args), env=self.env(), cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
                time.sleep(self.rng.uniform(0.03, 0.2))
                killed = proc.poll() is None
                if killed:
                    proc.send_signal(signal.SIGKILL)
                _out, err = proc.communicate(timeout=60)
                self.note(f"kill -9 {what}: {'killed mid-run' if killed else 'had already finished'}")
                with self.lock:
                    self.tally.faults[f"kill_{what}"] += 1
                    if killed:
                        self.tally.faults[f"kill_{what}_mid_run"] += 1
                    self.tally.runs[what] += 1
                if not killed:
                    self.record(what, proc.returncode, err.decode("utf-8", "replace"))
                continue
            try:
                rc, _out, err = self.mailbot(*args, timeout=120)
            except subprocess.TimeoutExpired:
                rc, err = -1, "timed out after 120 s"
            self.record(what, rc, err)

    # ------------------------------------------------------------------ the faults

    def fault(self, name: str) -> str | None:
        """Inject one fault; returns the round's kill target, if any."""
        self.note(f"fault: {name}")
        if name in ("kill_fetch", "kill_outbox"):
            return name.split("_")[1]
        with self.lock:
            self.tally.faults[name] += 1
        if name == "restart_dovecot":
            from tests.support import mailservers

            self.servers._dovecot = mailservers._terminate(self.servers._dovecot, graceful=False)
            time.sleep(self.rng.uniform(0.2, 2))
            self.servers._start_dovecot()
        elif name == "restart_postfix":
            self.servers.stop_postfix()
            time.sleep(self.rng.uniform(0.2, 2))
            self.servers.start_postfix()
        elif name == "expire_token":
            self.expire_token()
        elif name == "idp_5xx":
            self.idp.fail_next("token", count=self.rng.randint(1, 3), status=self.rng.choice([500, 502, 503]))
            self.expire_token()  # so that the next run needs the token endpoint
        elif name == "disk_full":
            filler = self.disk / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as handle:
                chunk = b"\0" * (1 << 20)
                while True:
                    handle.write(chunk)
                    handle.flush()
            threading.Timer(self.rng.uniform(2, 8), lambda: self.free_disk(filler)).start()
        return None

    def free_disk(self, filler: Path) -> None:
        filler.unlink(missing_ok=True)
        self.note("disk freed")

    def expire_token(self) -> None:
        from mailbotcore.store import files as fileutil

        cache = self.disk / "token_cache.json"
        with fileutil.FileLock(cache.with_name(cache.name + ".lock"), 30, "soak: the token cache is locked"):
            state = json.loads(cache.read_text())
            for entry in state.get("AccessToken", {}).values():
                entry["expires_on"] = str(int(time.time()) - 1)
            try:
                fileutil.atomic_write(cache, json.dumps(state, indent=1, sort_keys=True).encode())
            except OSError as exc:
                self.note(f"could not expire the token (disk full?): {exc}")

    def cache_account_present(self) -> bool:
        try:
            state = json.loads((self.disk / "token_cache.json").read_text())
        except (OSError, ValueError):
            return False
        return any(a.get("username", "").lower() == USER for a in state.get("Account", {}).values()) and bool(
            state.get("RefreshToken")
        )

    # ------------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        deadline = self.started + 60 * self.args.minutes
        self.chaos.set()
        workers = [threading.Thread(target=f, daemon=True) for f in (self.arrivals, self.queueing)]
        for w in workers:
            w.start()
        next_fault = time.monotonic() + self.rng.expovariate(1 / self.args.fault_s)
        rounds = 0
        while time.monotonic() < deadline:
            kill = None
            if time.monotonic() >= next_fault:
                kill = self.fault(self.rng.choice(FAULTS))
                next_fault = time.monotonic() + self.rng.expovariate(1 / self.args.fault_s)
            self.one_round(kill)
            rounds += 1
            time.sleep(self.args.interval_s)
        self.note("faults stop; draining")
        self.chaos.clear()
        self.stop.set()
        for w in workers:
            w.join(120)
        (self.disk / "filler").unlink(missing_ok=True)
        self.idp.clear_faults()
        self.servers.start_postfix()  # idempotent: Postfix is up for the drain
        drain_deadline = time.monotonic() + self.args.drain_s
        while time.monotonic() < drain_deadline:
            self.one_round()
            rounds += 1
            if self.all_in():
                break
            time.sleep(1)
        time.sleep(2)  # Postfix's last deliveries
        return self.check(rounds)

    def all_in(self) -> bool:
        got = {fingerprint(p.read_bytes())[0] for p in maildir_files(self.disk / "Maildir")}
        want = {fingerprint(raw)[0] for raw in self.tally.arrived}
        pending = list((self.disk / "outbox").glob("*.eml"))
        return want <= got and not pending and len(self.sink_subjects()) >= len(self.tally.queued)

    def sink_subjects(self) -> list[str]:
        subjects = []
        for path in maildir_files(self.servers.maildir(SINK)):
            for line in path.read_bytes().split(b"\n"):
                if line.lower().startswith(b"subject:"):
                    subjects.append(line.split(b":", 1)[1].strip().decode("ascii", "replace"))
                    break
                if not line.strip():
                    break
        return subjects

    def check(self, rounds: int) -> dict[str, Any]:
        t = self.tally
        want: Counter[str | None] = Counter()
        digests: dict[str | None, str] = {}
        for raw in t.arrived:
            mid, digest = fingerprint(raw)
            want[mid] += 1
            digests[mid] = digest
        got: Counter[str | None] = Counter()
        altered = 0
        for path in maildir_files(self.disk / "Maildir"):
            mid, digest = fingerprint(path.read_bytes())
            got[mid] += 1
            if mid in digests and digests[mid] != digest:
                altered += 1
        lost = sum(1 for mid in want if got[mid] == 0)
        duplicates = sum(n - 1 for mid, n in got.items() if mid in want and n > 1)
        sent = Counter(self.sink_subjects())
        out_lost = sum(1 for s in t.queued if sent[s] == 0)
        out_dups = sum(sent[s] - 1 for s in t.queued if sent[s] > 1)
        failed_dir = list((self.disk / "outbox" / "failed").glob("*.eml"))
        rc, _out, err = self.mailbot("whoami", timeout=30)
        self.record("whoami", rc, err)
        rc_list, _o, err_list = self.mailbot("list", "-n", "1", timeout=60)
        self.record("list (final)", rc_list, err_list)
        kills_fetch = t.faults["kill_fetch_mid_run"]
        kills_outbox = t.faults["kill_outbox_mid_run"]
        checks = {
            "0 arrived messages lost": lost == 0,
            "no arrived message altered": altered == 0,
            "duplicates <= killed fetches": duplicates <= kills_fetch,
            "every queued message delivered": out_lost == 0 and not failed_dir,
            "queued messages delivered once (duplicates <= killed outbox runs)": out_dups <= kills_outbox,
            "token cache kept (account + refresh token), signs in silently": self.cache_account_present()
            and rc == 0
            and rc_list == 0,
            "no traceback in any run": not t.tracebacks,
        }
        return {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "minutes": self.args.minutes,
            "seed": self.args.seed,
            "rounds": rounds,
            "runs": dict(t.runs),
            "exit_codes": dict(sorted(t.exit_codes.items())),
            "faults": dict(t.faults),
            "arrived": len(t.arrived),
            "delivered_unique": sum(1 for mid in want if got[mid] > 0),
            "lost": lost,
            "duplicates": duplicates,
            "altered": altered,
            "queued": len(t.queued),
            "queue_refused_disk_full": t.queue_failures,
            "sent_unique": sum(1 for s in t.queued if sent[s] > 0),
            "sent_lost": out_lost,
            "sent_duplicates": out_dups,
            "outbox_failed_files": len(failed_dir),
            "tracebacks": t.tracebacks[:5],
            "checks": checks,
            "passed": all(checks.values()),
            "timeline": t.timeline,
        }


def table(result: dict[str, Any]) -> str:
    f = result["faults"]
    lines = [
        f"Soak run of {result['date']}: {result['minutes']:g} minutes, seed {result['seed']}, "
        f"{result['rounds']} fetch+outbox rounds",
        "",
        "| Faults injected | Count |",
        "|---|---:|",
    ]
    for name in ("restart_dovecot", "restart_postfix", "expire_token", "idp_5xx", "disk_full"):
        lines.append(f"| {name.replace('_', ' ')} | {f.get(name, 0)} |")
    for what in ("fetch", "outbox"):
        lines.append(
            f"| kill -9 {what} (mid-run / tried) | {f.get(f'kill_{what}_mid_run', 0)} / {f.get(f'kill_{what}', 0)} |"
        )
    lines += [
        "",
        "| Check | Figure | Passed |",
        "|---|---|---|",
        f"| arrived messages lost | {result['lost']} of {result['arrived']} | "
        f"{_ok(result['checks']['0 arrived messages lost'])} |",
        f"| duplicates in the Maildir (allowed: one per killed fetch) | {result['duplicates']} "
        f"(killed fetches: {f.get('kill_fetch_mid_run', 0)}) | "
        f"{_ok(result['checks']['duplicates <= killed fetches'])} |",
        f"| altered messages | {result['altered']} | {_ok(result['checks']['no arrived message altered'])} |",
        f"| queued messages not delivered | {result['sent_lost']} of {result['queued']} "
        f"({result['queue_refused_disk_full']} send --queue refused while the disk was full, exit code set) | "
        f"{_ok(result['checks']['every queued message delivered'])} |",
        f"| queued messages delivered twice | {result['sent_duplicates']} (killed outbox runs: "
        f"{f.get('kill_outbox_mid_run', 0)}) | "
        f"{_ok(result['checks']['queued messages delivered once (duplicates <= killed outbox runs)'])} |",
        f"| token cache kept, silent sign-in at the end | "
        f"{'yes' if result['checks']['token cache kept (account + refresh token), signs in silently'] else 'no'} | "
        f"{_ok(result['checks']['token cache kept (account + refresh token), signs in silently'])} |",
        f"| runs with a Python traceback | {len(result['tracebacks'])} | "
        f"{_ok(result['checks']['no traceback in any run'])} |",
        "",
        "Exit codes of the runs: " + ", ".join(f"{k}: {v}" for k, v in result["exit_codes"].items()),
    ]
    return "\n".join(lines)


def _ok(value: bool) -> str:
    return "yes" if value else "**no**"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python benchmarks/soak.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10.0, help="how long faults are injected (default 10)")
    p.add_argument("--seed", type=int, default=15, help="random seed of the fault schedule (default 15)")
    p.add_argument("--interval-s", type=float, default=1.0, help="pause between fetch+outbox rounds (default 1)")
    p.add_argument("--arrival-s", type=float, default=0.5, help="mean seconds between arrivals (default 0.5)")
    p.add_argument("--queue-s", type=float, default=1.0, help="mean seconds between send --queue (default 1)")
    p.add_argument("--fault-s", type=float, default=8.0, help="mean seconds between faults (default 8)")
    p.add_argument("--drain-s", type=float, default=120.0, help="at most this long for the clean rounds at the end")
    p.add_argument("--tmpfs-mb", type=int, default=32, help="size of the tmpfs for cache/state/outbox/Maildir")
    p.add_argument("--python", type=Path, default=None, help="interpreter for mailbot.py (default: this one)")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="write the result here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("-v", "--verbose", action="store_true", help="print faults as they happen")
    args = p.parse_args(argv)
    if args.python is not None:
        args.python = args.python.absolute()
    if args.minutes <= 0 or args.minutes > 24 * 60:
        p.error("--minutes must be in (0, 1440]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("error: the soak run needs root (Dovecot, Postfix, mount -t tmpfs)", file=sys.stderr)
        return EXIT_UNAVAILABLE
    from tests.support.mailservers import TestbedUnavailable

    soak = Soak(args)
    try:
        try:
            soak.start()
        except TestbedUnavailable as exc:
            print(f"error: the test bed cannot run here: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"soak: {args.minutes:g} minutes in {soak.root}", file=sys.stderr)
        result = soak.run()
    finally:
        soak.close()
    result["python"] = soak.python
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"result written to {args.json}", file=sys.stderr)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
