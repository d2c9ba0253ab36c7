"""Unit tests for mail/headers.py: decoding header values, dates, list summaries and list lines."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from mailbotcore.mail import headers as messages
from mailbotcore.mail.headers import MessageSummary
from mailbotcore.render import record

UTC = timezone.utc


@pytest.fixture
def utc_tz(monkeypatch):
    """Run with the local time zone set to UTC so local-time output is exact."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in text)


# ---------------------------------------------------------------------------
# decode_header
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?B?R3LDvMOfZQ==?=", "Grüße"),
        ("=?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=", "Café crème"),
        ("=?iso-8859-1?Q?Andr=E9?=", "André"),
        ("=?windows-1252?Q?=93Quoted=94_=80?=", "“Quoted” €"),
        ("=?koi8-r?B?8NLJ18XUIM3J0g==?=", "Привет мир"),
        ("=?gb2312?B?xOO6ww==?=", "你好"),
        ("=?shift_jis?B?grGC8YLJgr+CzQ==?=", "こんにちは"),
        ("=?iso-2022-jp?B?GyRCRnxLXDhsGyhC?=", "日本語"),
        ("=?x-unknown?Q?hello_w=F6rld?=", "hello wörld"),
        ("=?x-unknown?B?w6k=?=", "é"),
        ("=?utf-8*en?Q?lang_tag?=", "lang tag"),
        ("=?base64?Q?not_a_text_codec?=", "not a text codec"),
        ("=?undefined?Q?always_fails?=", "always fails"),
    ],
)
def test_decode_header_charsets(raw, expected):
    assert messages.decode_header(raw) == expected


def test_decode_header_missing_values():
    assert messages.decode_header(None) == ""
    assert messages.decode_header("") == ""
    assert messages.decode_header(b"") == ""


def test_decode_header_whitespace_between_words():
    # Whitespace between adjacent encoded words is dropped; around plain text it is kept.
    assert messages.decode_header("=?utf-8?Q?a?= =?utf-8?Q?b?=") == "ab"
    assert messages.decode_header("=?utf-8?Q?a?=  \r\n =?iso-8859-1?Q?=E9?=") == "aé"
    assert messages.decode_header("x =?utf-8?Q?a?= y =?utf-8?Q?b?= z") == "x a y b z"


def test_decode_header_joins_split_multibyte_character():
    assert messages.decode_header("=?utf-8?B?4oI=?= =?utf-8?B?rA==?=") == "€"


def test_decode_header_broken_words():
    assert messages.decode_header("=?utf-8?B?SGVsbG8*&^%?= x") == "Hello x"
    assert messages.decode_header("=?utf-8?B?A?=") == ""
    assert messages.decode_header("=?utf-8?Q?unterminated_word") == "=?utf-8?Q?unterminated_word"
    assert messages.decode_header("=?utf-8?Q?bad=ZZhex?=") == "bad=ZZhex"
    assert messages.decode_header("=?utf-8?B?/w==?=") == "\ufffd"


def test_decode_header_raw_bytes():
    assert messages.decode_header("Grüße".encode()) == "Grüße"
    assert messages.decode_header("Café".encode("latin-1")) == "Café"
    assert messages.decode_header(b"\x93quoted\x94") == "“quoted”"


def test_decode_header_surrogate_escaped_str():
    # What the email parser stores for 8-bit header bytes.
    assert messages.decode_header("Gr\udcc3\udcbc\udcc3\udc9fe") == "Grüße"
    assert messages.decode_header("Caf\udce9") == "Café"
    assert messages.decode_header("lone \ud800 surrogate") == "lone \ufffd surrogate"


def test_decode_header_unfolds():
    assert messages.decode_header("part one\r\n part two\r\n\tpart three") == "part one part two part three"
    assert messages.decode_header("lf\n fold") == "lf fold"


def test_decode_header_replaces_controls():
    assert messages.decode_header("=?utf-8?Q?evil=1B[2J=0D=0AInjected:_yes=07?=") == "evil [2J Injected: yes"
    hostile = "a\x00b\x1bc\rd\ne\tf\x7fg\x9bh\u2028i\u2029j\x85k"
    decoded = messages.decode_header(hostile)
    assert decoded == "a b c d e f g h i j k"
    assert not _has_control(decoded)


