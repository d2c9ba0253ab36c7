"""Numbers and lists from IMAP servers are parsed strictly: a malformed reply is a ProtocolViolation
(mailbot turns it into one clean error line), never a ValueError traceback."""

from __future__ import annotations

import pytest

from mailbotcore.wire import imap as imapwire


@pytest.mark.parametrize(("raw", "value"), [(b"0", 0), (b"42", 42), ("4294967295", 4294967295), (b" 7 ", 7)])
def test_parse_number(raw: bytes | str, value: int) -> None:
    assert imapwire.parse_number(raw, "UIDNEXT") == value


@pytest.mark.parametrize("raw", [b"abc", b"4x", b"", b"-1", b"1.5", "١٢", b"9" * 30])
def test_parse_number_refuses(raw: bytes | str) -> None:
    with pytest.raises(imapwire.ProtocolViolation, match="UIDVALIDITY"):
        imapwire.parse_number(raw, "UIDVALIDITY")


def test_parse_search() -> None:
    assert imapwire.parse_search([b"3 1 2"]) == [1, 2, 3]
    assert imapwire.parse_search([None, b""]) == []
    with pytest.raises(imapwire.ProtocolViolation, match="'two' is not a number"):
        imapwire.parse_search([b"1 two 3"])


def test_parse_capabilities() -> None:
    assert imapwire.parse_capabilities(b"IMAP4rev1 SASL-IR auth=XOAUTH2 Move") == (
        "IMAP4REV1",
        "SASL-IR",
        "AUTH=XOAUTH2",
        "MOVE",
    )
