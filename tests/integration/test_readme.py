"""The README's examples, run for real against the test bed.

Every ``$ `` line of a ``console`` block, every crontab line and the systemd ``ExecStart`` are
executed (in order, as one session: sign in, read, send, fetch, queue). Where the README shows
output that does not depend on time or randomness (listing, JSON through jq, reading a message,
the first fetch), the real output must match it exactly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import MAILBOT, REPO, Account

README = REPO / "README.md"
EXACT = ("list -n", "--json | jq", "read 3", "fetch --maildir ~/Mail/outlook\n")


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(), flags=re.S)


def console_examples() -> list[tuple[str, str]]:
    """(command, expected output) pairs from the console blocks, in README order."""
    examples: list[tuple[str, str]] = []
    for block in blocks("console"):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


def seed_readme_mailbox(account: Account, shared: str) -> None:
    invoice = (
        b"From: Billing <billing@example.org>\r\nTo: you@example.com\r\nSubject: Your invoice for November\r\n"
        b"Date: Fri, 27 Nov 2026 09:12:00 +0000\r\nMessage-ID: <invoice-11@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
        b"Hello, your invoice is attached.\r\n--b\r\nContent-Type: application/pdf\r\n"
        b'Content-Disposition: attachment; filename="invoice.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        b"JVBERi0xLjQKJSVFT0YK\r\n--b--\r\n"
    )
    plan = (
        b"From: Ana Souza <ana@example.org>\r\nTo: you@example.com\r\nSubject: Re: Q4 plan\r\n"
        b"Date: Thu, 26 Nov 2026 18:40:00 +0000\r\nMessage-ID: <q4@example.org>\r\n\r\nSee you then.\r\n"
    )
    report = (
        b"From: ops@example.org\r\nTo: you@example.com\r\nSubject: disk report\r\n"
        b"Date: Wed, 25 Nov 2026 08:03:00 +0000\r\nMessage-ID: <disk@example.org>\r\n\r\n/dev/sda1 42%\r\n"
    )
    account.seed(report, seen=True)
    account.seed(plan)
    account.seed(invoice)
    account.servers.add_user(shared)
    account.servers.seed(
        shared,
        b"From: Customer <c@example.org>\r\nSubject: Question about my order\r\n"
        b"Date: Thu, 26 Nov 2026 16:05:00 +0000\r\n\r\n?\r\n",
    )
    account.servers.seed(
        shared,
        b"From: Supplier <s@example.org>\r\nSubject: Order 1182 shipped\r\n"
        b"Date: Fri, 27 Nov 2026 07:30:00 +0000\r\n\r\n!\r\n",
    )


def shell(account: Account, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=account.home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_readme_examples_run(account: Account) -> None:
    if not any("jq" in c for c, _ in console_examples()):
        pytest.fail("the README lost its jq example")
    shared = f"shared-readme{os.getpid()}@example.com"
    account.idp.delegate(account.address, shared)
    seed_readme_mailbox(account, shared)
    home = account.home
    (home / "report.txt").write_text("Numbers attached.\n")
    (home / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (home / "data.csv").write_text("a,b\n1,2\n")
    (home / "on-new-mail.sh").write_text("#!/bin/sh\ncat > /dev/null\n")
    (home / "on-new-mail.sh").chmod(0o755)
    (home / "outbox").mkdir()
    env = {**account.env, "TZ": "UTC", "COLUMNS": "200"}
    python = f"{sys.executable} {MAILBOT}"

    def localize(text: str) -> str:
        return text.replace("you@example.com", account.address).replace("shared@example.com", shared)

    ran = 0
    for command, expected in console_examples():
        if "mailbot.py login" in command:
            account.idp.auto_approve(account.address)
        if "fetch --maildir ~/Mail/outlook --exec" in command:
            account.seed(b"From: Ana Souza <ana@example.org>\r\nSubject: Lunch?\r\n\r\n12:30?\r\n")
        result = shell(account, localize(command).replace("python mailbot.py", python), env)
        assert result.returncode == 0, f"$ {command}\n{result.stdout}{result.stderr}"
        ran += 1
        if any(marker in command + "\n" for marker in EXACT):
            shown = (result.stdout + result.stderr).replace(account.address, "you@example.com")
            shown = "\n".join(line for line in shown.splitlines() if not line.startswith("saved "))
            assert shown.strip() == expected.strip(), f"$ {command}"
    assert ran >= 12

    # crontab lines and the systemd unit's ExecStart, with the paths of this test's home
    crontab = [line for line in blocks("crontab")[0].splitlines() if line.strip() and not line.startswith("#")]
    commands = [line.split(None, 5)[5] for line in crontab]
    commands += re.findall(r"^ExecStart=(.*)$", "\n".join(blocks("ini")), flags=re.M)
    assert len(commands) == 4
    for command in commands:
        command = re.sub(r"^cd /home/you/mailbot && ", "", command)
        command = command.replace("/usr/bin/python3 mailbot.py", python).replace("python3 mailbot.py", python)
        command = localize(command).replace("%h", str(home))
        result = shell(account, command, env)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        assert result.stderr == "", command  # cron mails stderr: quiet when all is well


def test_every_command_has_help_and_is_documented() -> None:
    from mailbotcore import cli as mailbot

    parser = mailbot.build_parser("python mailbot.py")
    commands = next(a for a in parser._actions if a.dest == "command").choices
    readme = README.read_text()
    assert set(commands) == {
        "login", "logout", "whoami", "token", "list", "read", "send", "fetch", "watch", "outbox", "doctor"
    }  # fmt: skip
    for name, sub in commands.items():
        assert sub.description, f"{name} has no help text"
        assert f"`{name}`" in readme or f"mailbot.py {name}" in readme, f"{name} is not in the README"


def test_readme_python_example_reuses_the_sign_in(signed_in: Account) -> None:
    """The "Scripting" example: the root auth.py/config.py give plain imaplib a token from mailbot's cache."""
    (example,) = blocks("python")
    signed_in.seed(b"From: a@example.org\r\nSubject: one\r\n\r\n1\r\n")
    signed_in.seed(b"From: a@example.org\r\nSubject: two\r\n\r\n2\r\n")
    script = signed_in.home / "my_script.py"
    script.write_text(example)
    env = {**signed_in.env, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=signed_in.home, env=env, capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "1 2\n", "")
    assert signed_in.idp.counts().get("token:refresh_token", 0) == 0  # the cached token, no request
