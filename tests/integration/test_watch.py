"""``watch``: fetch as a service woken by IMAP IDLE, against real Dovecot (and a TLS front that
plays the hostile parts: no IDLE, a silent DONE, Exchange's BYE when the token expires)."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.conftest import Account
from tests.integration.test_fetch import handled_uids, message, subjects


class ImapFront:
    """A TLS front for Dovecot that relays line by line and plays what Dovecot will not:

    * ``strip_idle``: IDLE taken out of every capability list (a server without IDLE);
    * ``silent_done``: on these connection numbers (1-based), nothing more reaches the client
      once it sent DONE (a server that never answers DONE); ``silent_idle``: the same from
      the IDLE command on (no ``+`` continuation);
    * ``bye_at_expiry``: Exchange's ``* BYE Session invalidated - AccessTokenExpired`` at the
      ``exp`` of the token the connection signed in with; ``bye_after``: the same BYE after
      that many seconds on connection 1.

    ``connections`` counts accepted connections (attempts, also while Dovecot is down)."""

    BYE = b"* BYE Session invalidated - AccessTokenExpired\r\n"

    def __init__(self, ca: trustme.CA, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.server_ctx)
        self.client_ctx = ssl.create_default_context()
        ca.configure_trust(self.client_ctx)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.strip_idle = False
        self.silent_done: set[int] = set()
        self.silent_idle: set[int] = set()
        self.bye_at_expiry = False
        self.bye_after: float | None = None
        self.bye_text = self.BYE
        self.connections = 0
        self.byes = 0
        self.accepted_at: list[float] = []
        self._closing = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.accepted_at.append(time.monotonic())
            threading.Thread(target=self._serve, args=(raw, self.connections), daemon=True).start()

    def _serve(self, raw: socket.socket, number: int) -> None:
        raw.settimeout(30)
        try:
            client = self.server_ctx.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        self._socks.append(client)
        try:
            upstream = self.client_ctx.wrap_socket(
                socket.create_connection(self.upstream, timeout=30), server_hostname="localhost"
            )
        except OSError:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()  # Dovecot is down: the attempt ends here
            return
        self._socks.append(upstream)
        lock = threading.Lock()
        silenced = threading.Event()
        closed = threading.Event()

        def to_client(data: bytes) -> None:
            with lock:
                if not closed.is_set():
                    client.sendall(data)

        def bye(delay: float) -> None:
            if closed.wait(max(0.0, delay)):
                return
            self.byes += 1
            with contextlib.suppress(OSError):
                to_client(self.bye_text)
            finish()

        def finish() -> None:
            closed.set()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # close() alone waits for the makefile readers
                with contextlib.suppress(OSError):
                    sock.close()

        if self.bye_after is not None and number == 1:
            threading.Thread(target=bye, args=(self.bye_after,), daemon=True).start()

        def down() -> None:
            reader = upstream.makefile("rb")
            try:
                for line in reader:
                    if silenced.is_set():
                        continue
                    if self.strip_idle and b"CAPABILITY" in line[:40]:
                        line = re.sub(rb" IDLE(?= |\]|\r)", b"", line)
                    to_client(line)
            except (OSError, ValueError):
                pass
            finish()

        threading.Thread(target=down, daemon=True).start()
        reader = client.makefile("rb")
        try:
            for line in reader:
                if self.bye_at_expiry and b" AUTHENTICATE XOAUTH2 " in line:
                    sasl = base64.b64decode(line.split()[-1]).decode()
                    token = re.search(r"auth=Bearer ([^\x01]+)", sasl)
                    if token:
                        claims = token.group(1).split(".")[1]
                        exp = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["exp"]
                        threading.Thread(target=bye, args=(exp - time.time(),), daemon=True).start()
                if line.strip() == b"DONE" and number in self.silent_done:
                    silenced.set()
                if line.rstrip().endswith(b" IDLE") and number in self.silent_idle:
                    silenced.set()  # no "+ idling", nothing more
                upstream.sendall(line)
        except (OSError, ValueError):
            pass
        finish()


@pytest.fixture
def front(signed_in: Account, ca: trustme.CA) -> Iterator[ImapFront]:
    proxy = ImapFront(ca, (signed_in.servers.host, signed_in.servers.imaps_port))
    signed_in.env["OUTLOOK_IMAP_PORT"] = str(proxy.port)
    yield proxy
    proxy.close()


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stop(
    proc: subprocess.Popen[str], timeout: float = 5.0, signum: int = signal.SIGTERM
) -> tuple[int, str, str, float]:
    """SIGTERM (or ``signum``), and how long the exit took."""
    started = time.monotonic()
    proc.send_signal(signum)
    try:
        proc.wait(timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("watch did not exit after SIGTERM") from None
    took = time.monotonic() - started
    out = proc.stdout.read() if proc.stdout else ""
    thread = getattr(proc, "reader_thread", None)
    if thread is not None:
        thread.join(5)
    return proc.returncode, out, "", took


def state(account: Account) -> dict[str, object]:
    files = list(account.home.rglob("fetch-*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def start_watch(account: Account, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start watch and wait until it idles (its first 'watching' line on stderr)."""
    proc = account.start("watch", *args, env=env)
    return proc


