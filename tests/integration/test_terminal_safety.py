"""Server-supplied text never steers the terminal: a scripted SMTP peer answers with OSC 52
(clipboard write), clear-screen and bidi controls; every line mailbot prints stays clean."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Account
from tests.integration.test_send import at

EVIL = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\u202etxt.exe"
SHOWN = "]52;c;ZXZpbA== [2Jtxt.exe"
UNSAFE = set("\x1b\x07\x9b\u202e")


def test_a_hostile_smtp_refusal_reaches_stderr_clean(signed_in: Account, scripted) -> None:
    peer = scripted(mail=[f"554 5.7.1 {EVIL}"])
    result = signed_in.run("send", "-v", "--to", "x@example.net", "--body", "b", env=at(peer.port))
    assert result.returncode == 69, result.stderr
    assert not set(result.stderr) & UNSAFE, repr(result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith(f"554 5.7.1 {SHOWN}"), errors


def test_a_hostile_refusal_in_the_outbox_is_clean_on_stderr_and_in_json(
    signed_in: Account, scripted, tmp_path: Path
) -> None:
    queue = tmp_path / "q"
    queued = signed_in.run("send", "--queue", str(queue), "--to", "x@example.net", "--body", "b")
    assert queued.returncode == 0, queued.stderr
    name = queued.stdout.strip()
    peer = scripted(mail=[f"554 5.7.1 {EVIL}"])
    text = signed_in.run("outbox", "-v", str(queue), env=at(peer.port))
    assert text.returncode == 69, text.stderr
    assert not set(text.stderr + text.stdout) & UNSAFE, repr(text.stderr)
    [failed] = [line for line in text.stderr.splitlines() if line.startswith("failed:")]
    assert failed.startswith(f"failed: {name}: ") and SHOWN in failed
    # JSON: the same clean text (the SMTP reply is cleaned where it is parsed)
    queued = signed_in.run("send", "--queue", str(queue), "--to", "x@example.net", "--body", "b")
    peer = scripted(mail=[f"554 5.7.1 {EVIL}"])
    as_json = signed_in.run("outbox", "--json", str(queue), env=at(peer.port))
    assert as_json.returncode == 69
    assert not set(as_json.stdout + as_json.stderr) & UNSAFE
    assert f"554 5.7.1 {SHOWN}\n" in json.loads(as_json.stdout)["error"]