def test_decode_header_long_value():
    assert messages.decode_header("A" * 10240) == "A" * 10240


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("27-Nov-2026 10:01:02 +0000", datetime(2026, 11, 27, 10, 1, 2, tzinfo=UTC)),
        (b" 7-Nov-2026 10:01:02 +0130", datetime(2026, 11, 7, 8, 31, 2, tzinfo=UTC)),
        ('"01-jan-2020 00:00:00 -0500"', datetime(2020, 1, 1, 5, 0, 0, tzinfo=UTC)),
        ('INTERNALDATE "27-Nov-2026 10:01:02 +0000"', datetime(2026, 11, 27, 10, 1, 2, tzinfo=UTC)),
    ],
)
def test_parse_internaldate(raw, expected):
    parsed = messages.parse_internaldate(raw)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("raw", ["", "garbage", "32-Nov-2026 10:01:02 +0000", "27-Foo-2026 10:01:02 +0000", b"\xff"])
def test_parse_internaldate_rejects(raw):
    assert messages.parse_internaldate(raw) is None


# ---------------------------------------------------------------------------
# summarize / MessageSummary
# ---------------------------------------------------------------------------

HEADER_BLOCK = (
    b"Date: Fri, 27 Nov 2026 10:01:02 +0100\r\n"
    b"From: =?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\r\n"
    b'To: bob@example.org, "Doe, John" <john@example.com>\r\n'
    b"Cc: carol@example.net\r\n"
    b"Subject: =?utf-8?B?R3LDvMOfZQ==?=\r\n"
    b"Message-ID: <abc.123@example.de>\r\n"
    b"\r\n"
)


def test_summarize_fields():
    s = messages.summarize(42, ["\\Seen", "\\Flagged"], 1234, HEADER_BLOCK)
    assert s.uid == 42
    assert s.date == datetime(2026, 11, 27, 9, 1, 2, tzinfo=UTC)
    assert s.date.utcoffset() == timedelta(hours=1)
    assert s.from_ == "Jürgen Müller"
    assert s.to == "bob@example.org, john@example.com"
    assert s.subject == "Grüße"
    assert s.size == 1234
    assert s.flags == ["\\Seen", "\\Flagged"]
    assert s.message_id == "<abc.123@example.de>"
    assert s.seen is True


def test_summarize_from_without_name_uses_address():
    s = messages.summarize(1, [], 1, b"From: alice@example.com\r\n\r\n")
    assert s.from_ == "alice@example.com"


def test_summarize_missing_headers():
    s = messages.summarize(7, [], 0, b"")
    assert (s.from_, s.to, s.subject, s.message_id, s.date) == ("", "", "", None, None)
    assert s.seen is False


def test_summarize_duplicates_take_first():
    block = b"Subject: first\r\nSubject: second\r\nFrom: a@x.org\r\nFrom: b@y.org\r\n\r\n"
    s = messages.summarize(1, [], 1, block)
    assert (s.subject, s.from_) == ("first", "a@x.org")


def test_summarize_bad_date_falls_back_to_internaldate():
    internal = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for bad in (b"yesterday", b"Mon, 32 Foo 2020 25:61:00 +9999", b"Fri, 31 Feb 2026 10:00:00 +0000", b""):
        block = b"Date: " + bad + b"\r\nSubject: x\r\n\r\n"
        assert messages.summarize(1, [], 1, block).date is None
        assert messages.summarize(1, [], 1, block, internal).date == internal


def test_summarize_naive_dates_become_utc():
    s = messages.summarize(1, [], 1, b"Date: Fri, 27 Nov 2026 10:01:02 -0000\r\n\r\n")
    assert s.date == datetime(2026, 11, 27, 10, 1, 2, tzinfo=UTC)
    s = messages.summarize(1, [], 1, b"Subject: x\r\n\r\n", datetime(2026, 1, 1, 12, 0))
    assert s.date == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_summarize_garbage_addresses_show_raw_text():
    s = messages.summarize(1, [], 1, b"From: <<<@@@>>>\r\nTo: jane@, \r\n\r\n")
    assert s.from_ == "<<<@@@>>>"
    assert s.to == "jane@,"
    s = messages.summarize(1, [], 1, b"To: undisclosed-recipients:;\r\n\r\n")
    assert s.to == "undisclosed-recipients:;"


def test_summarize_8bit_and_long_headers():
    block = b"From: J\xc3\xbcrgen <j@x.de>\r\nSubject: " + b"Caf\xe9 " * 2000 + b"\r\n\r\n"
    s = messages.summarize(1, [], 1, block)
    assert s.from_ == "Jürgen"
    assert s.subject == " ".join(["Café"] * 2000)


