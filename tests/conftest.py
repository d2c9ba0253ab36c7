"""Fixtures: a real Dovecot + Postfix test bed and the identity stand-in, shared by the session,
and for each test a fresh account, a private config (temp dir, env vars) and a CLI runner.

Where Dovecot/Postfix cannot run (no root, not installed), integration tests are skipped
with a reason; in CI (``CI`` or ``MAILBOT_REQUIRE_TESTBED`` set) that is a failure instead.
"""

from __future__ import annotations

import itertools
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.support.hostile import ScriptedSmtp
from tests.support.idp import IdentityStandIn
from tests.support.mailservers import MailServers, TestbedUnavailable

REPO = Path(__file__).resolve().parent.parent
MAILBOT = REPO / "mailbot.py"
CLIENT_ID = "5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f"
_counter = itertools.count(1)


def _must_run() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("MAILBOT_REQUIRE_TESTBED"))


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def untrusted_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def jwt_key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="session")
def ca_pem(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def servers(
    ca: trustme.CA, untrusted_ca: trustme.CA, jwt_key: bytes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MailServers]:
    mail = MailServers(tmp_path_factory.mktemp("mailservers"), ca, untrusted_ca, jwt_key)
    try:
        mail.start()
    except TestbedUnavailable as exc:
        mail.stop()
        if _must_run():
            pytest.fail(f"the mail test bed must run in CI: {exc}")
        pytest.skip(f"Dovecot/Postfix test bed unavailable: {exc}")
    yield mail
    mail.stop()


@pytest.fixture(scope="session")
def idp_session(ca: trustme.CA, jwt_key: bytes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityStandIn]:
    stand_in = IdentityStandIn(ca, jwt_key, workdir=tmp_path_factory.mktemp("idp"))
    yield stand_in
    stand_in.stop()


@pytest.fixture
def idp(idp_session: IdentityStandIn) -> Iterator[IdentityStandIn]:
    """The session's stand-in, with every knob back at its default after the test."""
    defaults = {
        name: getattr(idp_session, name)
        for name in (
            "interval",
            "device_code_lifetime",
            "access_token_lifetime",
            "reject_reused_refresh_tokens",
            "browser_user",
            "authorize_error",
            "code_lifetime",
        )
    }
    idp_session.reset_counts()
    yield idp_session
    # Codes left pending by a test (its client gave up) would take the next test's approval.
    while True:
        try:
            idp_session.expire()
        except LookupError:
            break
    idp_session.clear_rules()
    idp_session.clear_faults()
    idp_session.clear_poison()
    for name, value in defaults.items():
        setattr(idp_session, name, value)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    stdout_bytes: bytes = b""


@dataclass
class Account:
    """One test's mailbox, configuration and CLI runner."""

    address: str
    home: Path
    env: dict[str, str]
    servers: MailServers
    idp: IdentityStandIn
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        return Path(self.env["MAILBOT_TOKEN_CACHE"])

    def run(
        self,
        *args: str,
        input: bytes | str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Result:
        """Run ``python mailbot.py ARGS`` as a cron job would: no terminal, stdin empty unless given."""
        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(
            [sys.executable, str(MAILBOT), *args],
            cwd=self.home,
            env={**self.env, **(env or {})},
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        return Result(
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
            proc.stdout,
        )

    def start(self, *args: str, env: dict[str, str] | None = None, output: bool = True) -> subprocess.Popen[str]:
        """Start ``python mailbot.py ARGS`` in the background (stdout/stderr piped as text, or discarded)."""
        sink = subprocess.PIPE if output else subprocess.DEVNULL
        return subprocess.Popen(
            [sys.executable, str(MAILBOT), *args],
            cwd=self.home,
            env={**self.env, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            text=True,
        )

    def login(self) -> Result:
        """A real device-code sign-in through MSAL, approved at once by the stand-in."""
        self.idp.auto_approve(self.address, after_polls=0)
        result = self.run("login")
        assert result.returncode == 0, result.stderr
        return result

    def seed(self, raw: bytes, **kwargs: Any) -> Path:
        return self.servers.seed(self.address, raw, **kwargs)


def base_env(home: Path) -> dict[str, str]:
    """The parent environment without any mailbot/Outlook setting, so a developer's own config never leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTLOOK_", "MAILBOT_"))}
    env["HOME"] = str(home)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def bed_env(home: Path, servers: MailServers, ca_pem: Path) -> dict[str, str]:
    """A private configuration pointing at the test bed: its servers, CA, a cache in ``home``, an empty .env."""
    env_file = home / "empty.env"
    env_file.write_text("")
    return base_env(home) | {
        "MAILBOT_ENV_FILE": str(env_file),
        "OUTLOOK_IMAP_SERVER": servers.host,
        "OUTLOOK_IMAP_PORT": str(servers.imaps_port),
        "OUTLOOK_SMTP_SERVER": servers.host,
        "OUTLOOK_SMTP_PORT": str(servers.submission_port),
        "MAILBOT_TOKEN_CACHE": str(home / "token_cache.json"),
        "MAILBOT_CA_BUNDLE": str(ca_pem),
        "MAILBOT_TIMEOUT": "10",
        "MAILBOT_SEND_RATE": "6000",
    }


@pytest.fixture
def account(servers: MailServers, idp: IdentityStandIn, ca_pem: Path, tmp_path: Path) -> Account:
    address = f"t{os.getpid()}x{next(_counter)}@example.com"
    servers.add_user(address)
    home = tmp_path / "home"
    home.mkdir()
    env = bed_env(home, servers, ca_pem) | {
        "OUTLOOK_USERNAME": address,
        "OUTLOOK_CLIENT_ID": CLIENT_ID,
        "OUTLOOK_AUTHORITY": idp.authority("organizations"),
        # SMTP only unless a test says otherwise (tests/integration/test_graph.py): with the default
        # "auto", login also asks for a Graph token and a scripted 535 5.7.139 would go to Graph.
        "OUTLOOK_SEND_VIA": "smtp",
    }
    return Account(address, home, env, servers, idp)


@pytest.fixture
def signed_in(account: Account) -> Account:
    account.login()
    account.idp.reset_counts()
    return account


@pytest.fixture
def scripted(ca: trustme.CA) -> Iterator[Callable[..., ScriptedSmtp]]:
    """Scripted TLS SMTP peers (tests/support/hostile.py), closed after the test."""
    peers: list[ScriptedSmtp] = []
    cert = ca.issue_cert("localhost", "127.0.0.1")

    def make(**replies: list[str]) -> ScriptedSmtp:
        peer = ScriptedSmtp(cert, **replies)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


HANDLER = """\
#!/bin/sh
# Test handler: log the UID, fail when told to.
cat > "$LOGDIR/$MAILBOT_UID.eml"
echo "$MAILBOT_UID $MAILBOT_SUBJECT" >> "$LOGDIR/log"
if [ -f "$LOGDIR/fail-$MAILBOT_UID" ]; then exit 3; fi
if [ -n "$HANDLER_SLEEP" ]; then sleep "$HANDLER_SLEEP"; fi
exit 0
"""


@pytest.fixture
def handler(signed_in: Account) -> Path:
    """``handler.sh`` in the account's home (fetch/watch --exec): the folder where it logs."""
    logdir = signed_in.home / "handled"
    logdir.mkdir()
    script = signed_in.home / "handler.sh"
    script.write_text(HANDLER)
    script.chmod(0o755)
    signed_in.env["LOGDIR"] = str(logdir)
    return logdir