def watching(proc: subprocess.Popen[str], lines: list[str], count: int = 1, timeout: float = 10.0) -> None:
    """Read stderr lines until ``count`` 'watching' lines were seen (a thread keeps reading)."""
    wait_until(lambda: sum(line.startswith("watching ") for line in lines) >= count, timeout, "watch to be ready")


def reader(proc: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []

    def run() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    proc.reader_thread = thread  # type: ignore[attr-defined]
    return lines


def test_new_mail_reaches_maildir_and_handler_once_each_in_order_within_seconds(
    signed_in: Account, handler: Path
) -> None:
    maildir = signed_in.home / "Mail"
    signed_in.seed(message(0))  # old mail: left alone, as by fetch
    proc = signed_in.start("watch", "--maildir", str(maildir), "--exec", "./handler.sh", "--json")
    err = reader(proc)
    watching(proc, err)
    assert handled_uids(handler) == []
    latencies = []
    for n in range(1, 6):
        sent = time.monotonic()
        signed_in.seed(message(n))
        wait_until(lambda n=n: len(handled_uids(handler)) == n, 5, f"message {n}")
        latencies.append(time.monotonic() - sent)
    for n in range(6, 9):  # a burst
        signed_in.seed(message(n))
    wait_until(lambda: len(handled_uids(handler)) == 8, 5, "the burst")
    code, out, _, took = stop(proc)
    assert code == 0, "\n".join(err)
    assert took < 5
    uids = handled_uids(handler)
    assert uids == sorted(uids) and len(set(uids)) == 8
    assert subjects(maildir) == sorted(f"message {n}" for n in range(1, 9))
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["uid"] for r in records] == uids
    assert state(signed_in)["last_uid"] == uids[-1]
    assert max(latencies) < 2.5, latencies  # Dovecot tells IDLE clients 0.5 s after a change
    assert any("first fetch of 'INBOX'" in line for line in err)
    # one session, IDLE used (not polling)
    commands = signed_in.servers.imap_commands(signed_in.address)
    idles = sum(c.split()[1:2] == ["IDLE"] for c in commands)
    assert idles >= 6 and commands.count("DONE") == idles
    assert len(list((signed_in.servers.home(signed_in.address) / "rawlog").glob("*.in"))) == 1
    print("\n".join(err))
    assert any(c.endswith(" LOGOUT") for c in commands)
    # a fetch afterwards finds nothing new: no duplicate; a message arriving now is fetch's
    signed_in.seed(message(9))
    after = signed_in.run("fetch", "--exec", "./handler.sh", "--json")
    assert after.returncode == 0, after.stderr
    assert [json.loads(line)["subject"] for line in after.stdout.splitlines()] == ["message 9"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_mid_batch_exits_0_within_5_s_with_state_saved(signed_in: Account, handler: Path, signum: int) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0  # starting point
    proc = signed_in.start("watch", "--exec", "./handler.sh", env={"HANDLER_SLEEP": "0.3"})
    err = reader(proc)
    watching(proc, err)
    for n in range(10):
        signed_in.seed(message(n))
    wait_until(lambda: len(handled_uids(handler)) >= 2, 10, "two handled")
    code, _, _, took = stop(proc, signum=signum)
    assert code == 0, "\n".join(err)
    assert took < 5
    done = handled_uids(handler)
    assert 2 <= len(done) < 10
    assert state(signed_in)["last_uid"] == done[-1]  # the message in flight was finished, then saved
    assert err[-1].startswith("stopped watching 'INBOX'")
    rest = signed_in.run("fetch", "--exec", "./handler.sh")
    assert rest.returncode == 0, rest.stderr
    uids = handled_uids(handler)
    assert len(uids) == 10 == len(set(uids))  # nothing twice, nothing skipped


def reconnect_delays(lines: list[str]) -> list[float]:
    return [float(m[1]) for line in lines if (m := re.search(r"reconnecting in ([\d.]+) s$", line))]


def test_dovecot_restart_mid_idle_catches_up_without_loss_or_duplicate_with_backoff(
    signed_in: Account, handler: Path, front: ImapFront
) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    proc = signed_in.start("watch", "--exec", "./handler.sh")
    err = reader(proc)
    watching(proc, err)
    signed_in.seed(message(1))
    wait_until(lambda: len(handled_uids(handler)) == 1, 5, "message 1")
    servers = signed_in.servers
    try:
        servers.stop_dovecot()
        down_since = front.connections
        signed_in.seed(message(2))  # arrives while the server is down
        signed_in.seed(message(3))
        time.sleep(6)
        attempts = front.connections - down_since
    finally:
        servers.start_dovecot()
    wait_until(lambda: len(handled_uids(handler)) == 3, 20, f"the catch-up after the restart: {err}")
    signed_in.seed(message(4))
    wait_until(lambda: len(handled_uids(handler)) == 4, 5, "message 4 over the new session")
    code, _, _, _ = stop(proc)
    assert code == 0, "\n".join(err)
    uids = handled_uids(handler)
    assert uids == sorted(set(uids)) and len(uids) == 4
    # 6 s of outage with 1, 2, 4 s (jittered, never under 1 s) between attempts: 2 to 4 attempts
    assert 2 <= attempts <= 4, (attempts, err)
    delays = reconnect_delays(err)
    assert len(delays) >= 2, err
    for n, delay in enumerate(delays[:3]):  # 1 s, then doubling, jittered within the upper half
        assert max(1.0, 2**n / 2) <= delay <= 2**n + 0.05, delays
    gaps = [b - a for a, b in zip(front.accepted_at[1:], front.accepted_at[2:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps  # never a tight loop


def test_token_expiring_during_idle_is_replaced_before_the_bye(
    signed_in: Account, handler: Path, front: ImapFront
) -> None:
    signed_in.idp.access_token_lifetime = 4
    signed_in.login()  # a cached token that lives 4 s
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    front.bye_at_expiry = True  # Exchange ends a session when its token expires
    signed_in.idp.reset_counts()
    proc = signed_in.start("watch", "--exec", "./handler.sh")
    err = reader(proc)
    watching(proc, err)
    for n in range(1, 8):
        signed_in.seed(message(n))
        time.sleep(1.3)
    wait_until(lambda: len(handled_uids(handler)) == 7, 5, "all seven")
    code, _, _, _ = stop(proc)
    assert code == 0, "\n".join(err)
    uids = handled_uids(handler)
    assert uids == sorted(set(uids)) and len(uids) == 7
    renewals = sum("access token about to expire" in line for line in err)
    assert renewals >= 2, err
    assert front.byes == 0, err  # each session was replaced before its token expired
    assert signed_in.idp.counts().get("token", 0) >= renewals  # with a fresh token each time
    assert front.connections == renewals + 2  # the fetch, then one per token


def test_bye_access_token_expired_reconnects_with_a_fresh_token(
    signed_in: Account, handler: Path, front: ImapFront
) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    front.connections = 0  # the watch's first connection is number 1: it gets the BYE
    front.bye_after = 1.0
    signed_in.idp.reset_counts()
    proc = signed_in.start("watch", "--exec", "./handler.sh")
    err = reader(proc)
    watching(proc, err)
    signed_in.seed(message(1))
    wait_until(lambda: front.byes == 1, 5, "the BYE")
    signed_in.seed(message(2))
    watching(proc, err, count=2)
    wait_until(lambda: len(handled_uids(handler)) == 2, 10, "both messages")
    code, _, _, _ = stop(proc)
    assert code == 0, "\n".join(err)
    assert len(handled_uids(handler)) == 2
    line = next(line for line in err if "reconnecting in" in line)
    assert re.fullmatch(
        rf"IMAP server localhost port {front.port} closed the session: Session invalidated - "
        r"AccessTokenExpired; reconnecting in \d+\.\d s",
        line,
    ), line
    assert signed_in.idp.counts().get("token", 0) == 1  # refreshed once for the new session
    assert front.connections == 2


def test_exchange_throttling_backoff_is_honoured(signed_in: Account, handler: Path, front: ImapFront) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    front.connections = 0
    front.accepted_at.clear()
    front.bye_after = 0.5
    front.bye_text = b"* BYE Request is throttled. Suggested Backoff Time: 3000 milliseconds\r\n"
    proc = signed_in.start("watch", "--exec", "./handler.sh")
    err = reader(proc)
    watching(proc, err)
    watching(proc, err, count=2, timeout=10)
    signed_in.seed(message(1))
    wait_until(lambda: len(handled_uids(handler)) == 1, 5, "message 1")
    code, _, _, _ = stop(proc)
    assert code == 0, err
    assert 3.0 <= reconnect_delays(err)[0] <= 3.1, err
    assert front.accepted_at[1] - front.accepted_at[0] >= 3.0
    assert front.connections == 2


def test_kill_9_mid_batch_then_fetch_completes_with_at_most_one_duplicate(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    proc = signed_in.start("watch", "--exec", "./handler.sh", env={"HANDLER_SLEEP": "0.05"})
    err = reader(proc)
    watching(proc, err)
    for n in range(30):
        signed_in.seed(message(n))
    wait_until(lambda: len(handled_uids(handler)) >= 8, 20, "eight handled")
    proc.kill()
    proc.wait()
    before = handled_uids(handler)
    assert 8 <= len(before) < 30, "the kill should land mid-batch"
    result = signed_in.run("fetch", "--exec", "./handler.sh")
    assert result.returncode == 0, result.stderr
    uids = handled_uids(handler)
    assert len(set(uids)) == 30
    assert len(uids) - 30 <= 1


FLAKY_HANDLER = """\
#!/bin/sh
# Fails the first two times it sees UID $FLAKY_UID, then succeeds.
n=$(cat "$LOGDIR/tries-$MAILBOT_UID" 2>/dev/null || echo 0)
echo $((n + 1)) > "$LOGDIR/tries-$MAILBOT_UID"
echo "$MAILBOT_UID" >> "$LOGDIR/attempts"
if [ "$MAILBOT_UID" = "$FLAKY_UID" ] && [ "$n" -lt 2 ]; then exit 1; fi
echo "$MAILBOT_UID ok" >> "$LOGDIR/log"
"""


def test_handler_failing_twice_then_succeeding_is_delivered_once_and_later_mail_waits(
    signed_in: Account, handler: Path
) -> None:
    maildir = signed_in.home / "Mail"
    (signed_in.home / "flaky.sh").write_text(FLAKY_HANDLER)
    (signed_in.home / "flaky.sh").chmod(0o755)
    assert signed_in.run("fetch", "--exec", "./flaky.sh").returncode == 0
    first = signed_in.servers.messages(signed_in.address)  # none yet; UIDs start at 1
    assert first == []
    proc = signed_in.start("watch", "--exec", "./flaky.sh", "--maildir", str(maildir), env={"FLAKY_UID": "2"})
    err = reader(proc)
    watching(proc, err)
    for n in range(1, 5):
        signed_in.seed(message(n))
    wait_until(lambda: len(handled_uids(handler)) == 4, 15, "all four")
    code, _, _, _ = stop(proc)
    assert code == 0, "\n".join(err)
    attempts = [int(x) for x in (handler / "attempts").read_text().split()]
    assert attempts == [1, 2, 2, 2, 3, 4]  # UID 2 three times, 3 and 4 only after it succeeded
    assert handled_uids(handler) == [1, 2, 3, 4]
    assert subjects(maildir) == [f"message {n}" for n in range(1, 5)]  # one Maildir file each
    retries = [line for line in err if "retrying it" in line]
    assert len(retries) == 2
    assert retries[0].startswith("handler for UID 2 exited with status 1; retrying it (and holding back later")


def test_fetch_and_watch_share_one_lock(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    proc = signed_in.start("watch", "--exec", "./handler.sh")
    err = reader(proc)
    watching(proc, err)
    started = time.monotonic()
    busy = signed_in.run("fetch", "--exec", "./handler.sh")
    assert busy.returncode == 75
    assert time.monotonic() - started < 5
    assert busy.stderr.splitlines()[0] == f"error: another fetch is running for {signed_in.address} 'INBOX'"
    waited = signed_in.run("fetch", "--exec", "./handler.sh", "--wait", "1")
    assert waited.returncode == 75
    second = signed_in.run("watch", "--exec", "./handler.sh")
    assert second.returncode == 75
    assert second.stderr.splitlines()[0] == (
        f"error: another fetch or watch is running for {signed_in.address} 'INBOX'"
    )
    code, _, _, _ = stop(proc)
    assert code == 0
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0  # free again


def test_without_idle_it_polls(signed_in: Account, handler: Path, front: ImapFront) -> None:
    front.strip_idle = True
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    signed_in.servers.clear_imap_commands(signed_in.address)
    proc = signed_in.start("watch", "--exec", "./handler.sh", "--poll", "1")
    err = reader(proc)
    watching(proc, err)
    assert f"watching 'INBOX' for {signed_in.address} (polling every 1 s (no IDLE))" in err
    signed_in.seed(message(1))
    signed_in.seed(message(2))
    wait_until(lambda: len(handled_uids(handler)) == 2, 5, "both, by polling")
    time.sleep(1.5)
    code, _, _, took = stop(proc)
    assert code == 0 and took < 5
    assert len(handled_uids(handler)) == 2
    commands = signed_in.servers.imap_commands(signed_in.address)
    assert not any(c.split()[1:2] == ["IDLE"] for c in commands)
    assert front.connections == 2  # the fetch and one watch session: polling does not reconnect


@pytest.mark.parametrize(("silence", "what"), [("silent_done", "answer DONE"), ("silent_idle", "accept IDLE")])
def test_a_server_that_never_answers_done_or_idle_does_not_hang_it(
    signed_in: Account, handler: Path, front: ImapFront, silence: str, what: str
) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    setattr(front, silence, {2})  # the watch's first session
    proc = signed_in.start("watch", "--exec", "./handler.sh", env={"MAILBOT_TIMEOUT": "2"})
    err = reader(proc)
    watching(proc, err)
    signed_in.seed(message(1))  # EXISTS -> DONE -> silence
    wait_until(lambda: len(handled_uids(handler)) == 1, 10, "message 1 over a new session")
    code, _, _, _ = stop(proc)
    assert code == 0, "\n".join(err)
    assert handled_uids(handler) == [int(state(signed_in)["last_uid"])]
    assert any(
        re.fullmatch(
            rf"IMAP server localhost port {front.port} did not {what} within 2 s; reconnecting in \d+\.\d s", line
        )
        for line in err
    ), err
    assert front.connections == 3


def test_sign_in_needed_exits_77_at_once(account: Account) -> None:
    maildir = account.home / "Mail"
    result = account.run("watch", "--maildir", str(maildir), timeout=20)
    assert result.returncode == 77
    assert result.stderr.splitlines() == [
        f"error: sign-in required for {account.address}",
        'hint: run "python mailbot.py login" in a terminal',
    ]


def test_watch_needs_a_destination(signed_in: Account) -> None:
    result = signed_in.run("watch")
    assert result.returncode == 64
    assert result.stderr.splitlines() == ["error: watch needs a destination: --maildir DIR and/or --exec CMD"]


def readme_unit() -> str:
    from tests.integration.test_readme import blocks

    units = [b for b in blocks("systemd") if "mailbot-watch.service" in b]
    assert len(units) == 1
    return units[0]


def test_readme_systemd_unit_verifies_and_its_execstart_runs(signed_in: Account, tmp_path: Path) -> None:
    unit = readme_unit()
    settings: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(f"{section}.{key}", []).append(value)
    assert settings["Service.Type"] == ["simple"]
    assert settings["Service.Restart"] == ["on-failure"]
    assert settings["Service.RestartPreventExitStatus"] == ["77"]
    assert settings["Service.StandardError"] == ["journal"]
    assert settings["Install.WantedBy"] == ["default.target"]
    (command,) = settings["Service.ExecStart"]
    assert " mailbot.py watch " in command
    if shutil.which("systemd-analyze") and Path("/usr/bin/python3").exists():
        path = tmp_path / "mailbot-watch.service"
        path.write_text(unit)
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True, timeout=60
        )
        assert verify.returncode == 0, verify.stderr
        assert str(path) not in verify.stderr, verify.stderr  # no warning about our file
    # The ExecStart, for real: it runs, handles new mail, and SIGTERM ends it with 0.
    home = signed_in.home
    (home / "on-new-mail.sh").write_text('#!/bin/sh\ncat > "$HOME/handled.eml"\n')
    (home / "on-new-mail.sh").chmod(0o755)
    argv = shlex.split(command.replace("%h", str(home)))
    assert argv[:2] == ["/usr/bin/python3", "mailbot.py"]
    proc = signed_in.start(*argv[2:])
    err = reader(proc)
    watching(proc, err)
    signed_in.seed(message(1))
    wait_until(lambda: (home / "handled.eml").exists(), 5, "the handler")
    code, _, _, took = stop(proc)
    assert code == 0 and took < 5, err
    assert subjects(home / "Mail" / "outlook") == ["message 1"]
    assert (home / "handled.eml").read_bytes() == message(1).replace(
        b"\r\n", b"\n"
    )  # the handler gets LF, like the Maildir


def test_watch_after_fetch_catches_up_on_what_arrived_meanwhile(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    signed_in.seed(message(1))
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    signed_in.seed(message(2))  # arrive while nothing runs
    signed_in.seed(message(3))
    proc = signed_in.start("watch", "--exec", "./handler.sh", "--json")
    err = reader(proc)
    watching(proc, err)
    wait_until(lambda: len(handled_uids(handler)) == 3, 5, "the catch-up")
    signed_in.seed(message(4))
    wait_until(lambda: len(handled_uids(handler)) == 4, 5, "message 4")
    code, out, _, _ = stop(proc)
    assert code == 0, err
    assert [json.loads(line)["subject"] for line in out.splitlines()] == ["message 2", "message 3", "message 4"]
    assert handled_uids(handler) == [1, 2, 3, 4]


def test_move_to_and_mark_seen_while_watching(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    maildir = signed_in.home / "Mail"
    servers.seed(address, message(0), folder="Archive")  # the target exists
    assert signed_in.run("fetch", "--maildir", str(maildir)).returncode == 0
    proc = signed_in.start("watch", "--maildir", str(maildir), "--move-to", "Archive", "--mark-seen")
    err = reader(proc)
    watching(proc, err)
    for n in (1, 2):
        signed_in.seed(message(n))
    wait_until(lambda: len(servers.messages(address, "Archive")) == 3, 5, "the moves")
    signed_in.seed(message(3))
    wait_until(lambda: len(servers.messages(address, "Archive")) == 4, 5, "the third move")
    code, _, _, _ = stop(proc)
    assert code == 0, err
    assert servers.messages(address) == []
    assert subjects(maildir) == ["message 1", "message 2", "message 3"]
    moved = [p for p in servers.messages(address, "Archive") if b"message 0" not in p.read_bytes()]
    assert len(moved) == 3 and all(p.name.split(":2,")[1] == "S" for p in moved)


def test_sigterm_with_a_server_that_never_answers_done_still_exits_0_within_5_s(
    signed_in: Account, handler: Path, front: ImapFront
) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    front.silent_done = {2}
    proc = signed_in.start("watch", "--exec", "./handler.sh", env={"MAILBOT_TIMEOUT": "30"})
    err = reader(proc)
    watching(proc, err)
    time.sleep(0.3)  # idling
    code, _, _, took = stop(proc)
    assert code == 0, err
    assert 2.5 < took < 5  # waited the stop grace (3 s) for the answer to DONE, not MAILBOT_TIMEOUT
    assert f"IMAP server localhost port {front.port} did not answer DONE within 3 s" in err
    assert not any("reconnecting in" in line for line in err), err  # no retry of a refused sign-in


def test_idle_is_reissued_on_the_same_connection(signed_in: Account, handler: Path) -> None:
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    signed_in.servers.clear_imap_commands(signed_in.address)
    proc = signed_in.start("watch", "--exec", "./handler.sh", "--idle-renewal", "1")
    err = reader(proc)
    watching(proc, err)
    time.sleep(3.5)
    signed_in.seed(message(1))
    wait_until(lambda: len(handled_uids(handler)) == 1, 5, "message 1")
    code, _, _, _ = stop(proc)
    assert code == 0, err
    commands = signed_in.servers.imap_commands(signed_in.address)
    idles = [c for c in commands if c.split()[1:2] == ["IDLE"]]
    assert 4 <= len(idles) <= 7, commands  # every second, plus the one after the message
    assert commands.count("DONE") == len(idles)
    assert len(list((signed_in.servers.home(signed_in.address) / "rawlog").glob("*.in"))) == 1  # one session


def test_sign_in_revoked_while_watching_exits_77_instead_of_retrying(signed_in: Account, handler: Path) -> None:
    signed_in.idp.access_token_lifetime = 4
    signed_in.login()
    assert signed_in.run("fetch", "--exec", "./handler.sh").returncode == 0
    proc = signed_in.start("watch", "--exec", "./handler.sh")
    err = reader(proc)
    watching(proc, err)
    signed_in.idp.revoke(signed_in.address)  # the next token renewal is refused
    try:
        code = proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    proc.reader_thread.join(5)  # type: ignore[attr-defined]
    assert code == 77, err
    assert any(line.startswith(f"error: sign-in required for {signed_in.address}") for line in err), err
    assert err[-1] == 'hint: run "python mailbot.py login" in a terminal'
    assert not any("reconnecting in" in line for line in err), err  # no retry of a refused sign-in
