"""Small promises a user meets first (issue 11, item 20): Bcc-only mail has a To, --dry-run shows
the envelope, a refused --from gets the Send As hint, logout says what it did with a corrupt
cache, fetch --help says what the README says, doctor refuses the .env.example placeholders."""

from __future__ import annotations

import re
import shutil
from email import policy
from email.parser import BytesParser

from tests.conftest import REPO, Account
from tests.integration.test_send import delivered, postfix_log


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(("error:", "hint:"))]


def test_a_bcc_only_message_arrives_with_undisclosed_recipients(signed_in: Account) -> None:
    result = signed_in.run("send", "--bcc", signed_in.address, "--subject", "blind", "--body", "x")
    assert result.returncode == 0, result.stderr
    (raw,) = delivered(signed_in)
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert msg.get_all("To") == ["undisclosed-recipients:;"]
    assert msg["Bcc"] is None


def test_dry_run_shows_the_envelope_with_the_bcc_recipients(signed_in: Account) -> None:
    result = signed_in.run(
        "send", "--dry-run", "--to", "a@example.net", "--bcc", "Hidden <b@example.net>", "--body", "x"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"envelope: from {signed_in.address} to a@example.net, b@example.net",
        "transport: smtp (OUTLOOK_SEND_VIA=smtp)",
    ]
    assert b"b@example.net" not in result.stdout_bytes  # the message itself carries no Bcc


def test_send_from_an_address_postfix_says_is_not_owned_gets_the_send_as_hint(signed_in: Account) -> None:
    other = "colleague-" + signed_in.address
    signed_in.servers.add_user(other)
    result = signed_in.run("send", "--from", other, "--to", signed_in.address, "--body", "b")
    assert result.returncode == 69, result.stderr
    error, hint = error_lines(result.stderr)
    assert re.fullmatch(
        rf"error: SMTP server localhost port \d+ refused the sender {re.escape(other)}: 553 5\.7\.1 "
        rf"<{re.escape(other)}>: Sender address rejected: not owned by user {re.escape(signed_in.address)}",
        error,
    ), error
    assert hint == (
        "hint: you are not allowed to send as this address: grant 'Send As' on the mailbox (Exchange), "
        "or use your own address in --from"
    )
    assert "not owned by user" in postfix_log(signed_in)


def test_logout_on_a_corrupt_cache_says_it_moved_the_file_aside(signed_in: Account) -> None:
    signed_in.cache.write_text("{ not json")
    result = signed_in.run("logout")
    assert result.returncode == 0, result.stderr
    [aside] = signed_in.cache.parent.glob("token_cache.json.corrupt-*")
    assert result.stdout.splitlines() == [
        f"The token cache {signed_in.cache} was unreadable: it was moved to {aside}; {signed_in.address} is signed out."
    ]
    assert "the other accounts" not in result.stdout
    assert aside.read_text() == "{ not json" and not signed_in.cache.exists()


def test_fetch_help_says_what_the_readme_says(account: Account) -> None:
    result = account.run("fetch", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "at least once: never skipped, at most one duplicate after a crash" in text
    assert "exactly once" not in text
    text = (REPO / "README.md").read_text()
    fetch_section = text[text.index("### fetch: every new message, once") :]
    fetch_section = " ".join(fetch_section[: fetch_section.index("\n### ", 10)].split())
    assert "The promise is *at least once*" in fetch_section
    assert "never skip one" in fetch_section and "exactly once" not in fetch_section


def test_doctor_refuses_the_unchanged_env_example(account: Account) -> None:
    env_file = account.home / ".env"
    shutil.copy(REPO / ".env.example", env_file)
    env = dict(account.env, MAILBOT_ENV_FILE=str(env_file))
    del env["OUTLOOK_USERNAME"], env["OUTLOOK_CLIENT_ID"]
    account.env.clear()
    account.env.update(env)
    result = account.run("doctor")
    assert result.returncode == 78, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "FAIL configuration: OUTLOOK_CLIENT_ID is still the placeholder 00000000-0000-0000-0000-000000000000 "
        "from .env.example",
        "     hint: put your own values in the .env (README: Register the app)",
    ]
    # with a real client id, the placeholder address is refused too
    result = account.run("doctor", env={"OUTLOOK_CLIENT_ID": "5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f"})
    assert result.returncode == 78
    assert result.stdout.splitlines()[0] == (
        "FAIL configuration: OUTLOOK_USERNAME is still the placeholder you@outlook.com from .env.example"
    )


def test_doctor_placeholders_are_exactly_those_of_env_example() -> None:
    from mailbotcore.commands.doctor import PLACEHOLDERS

    values = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert values == PLACEHOLDERS
