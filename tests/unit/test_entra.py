"""Entra ID error results (mailbotcore/signin/entra.py): the AADSTS code, one line, the hint."""

from __future__ import annotations

from mailbotcore.signin import entra


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
