"""``mailbot token`` for other mail tools: the bare token, the XOAUTH2 string, and msmtp
sending through the test bed with ``passwordeval``."""

from __future__ import annotations

import base64
import imaplib
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import MAILBOT, Account


def test_token_is_the_cached_access_token_and_imap_accepts_it(signed_in: Account, ca_pem: Path) -> None:
    result = signed_in.run("token")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    token = result.stdout.rstrip("\n")
    assert "\n" not in token and token == signed_in.idp.access_tokens[-1].token
    assert signed_in.idp.counts().get("total", 0) == 0  # cached: no identity request
    imap = imaplib.IMAP4_SSL(
        signed_in.servers.host, signed_in.servers.imaps_port, ssl_context=ssl.create_default_context(cafile=str(ca_pem))
    )
    try:
        sasl = f"user={signed_in.address}\x01auth=Bearer {token}\x01\x01".encode()
        assert imap.authenticate("XOAUTH2", lambda _: sasl)[0] == "OK"
    finally:
        imap.logout()


def test_token_xoauth2_and_refresh(signed_in: Account) -> None:
    signed_in.idp.access_token_lifetime = 120  # the next run must refresh silently
    signed_in.run("token")
    result = signed_in.run("token", "--xoauth2")
    assert result.returncode == 0, result.stderr
    decoded = base64.b64decode(result.stdout.strip()).decode()
    assert decoded == f"user={signed_in.address}\x01auth=Bearer {signed_in.idp.access_tokens[-1].token}\x01\x01"


def test_token_without_sign_in_exits_77_and_prints_nothing(account: Account) -> None:
    result = account.run("token")
    assert result.returncode == 77
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: sign-in required for {account.address}",
        'hint: run "python mailbot.py login" in a terminal',
    ]


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp is not installed (tests/support/setup-testbed.sh)")
def test_msmtp_sends_with_passwordeval(signed_in: Account, ca_pem: Path) -> None:
    config = signed_in.home / "msmtprc"
    config.write_text(
        "defaults\n"
        "tls on\n"
        "tls_starttls on\n"
        f"tls_trust_file {ca_pem}\n"
        "account outlook\n"
        f"host {signed_in.servers.host}\n"
        f"port {signed_in.servers.submission_port}\n"
        "auth xoauth2\n"
        f"user {signed_in.address}\n"
        f"from {signed_in.address}\n"
        f'passwordeval "{sys.executable} {MAILBOT} token"\n'
        "account default : outlook\n"
    )
    config.chmod(0o600)
    message = (
        f"From: {signed_in.address}\nTo: friend@elsewhere.test\nSubject: through msmtp\n\nsent by msmtp\n"
    ).encode()
    done = subprocess.run(
        ["msmtp", "-C", str(config), "friend@elsewhere.test"],
        input=message,
        capture_output=True,
        env=signed_in.env,
        cwd=signed_in.home,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    arrived = signed_in.servers.wait_for(
        lambda: [m for m in signed_in.servers.external_mail() if m.message["Subject"] == "through msmtp"],
        what="the msmtp message",
    )
    assert arrived[0].recipient == "friend@elsewhere.test"
    assert "sent by msmtp" in arrived[0].message.get_content()
