"""Log redaction (mailbotcore/logs.py): registered secrets and token-shaped strings are masked."""

from __future__ import annotations

from mailbotcore import logs


def test_redaction_masks_registered_and_token_shaped_secrets() -> None:
    secret = "s3cr3t-token-value-123456"
    logs.register_secret(secret)
    line = f"> b'A1 AUTHENTICATE XOAUTH2 dXNlcj1tZUBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB4eHh4AQE=' {secret}"
    redacted = logs.redact(line)
    assert secret not in redacted
    assert "dXNlcj1tZUBl" not in redacted
    assert logs.redact("send: 'AUTH XOAUTH2 abcdef=='") == "send: 'AUTH XOAUTH2 [REDACTED]'"
    assert logs.redact("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl") == "[REDACTED]"
