"""IMAP wire formats (mailbotcore/wire/imap.py): modified UTF-7, quoting, dates, FETCH parsing, and
strict numbers: a malformed reply is a ProtocolViolation (one clean error line), never a traceback."""

from __future__ import annotations

from datetime import date

import pytest

from mailbotcore.wire import imap as imapwire


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
