"""Cheap runs import only what they use (issue 15): a cron run with a valid cached access token
reads it from the cache file (mailbotcore/signin/fastpath.py) and never imports msal, requests
or cryptography; ``--help``, ``whoami``, ``send --queue`` and ``send --dry-run`` neither.

The modules a run imports come from ``PYTHONPROFILEIMPORTTIME`` (the environment form of
``python -X importtime``): one stderr line per imported module.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import Account

HEAVY = ("msal", "requests", "urllib3", "cryptography", "jwt", "dotenv")


def imported(stderr: str) -> set[str]:
    names = set()
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if m:
            names.add(m[1])
    return names


def heavy(stderr: str) -> list[str]:
    return sorted(n for n in imported(stderr) if n.split(".")[0] in HEAVY)


def _run(account: Account, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = account.run(*args, env={"PYTHONPROFILEIMPORTTIME": "1"}, input=input)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.integration
def test_list_and_fetch_with_a_valid_cached_token_import_no_msal(signed_in: Account) -> None:
    signed_in.seed(b"From: a@example.com\r\nTo: b@example.com\r\nSubject: one\r\nMessage-ID: <1@x>\r\n\r\nhi\r\n")
    rc, out, err = _run(signed_in, "list", "-n", "10")
    assert rc == 0, err[-2000:]
    assert "one" in out
    assert heavy(err) == []
    assert "mailbotcore.signin.fastpath" in imported(err)
    # The first fetch remembers where the folder ends; the second delivers what came since.
    rc, _out, err = _run(signed_in, "fetch", "--maildir", str(signed_in.home / "md"))
    assert rc == 0, err[-2000:]
    signed_in.seed(b"From: a@example.com\r\nTo: b@example.com\r\nSubject: two\r\nMessage-ID: <2@x>\r\n\r\nho\r\n")
    rc, _out, err = _run(signed_in, "fetch", "--maildir", str(signed_in.home / "md"))
    assert rc == 0, err[-2000:]
    assert heavy(err) == []
    assert len(list((signed_in.home / "md" / "new").iterdir())) == 1
    # The bodies are fetched without FLAGS/INTERNALDATE/RFC822.SIZE (known from the size listing).
    body_fetches = [c for c in signed_in.servers.imap_commands(signed_in.address) if "BODY.PEEK[]" in c]
    assert len(body_fetches) == 1 and body_fetches[0].endswith(" (UID BODY.PEEK[])"), body_fetches
    assert signed_in.idp.counts().get("total", 0) == 0


@pytest.mark.integration
def test_an_expired_access_token_still_goes_through_msal(signed_in: Account) -> None:
    state = json.loads(signed_in.cache.read_text())
    for entry in state["AccessToken"].values():
        entry["expires_on"] = str(int(entry["expires_on"]) - 7200)
    signed_in.cache.write_text(json.dumps(state))
    rc, _out, err = _run(signed_in, "list", "-n", "1")
    assert rc == 0, err[-2000:]
    assert "msal" in imported(err)
    assert signed_in.idp.counts().get("token", 0) + signed_in.idp.counts().get("total", 0) >= 1


@pytest.mark.integration
def test_help_whoami_queue_and_dry_run_import_nothing_heavy(signed_in: Account) -> None:
    for args in (
        ("--help",),
        ("whoami",),
        ("send", "--to", "x@example.com", "--subject", "s", "--body", "b", "--queue", str(signed_in.home / "q")),
        ("send", "--to", "x@example.com", "--subject", "s", "--body", "b", "--dry-run"),
    ):
        rc, _out, err = _run(signed_in, *args)
        assert rc == 0, (args, err[-2000:])
        assert heavy(err) == [], args
    assert len(list((signed_in.home / "q").glob("*.eml"))) == 1
