"""Pure helpers: XOAUTH2, IMAP wire formats, redaction, cache merging, atomic files."""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import date
from pathlib import Path

import pytest

from mailbotcore import logs
from mailbotcore.errors import Busy
from mailbotcore.signin import cache, entra
from mailbotcore.store import files as fileutil
from mailbotcore.wire import imap as imapwire
from mailbotcore.wire import sasl


def test_xoauth2_initial_response_exact_bytes() -> None:
    assert (
        sasl.xoauth2_initial_response("me@example.com", "tok.en") == "user=me@example.com\x01auth=Bearer tok.en\x01\x01"
    )
    # Google's documented example, base64 of the same layout.
    expected = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
    response = sasl.xoauth2_initial_response("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert base64.b64encode(response.encode()).decode() == expected


def test_xoauth2_refuses_control_characters() -> None:
    with pytest.raises(ValueError):
        sasl.xoauth2_initial_response("me@example.com\x01auth=Bearer x", "t")
    with pytest.raises(ValueError):
        sasl.xoauth2_initial_response("me@example.com", "tok\r\nA1 LOGOUT")


def test_responder_answers_error_challenge_with_empty_response() -> None:
    respond = sasl.xoauth2_responder("me@example.com", "token123")
    assert respond() == "user=me@example.com\x01auth=Bearer token123\x01\x01"
    assert respond(b"") == respond()
    assert respond(b'{"status":"401"}') == ""


def test_parse_error_challenge() -> None:
    payload = {"status": "invalid_token", "schemes": "bearer", "scope": "x"}
    assert sasl.parse_error_challenge(base64.b64encode(json.dumps(payload).encode())) == payload
    assert sasl.parse_error_challenge(json.dumps(payload)) == payload
    assert sasl.parse_error_challenge(b"garbage!!") == {}


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        ("INBOX", b"INBOX"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("A & B", b"A &- B"),
        ("日本語", b"&ZeVnLIqe-"),
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ],
)
def test_modified_utf7_round_trip(name: str, encoded: bytes) -> None:
    assert imapwire.encode_folder(name) == encoded
    assert imapwire.decode_folder(encoded) == name


def test_quote_and_search_date() -> None:
    assert imapwire.quote('say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    with pytest.raises(ValueError):
        imapwire.quote("a\r\nb")
    assert imapwire.search_date(date(2026, 3, 5)) == "5-Mar-2026"


def test_parse_fetch_handles_literals_trailers_and_attribute_order() -> None:
    data = [
        (
            b'3 (UID 7 FLAGS (\\Seen $Label) INTERNALDATE "27-Nov-2026 10:00:00 +0000" RFC822.SIZE 120 '
            b"BODY[HEADER.FIELDS (DATE FROM)] {5}",
            b"abcde",
        ),
        b")",
        b"4 (FLAGS () UID 9 RFC822.SIZE 1)",
        (b"5 (BODY[] {3}", b"xyz"),
        b" UID 11 FLAGS (\\Flagged))",
        b"6 (FLAGS (\\Deleted))",  # unsolicited flag update: no UID
    ]
    parsed = imapwire.parse_fetch(data)
    assert [m.uid for m in parsed] == [7, 9, 11, None]
    assert parsed[0].flags == ["\\Seen", "$Label"]
    assert parsed[0].internaldate == "27-Nov-2026 10:00:00 +0000"
    assert parsed[0].size == 120
    assert parsed[0].sections == {"HEADER": b"abcde"}
    assert parsed[2].sections == {"": b"xyz"}
    assert parsed[2].flags == ["\\Flagged"]


def test_redaction_masks_registered_and_token_shaped_secrets() -> None:
    secret = "s3cr3t-token-value-123456"
    logs.register_secret(secret)
    line = f"> b'A1 AUTHENTICATE XOAUTH2 dXNlcj1tZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB4eHh4AQE=' {secret}"
    redacted = logs.redact(line)
    assert secret not in redacted
    assert "dXNlcj1tZUBl" not in redacted
    assert logs.redact("send: 'AUTH XOAUTH2 abcdef=='") == "send: 'AUTH XOAUTH2 [REDACTED]'"
    assert logs.redact("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl") == "[REDACTED]"


def test_aadsts_codes_and_hints() -> None:
    result = {
        "error": "invalid_grant",
        "error_description": "AADSTS50173: The provided grant has expired.\r\nTrace ID: x",
    }
    assert entra.aadsts_code(result) == 50173
    message, hint = entra.describe_error(result)
    assert message == "AADSTS50173: The provided grant has expired."
    assert hint is not None and "login" in hint
    assert entra.aadsts_code({"error_codes": [65001]}) == 65001
    assert entra.describe_error({"error": "x", "error_description": "AADSTS99999: new thing"}) == (
        "AADSTS99999: new thing",
        None,
    )


def test_merge_account_keeps_other_accounts() -> None:
    disk = {
        "RefreshToken": {
            "a-rt": {"home_account_id": "A", "secret": "old"},
            "b-rt": {"home_account_id": "B", "secret": "b"},
        },
        "Account": {"a": {"home_account_id": "A"}, "b": {"home_account_id": "B"}},
    }
    ours = {
        "RefreshToken": {"a-rt2": {"home_account_id": "A", "secret": "new"}},
        "Account": {"a": {"home_account_id": "A"}},
    }
    merged = cache.merge_account(disk, ours, "A")
    assert merged["RefreshToken"] == {
        "b-rt": {"home_account_id": "B", "secret": "b"},
        "a-rt2": {"home_account_id": "A", "secret": "new"},
    }
    assert set(merged["Account"]) == {"a", "b"}
    assert cache.remove_account(merged, "A")["RefreshToken"] == {"b-rt": {"home_account_id": "B", "secret": "b"}}


def test_atomic_write_is_private_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "cache.json"
    fileutil.atomic_write(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    os.chmod(target, 0o644)
    fileutil.atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["cache.json"]


def test_check_private_tightens_loose_mode(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    fileutil.check_private(path, "token cache")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_lock_excludes_second_holder(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    # flock locks belong to open file descriptions, so a second open in-process conflicts too.
    with (
        fileutil.FileLock(lock, 0, "busy"),
        pytest.raises(Busy, match="busy"),
        fileutil.FileLock(lock, 0.05, "busy"),
    ):
        pass
    with fileutil.FileLock(lock, 0, "busy"):
        pass


def test_http_cache_keeps_only_discovery() -> None:
    from msal.individual_cache import _ExpiringMapping

    raw: dict = {}
    mapping = _ExpiringMapping(mapping=raw)
    mapping.set("GET https://login/x/v2.0/.well-known/openid-configuration hash=1 2xx", "discovery", 3600)
    mapping.set("POST https://login/x/oauth2/v2.0/token hash=2 400", "invalid_grant", 60)
    kept = cache.discovery_only(raw)
    reread = _ExpiringMapping(mapping=kept)
    assert list(reread) == ["GET https://login/x/v2.0/.well-known/openid-configuration hash=1 2xx"]
    assert reread["GET https://login/x/v2.0/.well-known/openid-configuration hash=1 2xx"] == "discovery"
    assert cache.discovery_only({}) == {}