def test_seen_is_case_insensitive():
    assert MessageSummary(1, None, "", "", "", 0, ["\\SEEN"], None).seen
    assert not MessageSummary(1, None, "", "", "", 0, ["\\Answered"], None).seen


def test_to_json_exact_keys_and_types():
    data = record(messages.summarize(42, ["\\Seen"], 1234, HEADER_BLOCK))
    assert list(data) == [
        "uid", "date", "from", "to", "subject", "size", "flags", "message_id", "from_address", "seen"
    ]  # fmt: skip
    assert data == {
        "uid": 42,
        "date": "2026-11-27T10:01:02+01:00",
        "from": "Jürgen Müller",
        "from_address": "jm@example.de",
        "to": "bob@example.org, john@example.com",
        "subject": "Grüße",
        "size": 1234,
        "flags": ["\\Seen"],
        "seen": True,
        "message_id": "<abc.123@example.de>",
    }
    empty = record(messages.summarize(1, [], 0, b""))
    assert empty["date"] is None and empty["message_id"] is None
    assert (empty["from"], empty["to"], empty["subject"], empty["seen"]) == ("", "", "", False)
    json.dumps(empty)


# ---------------------------------------------------------------------------
# format_list_line
# ---------------------------------------------------------------------------


def _summary(subject="Hello", sender="Alice", flags=(), date=datetime(2026, 11, 27, 10, 1, 2, tzinfo=UTC)):
    return MessageSummary(12, date, sender, "", subject, 10, list(flags), None)


def test_format_list_line_untruncated(utc_tz):
    line = messages.format_list_line(_summary(subject="S" * 300), None)
    assert line == "*     12 2026-11-27 10:01  Alice                     " + "S" * 300
    seen = messages.format_list_line(_summary(flags=["\\Seen"]), None, show_uid=False)
    assert seen == "  2026-11-27 10:01  Alice                     Hello"


def test_format_list_line_local_time(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        line = messages.format_list_line(_summary(), None)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert "2026-11-27 19:01" in line


def test_format_list_line_missing_values(utc_tz):
    line = messages.format_list_line(_summary(subject="", sender="", date=None), None)
    assert line == "*     12                   (unknown sender)          (no subject)"


def test_format_list_line_truncates_to_width(utc_tz):
    line = messages.format_list_line(_summary(subject="x" * 200), 80)
    assert messages.display_width(line) == 80
    assert line.endswith("…")
    short = messages.format_list_line(_summary(), 80)
    assert short.endswith("Hello") and "…" not in short


@pytest.mark.parametrize("width", range(55, 75))
def test_format_list_line_wide_characters(utc_tz, width):
    line = messages.format_list_line(_summary(subject="日本語の件名" * 10, sender="山田太郎" * 10), width)
    assert messages.display_width(line) <= width
    assert messages.display_width(line) >= width - 1  # a wide char may leave one column free
    assert line.endswith("…")
    # The sender column is cut to 24 columns too.
    assert "  山田太郎山田太郎山田太…   " in line  # 11 wide chars + "…" = 23 columns, padded to 24


def test_format_list_line_strips_controls(utc_tz):
    line = messages.format_list_line(_summary(subject="a\x1b[2Jb\nc"), None)
    assert not _has_control(line)


def test_display_width():
    assert messages.display_width("abc") == 3
    assert messages.display_width("日本") == 4
    assert messages.display_width("e\u0301") == 1
    assert messages.display_width("…") == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?unicode_escape?q?=5Cud800?=", "\\ud800"),  # issue 11: the codec never runs
        ("=?raw_unicode_escape?q?=5Cu202e?=", "\\u202e"),
        ("=?rot13?q?uryyb?=", "uryyb"),
        ("=?base64?q?aGk=3D?=", "aGk="),
        ("=?utf-7?q?+2AA-?=", "\ufffd"),  # a real charset whose decoder yields a lone surrogate
        ("=?utf-8?q?a=E2=80=AEb?=", "ab"),  # bidi override removed after decoding
    ],
)
def test_decode_header_only_real_text_encodings_then_sanitised(raw, expected):
    assert messages.decode_header(raw) == expected


def test_text_codec_accepts_only_mail_text_encodings():
    assert messages.text_codec("UTF-8") == "utf-8"
    assert messages.text_codec("shift_jis") == "cp932"
    for name in ("unicode_escape", "base64", "rot13", "uu", "zlib", "hex", "idna", "punycode", "undefined", "nope"):
        assert messages.text_codec(name) is None, name
