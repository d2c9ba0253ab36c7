"""``doctor``: one line per check, the right exit code and hint, never a token."""

from __future__ import annotations

from tests.conftest import Account


def test_doctor_passes_on_a_healthy_setup(signed_in: Account) -> None:
    result = signed_in.run("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.startswith("OK ") for line in lines), lines
    labels = " | ".join(lines)
    for part in (
        "configuration",
        "token cache",
        "signed in",
        "IMAP localhost resolves",
        "TCP connect",
        "TLS certificate",
        "IMAP XOAUTH2 sign-in and LIST",
        "SMTP STARTTLS/TLS, certificate and AUTH",
    ):
        assert part in labels
    assert signed_in.servers.messages(signed_in.address) == []  # nothing was sent
    tokens = [t.token for t in signed_in.idp.access_tokens] + [t.token for t in signed_in.idp.refresh_tokens]
    for token in tokens:
        assert token not in result.stdout + result.stderr


def test_doctor_revoked_sign_in(signed_in: Account) -> None:
    signed_in.idp.revoke(signed_in.address)
    result = signed_in.run("doctor")
    assert result.returncode == 77
    assert "FAIL signed in, token refreshable: sign-in required" in result.stdout
    assert 'hint: run "python mailbot.py login" in a terminal' in result.stdout
    assert "SKIP IMAP sign-in" in result.stdout


def test_doctor_untrusted_certificate(signed_in: Account) -> None:
    servers = signed_in.servers
    result = signed_in.run(
        "doctor",
        env={
            "OUTLOOK_IMAP_SERVER": servers.untrusted_host,
            "OUTLOOK_IMAP_PORT": str(servers.untrusted_imaps_port),
        },
    )
    assert result.returncode == 69
    assert f"FAIL IMAP {servers.untrusted_host}:{servers.untrusted_imaps_port} TLS certificate" in result.stdout
    assert "MAILBOT_CA_BUNDLE" in result.stdout


def test_doctor_not_signed_in_and_unreachable(account: Account) -> None:
    result = account.run("doctor", env={"OUTLOOK_SMTP_PORT": "1"})
    assert result.returncode == 77
    assert "FAIL token cache: no token cache" in result.stdout
    assert "FAIL SMTP localhost:1 TCP connect: SMTP server localhost port 1 refused the connection" in result.stdout


def test_doctor_warns_about_an_old_refresh_token(signed_in: Account) -> None:
    import json
    import time

    cache = json.loads(signed_in.cache.read_text())
    for entry in cache["RefreshToken"].values():
        entry["last_modification_time"] = str(int(time.time()) - 61 * 86400)
    signed_in.cache.write_text(json.dumps(cache))
    assert (
        "refresh token present, last used 61 days ago (it expires after 90 days unused)"
        in signed_in.run("whoami").stdout
    )
    result = signed_in.run("doctor")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    warn = lines.index(
        "WARN refresh token age: last used 61 days ago; it expires after 90 days without use (AADSTS700082)"
    )
    assert lines[warn + 1] == '     hint: any command that signs in renews it; or run "python mailbot.py login" again'
    assert "last used 0 days ago" in signed_in.run("whoami").stdout  # doctor's refresh renewed it
