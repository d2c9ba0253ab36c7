"""SASL XOAUTH2 (mailbotcore/wire/sasl.py): the exact bytes, refused characters, error challenges."""

from __future__ import annotations

import base64
import json

import pytest

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
