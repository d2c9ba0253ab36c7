"""Scenario group ``peers``: mailbot side by side with getmail6 and msmtp (Debian's packages).

Same test bed, same latency proxy, same seeded mailboxes, same token: the peers get a valid access
token from their token command (getmail6's ``password_command``, msmtp's ``passwordeval``: ``cat``
of a file the benchmark writes). That costs them nothing here; real peers need a token helper that
refreshes through the identity platform, which mailbot does itself.

* fetch: ``getmail`` (``SimpleIMAPSSLRetriever``, ``use_xoauth2 = True``, ``password_command``,
  into a Maildir, ``read_all = false``) against ``mailbot fetch --maildir``: 1,000 new ~5 KB
  messages, 20 new 1 MB messages, and the nothing-new run on a 1,000-message folder.
* send: 100 messages by ``msmtp`` (``auth xoauth2``, ``passwordeval``) once per message, the way
  cron scripts call it; queued with msmtp's queue scripts (``msmtp-enqueue.sh``) and flushed
  (``msmtp-runqueue.sh``); against ``mailbot send --queue`` and ``mailbot outbox``.
* every tool's delivery is checked exactly once: Message-ID + SHA-256 of the body (line endings
  normalised), in the Maildir a fetcher wrote or the sink mailbox Postfix delivered to.

A peer that is not installed is skipped with the reason (``bash tests/support/setup-testbed.sh
--bench`` installs them).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import mailgen
from benchmarks.bench import CommandFailed, Scenario

if TYPE_CHECKING:
    from benchmarks.bench import Bench

PEER_USER = "peers@example.com"
DELIVERY_USER = "nobody"  # getmail runs as this user when the benchmark runs as root
SINKS = {"mailbot": "sink-mailbot@example.com", "msmtp": "sink-msmtp@example.com", "msmtpq": "sink-msmtpq@example.com"}
GETMAIL = shutil.which("getmail")
MSMTP = shutil.which("msmtp")
TASKSET = shutil.which("taskset")
MSMTPQUEUE = Path("/usr/libexec/msmtp/msmtpqueue")
SIZES_FULL = {"fetch_small": 1000, "small_kb": 5, "fetch_large": 20, "large_mb": 1.0, "folder": 1000, "sends": 100}
SIZES_QUICK = {"fetch_small": 5, "small_kb": 5, "fetch_large": 2, "large_mb": 1.0, "folder": 10, "sends": 2}


# ---------------------------------------------------------------------- messages and the check


def message(n: int, size: int, rng: random.Random, to: str, tag: str) -> bytes:
    """A plain-text message of about ``size`` bytes with a unique Message-ID, from PEER_USER."""
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(mailgen.WORDS) for _ in range(10))[:72]
        lines.append(line)
        total += len(line) + 2
    when = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(time.time() - 3600 + n))
    head = (
        f"From: Peer Bench <{PEER_USER}>\r\nTo: {to}\r\nSubject: {tag} message {n:04d}\r\n"
        f"Date: {when}\r\nMessage-ID: <{tag}-{n:04d}-{rng.randbytes(5).hex()}@bench.example.com>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="us-ascii"\r\n\r\n'
    )
    return (head + "\r\n".join(lines) + "\r\n").encode()


def fingerprint(raw: bytes) -> tuple[str | None, str]:
    """(Message-ID, SHA-256 of the body with line endings normalised)."""
    raw = raw.replace(b"\r\n", b"\n")
    head, _sep, body = raw.partition(b"\n\n")
    mid = None
    for line in head.split(b"\n"):
        if line.lower().startswith(b"message-id:"):
            mid = line.split(b":", 1)[1].strip().decode("ascii", "replace")
    return mid, hashlib.sha256(body.rstrip(b"\n")).hexdigest()


def exactly_once(expected: list[bytes], files: list[Path]) -> dict[str, Any]:
    want = dict(fingerprint(raw) for raw in expected)
    seen: Counter[str] = Counter()
    corrupt = unknown = 0
    for path in files:
        mid, digest = fingerprint(path.read_bytes())
        if mid not in want:
            unknown += 1
            continue
        seen[mid] += 1
        if want[mid] != digest:
            corrupt += 1
    return {
        "expected": len(want),
        "delivered_once": sum(1 for mid in want if seen[mid] == 1),
        "missing": sum(1 for mid in want if seen[mid] == 0),
        "duplicates": sum(count - 1 for count in seen.values() if count > 1),
        "corrupt": corrupt,
        "unknown": unknown,
    }


def maildir_files(root: Path) -> list[Path]:
    return [p for sub in ("new", "cur") if (root / sub).is_dir() for p in (root / sub).iterdir() if p.is_file()]


# ---------------------------------------------------------------------- peer configuration


class Peers:
    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.dir = bench.root / "peers"
        self.dir.mkdir(exist_ok=True)
        from tests.support import jwt_hs256

        self.token_file = self.dir / "token"
        self.token_file.write_text(jwt_hs256.access_token(PEER_USER, bench.jwt_key, lifetime=6 * 3600))
        self.token_file.chmod(0o600)
        self.home = self.dir / "home"  # HOME of the peers (msmtp's queue lives in it)
        self.home.mkdir(exist_ok=True)

    def env(self) -> dict[str, str]:
        return self.bench.base_env() | {"HOME": str(self.home)}

    def getmail_rc(self, folder: str, maildir: Path) -> tuple[Path, Path]:
        """(getmaildir, rcfile) for one folder into ``maildir``."""
        gdir = self.dir / f"getmail-{folder}"
        gdir.mkdir(exist_ok=True)
        rc = gdir / "getmailrc"
        rc.write_text(
            "[retriever]\n"
            "type = SimpleIMAPSSLRetriever\n"
            "server = localhost\n"
            f"port = {self.bench.proxies['imap'].port}\n"
            f"username = {PEER_USER}\n"
            "use_xoauth2 = True\n"
            f'password_command = ("/bin/cat", "{self.token_file}")\n'
            f'mailboxes = ("{folder}",)\n'
            f"ca_certs = {self.bench.ca_pem}\n"
            "[destination]\n"
            "type = Maildir\n"
            f"path = {maildir}/\n" + (f"user = {DELIVERY_USER}\n" if os.getuid() == 0 else "") + "[options]\n"
            "read_all = false\n"
            "delete = false\n"
            "verbose = 0\n"
            "message_log_syslog = false\n"
        )
        return gdir, rc

    def getmail(self, folder: str, maildir: Path) -> list[str]:
        """getmail's command line; as root, run as DELIVERY_USER (``setpriv``, an exec, no extra
        process): getmail refuses to deliver as root, and its per-message setuid delivery child
        (``user =``) has a SIGCHLD race that can stall a run until its timeout."""
        gdir, rc = self.getmail_rc(folder, maildir)
        argv = [GETMAIL or "getmail", "--getmaildir", str(gdir), "--rcfile", str(rc)]
        if TASKSET:
            # getmail6 forks a child per delivered message and can miss its SIGCHLD (the handler
            # notifies before the parent waits: the run then stalls and fails with "waiting child
            # pid ... timed out"); on one CPU the parent reaches its wait before the child runs.
            argv = [TASKSET, "-c", "0", *argv]
        if os.getuid() == 0:
            uid, gid = pwd.getpwnam(DELIVERY_USER)[2:4]
            os.chown(gdir, uid, gid)
            os.chown(self.token_file, uid, gid)
            argv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]
        return argv

    def msmtprc(self, sink: str) -> Path:
        rc = self.dir / f"msmtprc-{sink.split('@')[0]}"
        rc.write_text(
            "defaults\n"
            "tls on\n"
            "tls_starttls on\n"
            f"tls_trust_file {self.bench.ca_pem}\n"
            "account bench\n"
            "host localhost\n"
            f"port {self.bench.proxies['smtp'].port}\n"
            "auth xoauth2\n"
            f"user {PEER_USER}\n"
            f"from {PEER_USER}\n"
            f"passwordeval cat {self.token_file}\n"
            "account default : bench\n"
        )
        rc.chmod(0o600)
        return rc


def _prepare_maildir(maildir: Path) -> None:
    shutil.rmtree(maildir, ignore_errors=True)
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    if os.getuid() == 0:  # getmail runs as DELIVERY_USER: its Maildir belongs to that user
        uid, gid = pwd.getpwnam(DELIVERY_USER)[2:4]
        for d in (maildir, *(maildir / s for s in ("new", "cur", "tmp"))):
            os.chown(d, uid, gid)


# ---------------------------------------------------------------------- the group


def run(bench: Bench) -> None:
    sizes = SIZES_QUICK if bench.args.quick else SIZES_FULL
    print("peers: mailbot, getmail6 and msmtp side by side", file=sys.stderr)
    bench.servers.add_user(PEER_USER)
    for sink in SINKS.values():
        bench.servers.add_user(sink)
    bench.login(PEER_USER)
    peers = Peers(bench)
    missing_getmail = None if GETMAIL else "getmail6 is not installed (apt-get install getmail6)"
    missing_msmtp = None if MSMTP else "msmtp is not installed (apt-get install msmtp)"
    rng = random.Random(10)
    fetch_cases = [
        (
            "fetch1000",
            f"{sizes['fetch_small']} new x ~{sizes['small_kb']} KB",
            sizes["fetch_small"],
            int(sizes["small_kb"] * 1024),
        ),
        (
            "fetch20mb",
            f"{sizes['fetch_large']} new x {sizes['large_mb']:g} MB",
            sizes["fetch_large"],
            int(sizes["large_mb"] * 1024 * 1024),
        ),
    ]
    for key, what, count, size in fetch_cases:
        folder = f"Peer{key}"
        for n in range(3):  # there before the first run: neither tool delivers them
            bench.servers.seed(PEER_USER, message(n, 2000, rng, PEER_USER, f"{key}old"), folder=folder)
        mailbot = _mailbot_fetch_setup(bench, folder)
        getmail = _getmail_setup(bench, peers, folder) if not missing_getmail else None
        new = [message(n, size, rng, PEER_USER, key) for n in range(count)]
        for raw in new:
            bench.servers.seed(PEER_USER, raw, folder=folder, internaldate=time.time() - 60)
        _fetch_pair(bench, key, what, new, mailbot, getmail, missing_getmail)
    # The nothing-new run on a big folder: both have seen everything.
    folder = "PeerNothingNew"
    for n in range(sizes["folder"]):
        bench.servers.seed(PEER_USER, message(n, 4000, rng, PEER_USER, "old"), folder=folder, seen=True)
    mailbot = _mailbot_fetch_setup(bench, folder)
    getmail = _getmail_setup(bench, peers, folder) if not missing_getmail else None
    _fetch_pair(
        bench, "nothing_new", f"nothing new, {sizes['folder']}-message folder", [], mailbot, getmail, missing_getmail
    )
    _sends(bench, peers, sizes["sends"], rng, missing_msmtp)


FetchSetup = tuple[list[str], dict[str, str], Callable[[], None], Path]


def _mailbot_fetch_setup(bench: Bench, folder: str) -> FetchSetup:
    env = bench.env(PEER_USER) | {"MAILBOT_STATE_DIR": str(bench.root / "peers" / f"state-{folder}")}
    Path(env["MAILBOT_STATE_DIR"]).mkdir(parents=True, exist_ok=True)
    maildir = bench.root / "peers" / f"mailbot-{folder}"
    argv = bench.mailbot("fetch", "--folder", folder, "--maildir", str(maildir))
    bench.check(bench.run_once(argv, env, 0.0), argv)  # remembers where the folder ends
    state_files = sorted(Path(env["MAILBOT_STATE_DIR"]).glob("*.json"))
    saved = {p: p.read_bytes() for p in state_files}

    def prepare() -> None:
        for p, data in saved.items():
            p.write_bytes(data)
        _prepare_maildir(maildir)

    return argv, env, prepare, maildir


def _getmail_setup(bench: Bench, peers: Peers, folder: str) -> FetchSetup:
    maildir = bench.root / "peers" / f"getmail-md-{folder}"
    _prepare_maildir(maildir)
    argv = peers.getmail(folder, maildir)
    env = peers.env()
    bench.check(bench.run_once(argv, env, 0.0), argv)  # first run: fetches the old messages, notes them
    gdir = Path(argv[argv.index("--getmaildir") + 1])
    saved = {p: p.read_bytes() for p in gdir.glob("oldmail-*")}
    if not saved:
        raise CommandFailed(f"getmail wrote no oldmail file in {gdir}")

    def prepare() -> None:
        for p in gdir.glob("oldmail-*"):
            p.unlink()
        for p, data in saved.items():
            p.write_bytes(data)
        _prepare_maildir(maildir)

    return argv, env, prepare, maildir


def _fetch_pair(
    bench: Bench,
    key: str,
    what: str,
    new: list[bytes],
    mailbot: FetchSetup,
    getmail: FetchSetup | None,
    missing: str | None,
) -> None:
    for tool, setup in (("mailbot", mailbot), ("getmail6", getmail)):
        name = f"{tool} {'fetch' if tool == 'mailbot' else ''}: {what}".replace("  ", " ").replace(" :", ":")
        if setup is None:
            bench.scenarios.append(Scenario(f"{key}_{tool}", name, "", len(new), skipped=missing))
            continue
        argv, env, prepare, maildir = setup
        try:
            sc = bench.measure(f"{key}_{tool}", name, argv, env, messages=len(new), prepare=prepare, warmup=False)
        except CommandFailed as exc:
            reason = f"a run failed: {str(exc).splitlines()[-1][:200]}"
            bench.notes.append(f"{name}: {reason}")
            bench.scenarios.append(Scenario(f"{key}_{tool}", name, "", len(new), skipped=reason))
            continue
        sc.extra["exactly_once"] = exactly_once(new, maildir_files(maildir))
        sc.extra["tool"] = tool


def _sends(bench: Bench, peers: Peers, count: int, rng: random.Random, missing: str | None) -> None:
    outgoing = {
        tool: [message(n, 3000, rng, sink, f"send-{tool}") for n in range(count)] for tool, sink in SINKS.items()
    }
    work = bench.root / "peers" / "send"
    work.mkdir(exist_ok=True)

    def settle(tool: str) -> None:
        """Wait until Postfix has delivered what earlier runs sent (the count stops changing)."""
        root = bench.servers.maildir(SINKS[tool])
        last, stable, deadline = -1, 0, time.monotonic() + 60
        while stable < 3 and time.monotonic() < deadline:
            n = len(maildir_files(root))
            stable = stable + 1 if n == last else 0
            last = n
            time.sleep(0.15)

    def clear_sink(tool: str) -> Callable[[], None]:
        def clear() -> None:
            settle(tool)  # a previous run's mail must not land in this run's count
            for p in maildir_files(bench.servers.maildir(SINKS[tool])):
                p.unlink()

        return clear

    def delivered(tool: str, n: int) -> list[Path]:
        root = bench.servers.maildir(SINKS[tool])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(maildir_files(root)) < n:
            time.sleep(0.2)
        settle(tool)  # a duplicate would arrive now
        return maildir_files(root)

    # mailbot: send --queue (one message; CPU per queued message) and outbox (the 100).
    queue = work / "mailbot-queue"
    one = work / "one.eml"
    one.write_bytes(outgoing["mailbot"][0])
    env = bench.env(PEER_USER)

    def reset_queue() -> None:
        shutil.rmtree(queue, ignore_errors=True)

    sc = bench.measure(
        "send_queue",
        "mailbot send --queue (one message)",
        bench.mailbot(
            "send", "--to", SINKS["mailbot"], "--subject", "queued", "--body-file", str(one), "--queue", str(queue)
        ),
        env,
        messages=1,
        prepare=reset_queue,
        warmup=False,
    )
    sc.extra["tool"] = "mailbot"

    def fill_queue() -> None:
        shutil.rmtree(queue, ignore_errors=True)
        queue.mkdir()
        for i, raw in enumerate(outgoing["mailbot"]):
            (queue / f"{i:020d}-bench.eml").write_bytes(raw)
        clear_sink("mailbot")()

    argv = bench.mailbot("outbox", str(queue))
    sc = bench.measure(
        "send100_mailbot",
        f"mailbot outbox: {count} queued messages",
        argv,
        env,
        messages=count,
        prepare=fill_queue,
        warmup=False,
    )
    sc.extra["exactly_once"] = exactly_once(outgoing["mailbot"], delivered("mailbot", count))
    sc.extra["tool"] = "mailbot"
    if missing:
        for key, name in (
            ("send100_msmtp", "msmtp once per message"),
            ("queue_msmtpq", "msmtp-enqueue.sh"),
            ("flush_msmtpq", "msmtp-runqueue.sh"),
        ):
            bench.scenarios.append(Scenario(key, name, "", count, skipped=missing))
        return
    # msmtp once per message, as a cron script would call it.
    rc = peers.msmtprc(SINKS["msmtp"])
    src = work / "msmtp-src"
    src.mkdir(exist_ok=True)
    for i, raw in enumerate(outgoing["msmtp"]):
        (src / f"{i:04d}.eml").write_bytes(raw)
    loop = f'for f in "{src}"/*.eml; do {MSMTP} -C "{rc}" -t < "$f" || exit 1; done'
    sc = bench.measure(
        "send100_msmtp",
        f"msmtp: {count} messages, one msmtp run each",
        ["/bin/sh", "-c", loop],
        peers.env(),
        messages=count,
        prepare=clear_sink("msmtp"),
        warmup=False,
    )
    sc.extra["exactly_once"] = exactly_once(outgoing["msmtp"], delivered("msmtp", count))
    sc.extra["tool"] = "msmtp"
    # msmtp's queue scripts: enqueue one (CPU per queued message), then flush the 100.
    rcq = peers.msmtprc(SINKS["msmtpq"])
    qdir = peers.home / ".msmtpqueue"
    enqueue, runqueue = MSMTPQUEUE / "msmtp-enqueue.sh", MSMTPQUEUE / "msmtp-runqueue.sh"
    first = work / "msmtpq-one.eml"
    first.write_bytes(outgoing["msmtpq"][0])

    def empty_queue() -> None:
        shutil.rmtree(qdir, ignore_errors=True)

    sc = bench.measure(
        "queue_msmtpq",
        "msmtp-enqueue.sh (one message)",
        ["/bin/sh", "-c", f'/bin/sh {enqueue} -C "{rcq}" -t < "{first}"'],
        peers.env(),
        messages=1,
        prepare=empty_queue,
        warmup=False,
    )
    sc.extra["tool"] = "msmtp"

    def fill_msmtpq() -> None:
        shutil.rmtree(qdir, ignore_errors=True)
        qdir.mkdir(mode=0o700)
        for i, raw in enumerate(outgoing["msmtpq"]):
            (qdir / f"q-{i:04d}.mail").write_bytes(raw)
            (qdir / f"q-{i:04d}.msmtp").write_text(f"-C {rcq} -t\n")
        clear_sink("msmtpq")()

    sc = bench.measure(
        "flush_msmtpq",
        f"msmtp-runqueue.sh: {count} queued messages",
        ["/bin/sh", str(runqueue)],
        peers.env(),
        messages=count,
        prepare=fill_msmtpq,
        warmup=False,
    )
    sc.extra["exactly_once"] = exactly_once(outgoing["msmtpq"], delivered("msmtpq", count))
    sc.extra["tool"] = "msmtp"
