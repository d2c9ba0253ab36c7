"""The sender's address where a script can use it (issue 11, item 19): ``list --json`` and
``fetch --json`` carry ``from`` (what to show) and ``from_address``; the handler gets
``MAILBOT_FROM`` ("Name <address>") and ``MAILBOT_FROM_ADDRESS``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Account

ENV_HANDLER = """\
import json, os, sys
sys.stdin.buffer.read()
env = {k: v for k, v in os.environ.items() if k.startswith("MAILBOT_FROM")}
with open(os.path.join(os.environ["LOGDIR"], os.environ["MAILBOT_UID"] + ".json"), "w") as out:
    json.dump(env, out)
"""


def message(sender: str) -> bytes:
    return f"From: {sender}\r\nTo: t@example.com\r\nSubject: s\r\n\r\nbody\r\n".encode()


@pytest.mark.parametrize(
    ("sender", "display", "address", "env_from"),
    [
        ("Feed Bot <feed@example.org>", "Feed Bot", "feed@example.org", "Feed Bot <feed@example.org>"),
        ('"Doe, John" <john@example.com>', "Doe, John", "john@example.com", "Doe, John <john@example.com>"),
        ("feed@example.org", "feed@example.org", "feed@example.org", "feed@example.org"),
        ("=?utf-8?Q?J=C3=BCrgen?= <jm@example.de>", "Jürgen", "jm@example.de", "Jürgen <jm@example.de>"),
        ("undisclosed", "undisclosed", None, "undisclosed"),
    ],
)
def test_sender_name_and_address_in_json_and_handler_env(
    signed_in: Account, sender: str, display: str, address: str | None, env_from: str
) -> None:
    logdir = signed_in.home / "handled"
    logdir.mkdir()
    script = signed_in.home / "h.py"
    script.write_text(ENV_HANDLER)
    signed_in.env["LOGDIR"] = str(logdir)
    handler = f"python3 {script}"
    assert signed_in.run("fetch", "--exec", handler).returncode == 0  # the starting point
    signed_in.seed(message(sender))

    listed = signed_in.run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert (entry["from"], entry["from_address"]) == (display, address)

    fetched = signed_in.run("fetch", "--exec", handler, "--json")
    assert fetched.returncode == 0, fetched.stderr
    [record] = [json.loads(line) for line in fetched.stdout.splitlines()]
    assert (record["from"], record["from_address"]) == (display, address)
    env = json.loads((logdir / f"{record['uid']}.json").read_text())
    assert env == {"MAILBOT_FROM": env_from, "MAILBOT_FROM_ADDRESS": address or ""}


def test_readme_documents_the_sender_fields_and_variables() -> None:
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    for needle in ("`from_address`", "`MAILBOT_FROM_ADDRESS`", "`MAILBOT_FROM`"):
        assert needle in readme
