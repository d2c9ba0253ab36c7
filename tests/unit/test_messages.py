"""Unit tests for messages.py: decoding hostile mail, building outgoing mail."""

from __future__ import annotations

import email.policy
import json
import os
import random
import re
import stat
import time
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser

import pytest

from mailbotcore import errors
from mailbotcore.mail import compose, readable
from mailbotcore.mail import headers as messages
from mailbotcore.mail.headers import MessageSummary
from mailbotcore.render import record
from tests.support.corpus import malformed_corpus

UTC = timezone.utc
PARSER = BytesParser(policy=email.policy.default)


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


# ---------------------------------------------------------------------------
# html_to_text
# ---------------------------------------------------------------------------


def test_html_to_text_structure():
    html = (
        "<html><head><title>Title</title><style>p {color: red}</style></head><body>"
        "<h1>Hi &amp; bye</h1><p>Para  one\n text <a href='https://x.org/a'>link</a> "
        "<a href='https://y.org/'>y.org</a></p>"
        "<ul><li>one<li>two<ul><li>inner</li></ul></ul>"
        "line<br>break<br/>again<script>alert(1)</script>"
        "<div>block</div><table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
        "&lt;tag&gt; &eacute;&#233;&#x20ac;&nbsp;end</body></html>"
    )
    assert readable.html_to_text(html) == (
        "Hi & bye\n\n"
        "Para one text link (https://x.org/a) y.org\n\n"
        "- one\n- two\n  - inner\n\n"
        "line\nbreak\nagain\nblock\n\n"
        "a  b\nc  d\n\n"
        "<tag> éé€ end"
    )


def test_html_to_text_links():
    assert readable.html_to_text('<a href="mailto:a@b.c">a@b.c</a>') == "a@b.c"
    assert readable.html_to_text('<a href="#top">top</a>') == "top"
    assert readable.html_to_text('<a href="javascript:x()">click</a>') == "click"
    assert readable.html_to_text('<a href="https://x.org"><img src="i.png"></a>') == "https://x.org"
    assert readable.html_to_text('<a href="https://x.org"><img alt="Logo"></a>') == "Logo (https://x.org)"


def test_html_to_text_pre_and_unclosed_tags():
    assert readable.html_to_text("<pre>a  b\n  c</pre>after") == "a  b\n  c\n\nafter"
    assert readable.html_to_text("<head><title>x</title><body>shown") == "shown"
    assert readable.html_to_text("<script>never closed") == ""
    assert readable.html_to_text("<p>unclosed <b>bold") == "unclosed bold"
    assert readable.html_to_text("<!-- comment -->text<![CDATA[x]]>") == "text"
    assert readable.html_to_text("") == ""


# ---------------------------------------------------------------------------
# parse_for_reading / format_readable
# ---------------------------------------------------------------------------

ALTERNATIVE = (
    b"Date: Fri, 27 Nov 2026 10:01:02 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"X-Other: ignored\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=E9 plain\r\n"
    b"--alt\r\n"
    b'Content-Type: multipart/related; boundary="rel"\r\n\r\n'
    b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML version</p>\r\n"
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <img1>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"iVBORw0KGgo=\r\n"
    b"--rel--\r\n"
    b"--alt--\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; name=notes.txt\r\nContent-Disposition: inline; filename=notes.txt\r\n\r\n"
    b"inline named text\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
    b" filename*=utf-8''%E2%82%AC%20rates.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"From: inner@example.com\r\nSubject: Inner =?utf-8?Q?n=C3=B8te?=\r\n\r\nInner body.\r\n"
    b"--outer--\r\n"
)


def test_parse_for_reading_structure():
    msg = readable.parse_for_reading(ALTERNATIVE)
    assert msg.headers == [
        ("Date", "Fri, 27 Nov 2026 10:01:02 +0000"),
        ("From", "Alice <alice@example.com>"),
        ("To", "bob@example.org"),
        ("Subject", "Grüße"),
        ("Message-ID", "<m1@example.com>"),
    ]
    assert msg.body == "Café plain"
    summary = [(a.filename, a.content_type, a.size) for a in msg.attachments]
    assert summary == [
        ("part-1.png", "image/png", 8),
        ("notes.txt", "text/plain", 17),
        ("€ rates.pdf", "application/pdf", 9),
        ("Inner nøte.eml", "message/rfc822", len(msg.attachments[3].payload)),
    ]
    assert msg.attachments[0].payload == b"\x89PNG\r\n\x1a\n"
    assert msg.attachments[2].payload == b"%PDF-1.4\n"
    inner = PARSER.parsebytes(msg.attachments[3].payload)
    assert inner["From"] == "inner@example.com"
    assert inner.get_content() == "Inner body."  # the CRLF before the boundary belongs to the boundary
    assert msg.attachments[3].payload.startswith(b"From: inner@example.com\r\nSubject: Inner =?utf-8?Q?n=C3=B8te?=\r\n")


def test_parse_for_reading_html_only_and_empty():
    raw = b"Subject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>there</b></p><p>Two</p>\r\n"
    assert readable.parse_for_reading(raw).body == "Hello there\n\nTwo"
    image_only = b"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n"
    msg = readable.parse_for_reading(image_only)
    assert msg.body == ""
    assert [(a.filename, a.payload) for a in msg.attachments] == [("part-1.gif", b"GIF89a")]


def test_parse_for_reading_malformed():
    assert readable.parse_for_reading(b"") == readable.ReadableMessage([], "", [])
    assert readable.parse_for_reading(b"no headers at all\r\n").body == "no headers at all"
    bad_b64 = b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29y!!!bGQ=\r\n***\r\n"
    assert readable.parse_for_reading(bad_b64).body == "Hello world"
    unknown = b"Content-Type: text/plain; charset=x-nope\r\n\r\nGr\xfc\xdfe\r\n"
    assert readable.parse_for_reading(unknown).body == "Grüße"
    no_boundary = b"Content-Type: multipart/mixed\r\n\r\nstill shown\r\n"
    assert "still shown" in readable.parse_for_reading(no_boundary).body


def test_parse_for_reading_body_has_no_escape_sequences():
    raw = b"Subject: x\r\n\r\nline\x1b[2J one\r\nnul\x00byte\tok\r\n"
    assert readable.parse_for_reading(raw).body == "line [2J one\nnul byte\tok"


def test_parse_for_reading_deep_nesting_does_not_recurse_forever():
    depth = 200
    body = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    raw = b"Subject: deep\r\n" + body + b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    msg = readable.parse_for_reading(raw)
    assert msg.headers == [("Subject", "deep")]
    assert msg.body == ""  # beyond the depth limit nothing is shown, and nothing raises


@pytest.mark.parametrize("kind", ["multipart", "rfc822"])
def test_parse_for_reading_nesting_beyond_the_email_package(kind):
    depth = 1100  # past the interpreter recursion limit (1000)
    if kind == "multipart":
        nest = b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth)
        )
    else:
        nest = b"Content-Type: message/rfc822\r\n\r\n" * depth
    raw = b"Subject: deep\r\n" + nest + b"Subject: x\r\n\r\nhi"
    msg = readable.parse_for_reading(raw)
    assert msg.headers == [("Subject", "deep")]
    assert msg.body.endswith("hi")  # shown raw rather than raising RecursionError


def test_format_readable():
    msg = readable.ReadableMessage(
        headers=[("From", "Alice <a@x.org>"), ("Subject", "Hi\x1b[2J")],
        body="Line one\nLine two\n",
        attachments=[
            readable.Attachment("report.pdf", "application/pdf", 1536, b""),
            readable.Attachment("tiny.txt", "text/plain", 12, b""),
            readable.Attachment("big.bin", "application/octet-stream", 5 * 1024 * 1024, b""),
        ],
    )
    assert readable.format_readable(msg) == (
        "From: Alice <a@x.org>\n"
        "Subject: Hi [2J\n"
        "\n"
        "Line one\nLine two\n"
        "\n"
        "Attachments:\n"
        "  report.pdf (1.5 KB, application/pdf)\n"
        "  tiny.txt (12 B, text/plain)\n"
        "  big.bin (5.0 MB, application/octet-stream)\n"
    )


# ---------------------------------------------------------------------------
# Corpus: nothing raises, the important values decode
# ---------------------------------------------------------------------------


def _header_block(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in raw:
            return raw.split(sep, 1)[0] + sep
    return raw


def test_corpus_is_large_and_unique():
    corpus = malformed_corpus()
    assert len(corpus) >= 35
    assert len({name for name, _ in corpus}) == len(corpus)
    assert all(isinstance(raw, bytes) and raw for _, raw in corpus)


@pytest.mark.parametrize(("name", "raw"), malformed_corpus(), ids=[n for n, _ in malformed_corpus()])
def test_corpus_never_raises(name, raw, utc_tz):
    summary = messages.summarize(1, [], len(raw), _header_block(raw))
    for text in (summary.from_, summary.to, summary.subject):
        assert not _has_control(text)
    json.dumps(record(summary))
    line = messages.format_list_line(summary, 80)
    assert messages.display_width(line) <= 80
    parsed = readable.parse_for_reading(raw)
    out = readable.format_readable(parsed)
    assert "\x1b" not in out and "\x00" not in out and "\r" not in out
    for att in parsed.attachments:
        safe = readable.safe_filename(att.filename, "fallback")
        assert "/" not in safe and safe not in ("", ".", "..")


def _corpus_item(name: str) -> bytes:
    return dict(malformed_corpus())[name]


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("koi8_r_subject", "Привет мир"),
        ("shift_jis_subject", "こんにちは"),
        ("gb2312_subject", "你好世界"),
        ("iso_2022_jp_subject", "日本語の件名"),
        ("windows_1252_subject", "“Quoted” price €100"),
        ("unknown_charset_subject", "hello wörld"),
        ("split_multibyte_words", "€ price"),
        ("raw_8bit_latin1_subject", "Café crème"),
        ("raw_8bit_utf8_subject", "Ünïcödé raw subject"),
        ("control_chars_subject", "evil [2J Injected: yes"),
        ("emoji_subject", "🎉 Party 👨‍👩‍👧 time"),
        ("duplicate_subject_from", "first"),
        ("whitespace_only_subject", ""),
        ("huge_folded_subject", " ".join(f"word{i}" for i in range(100))),
    ],
)
def test_corpus_subjects(name, subject):
    raw = _corpus_item(name)
    assert messages.summarize(1, [], 1, _header_block(raw)).subject == subject
    assert ("Subject", subject) in readable.parse_for_reading(raw).headers


def test_corpus_specific_values():
    s = messages.summarize(1, [], 1, _header_block(_corpus_item("encoded_display_name")))
    assert s.from_ == "Jürgen Müller"
    s = messages.summarize(1, [], 1, _header_block(_corpus_item("huge_folded_to")))
    assert s.to == ", ".join(f"r{i}@example.org" for i in range(100))
    assert messages.summarize(1, [], 1, _header_block(_corpus_item("address_no_domain"))).from_ == "john"
    assert messages.summarize(1, [], 1, _header_block(_corpus_item("long_subject_10k"))).subject == "A" * 10240
    traversal = readable.parse_for_reading(_corpus_item("attachment_path_traversal")).attachments
    assert [(a.filename, a.payload) for a in traversal] == [("../../etc/passwd", b"root:x:0:0:")]
    assert readable.safe_filename(traversal[0].filename, "x") == "passwd"
    rfc2231 = readable.parse_for_reading(_corpus_item("rfc2231_filename")).attachments
    assert [a.filename for a in rfc2231] == ["€ rates été.pdf"]
    rfc822 = readable.parse_for_reading(_corpus_item("message_rfc822")).attachments
    assert [a.filename for a in rfc822] == ["Inner message.eml"]
    assert readable.parse_for_reading(_corpus_item("nested_multipart_5_deep")).body == "deepest text"
    assert readable.parse_for_reading(_corpus_item("lf_only_line_endings")).body == "line one\nline two"
    html = readable.parse_for_reading(_corpus_item("html_only")).body
    assert html == "Hello HTML & link (https://x.org)"


# ---------------------------------------------------------------------------
# safe_filename / save_unique
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
        ("/absolute/path.txt", "path.txt"),
        ("..", "fallback"),
        (".", "fallback"),
        ("", "fallback"),
        (None, "fallback"),
        ("   ", "fallback"),
        ("dir/", "fallback"),
        (".bashrc", "bashrc"),
        ("...hidden.txt", "hidden.txt"),
        ("nul\x00byte.txt", "nul byte.txt"),
        ("new\nline\r.txt", "new line .txt"),
        ('a<b>c:d"e|f?g*h.txt', "a_b_c_d_e_f_g_h.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("CON", "_CON"),
        ("com1.txt", "_com1.txt"),
        ("trailing. . .", "trailing"),
        ("Grüße €.pdf", "Grüße €.pdf"),
    ],
)
def test_safe_filename(name, expected):
    assert readable.safe_filename(name, "fallback") == expected


def test_safe_filename_caps_length_keeping_extension():
    name = "é" * 300 + ".pdf"
    safe = readable.safe_filename(name, "x")
    assert safe.endswith(".pdf")
    assert len(safe.encode()) <= 200
    assert safe == "é" * 98 + ".pdf"
    long_ext = readable.safe_filename("a." + "x" * 400, "x")
    assert len(long_ext.encode()) <= 200


def test_save_unique_never_overwrites(tmp_path):
    first = readable.save_unique(tmp_path, "a.txt", b"one")
    second = readable.save_unique(tmp_path, "a.txt", b"two")
    third = readable.save_unique(tmp_path, "a.txt", b"three")
    assert [p.name for p in (first, second, third)] == ["a.txt", "a (1).txt", "a (2).txt"]
    assert [p.read_bytes() for p in (first, second, third)] == [b"one", b"two", b"three"]
    noext = [readable.save_unique(tmp_path, "README", b"").name for _ in range(2)]
    assert noext == ["README", "README (1)"]


def test_save_unique_mode_and_location(tmp_path):
    path = readable.save_unique(tmp_path, "../../escape.txt", b"data")
    assert path == tmp_path / "escape.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_unique_refuses_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").symlink_to(outside)
    (inbox / "dangling.txt").symlink_to(tmp_path / "does-not-exist")
    path = readable.save_unique(inbox, "a.txt", b"attacker")
    assert path == inbox / "a (1).txt"
    assert outside.read_bytes() == b"precious"
    assert (inbox / "a.txt").is_symlink()
    dangling = readable.save_unique(inbox, "dangling.txt", b"x")
    assert dangling == inbox / "dangling (1).txt"
    assert not (tmp_path / "does-not-exist").exists()


def test_save_unique_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        readable.save_unique(tmp_path / "nope", "a.txt", b"")


# ---------------------------------------------------------------------------
# Addresses and header values
# ---------------------------------------------------------------------------


def test_parse_addresses_forms():
    values = [
        "a@example.com",
        "Bob Smith <bob@example.org>",
        '"Doe, John" <j@x.org>, c@example.net; d@example.net',
        '"Quote \\" inside" <q@x.org>',
        "<bare@x.org>",
        "Jürgen <j@bücher.example>",
        "user@localhost",
    ]
    assert compose.parse_addresses(values, "--to") == [
        ("", "a@example.com"),
        ("Bob Smith", "bob@example.org"),
        ("Doe, John", "j@x.org"),
        ("", "c@example.net"),
        ("", "d@example.net"),
        ('Quote " inside', "q@x.org"),
        ("", "bare@x.org"),
        ("Jürgen", "j@xn--bcher-kva.example"),
        ("", "user@localhost"),
    ]
    assert compose.parse_addresses(["a@x.org, "], "--to") == [("", "a@x.org")]
    assert compose.parse_addresses([], "--cc") == []


@pytest.mark.parametrize(
    "bad",
    [
        "user@",
        "@x.org",
        "a b@c.d",
        "a@@b.c",
        "a@b@c.d",
        "a@b..c",
        "a@-b.c",
        "a@b.c.",
        ".a@b.c",
        "a..b@c.d",
        "nobody",
        "Name <>",
        "Name <a@b.c",
        "ü@x.org",
        '"unterminated <a@b.c>',
        "",
        " , ",
    ],
)
def test_parse_addresses_rejects(bad):
    with pytest.raises(errors.BadInputError) as info:
        compose.parse_addresses([bad], "--to")
    assert "--to" in info.value.message
    if bad.strip(" ,"):
        assert bad in info.value.message or repr(bad)[1:-1] in info.value.message


@pytest.mark.parametrize("value", ["a@x.org\r\nBcc: evil@x.org", "a@x.org\nX: y", "Evil\r <a@x.org>"])
def test_parse_addresses_refuses_line_breaks(value):
    with pytest.raises(errors.BadInputError, match="line break"):
        compose.parse_addresses([value], "--cc")


def test_check_header_value():
    assert compose.check_header_value("Grüße\tok", "--subject") == "Grüße\tok"
    for bad in ("a\rb", "a\nb", "a\r\nBcc: x@y.z"):
        with pytest.raises(errors.BadInputError, match=r"--subject.*line break"):
            compose.check_header_value(bad, "--subject")
    for bad in ("a\u2028b", "a\x00b", "a\x1bb", "a\x85b"):
        with pytest.raises(errors.BadInputError, match="control character"):
            compose.check_header_value(bad, "--subject")


# ---------------------------------------------------------------------------
# build_message
# ---------------------------------------------------------------------------

SENDER = ("Älice Ünicode", "alice@example.com")


def _build(**overrides):
    kwargs = dict(
        sender=SENDER,
        to=[("Bob", "bob@example.org")],
        cc=[],
        bcc=[],
        subject="Hello",
        text="Body",
        html=None,
        attachments=[],
    )
    kwargs.update(overrides)
    return compose.build_message(**kwargs)


def _wire(msg) -> bytes:
    return msg.as_bytes(policy=email.policy.SMTP)


def _text(part) -> str:
    # Parsed 7bit/QP text keeps the wire's CRLF; compare with plain newlines.
    return part.get_content().replace("\r\n", "\n")


def test_build_message_headers_and_envelope():
    when = datetime(2026, 11, 27, 10, 1, 2, tzinfo=UTC)
    msg, envelope = _build(
        to=[("Bob", "bob@example.org"), ("", "Carol@Example.net")],
        cc=["Carol <carol@example.net>", "dave@example.net"],
        bcc=[("", "secret@example.net"), ("", "BOB@example.org")],
        subject="Grüße, 日本",
        reply_to=[("Replies", "replies@example.com")],
        date=when,
    )
    assert envelope == ["bob@example.org", "Carol@Example.net", "dave@example.net", "secret@example.net"]
    wire = _wire(msg)
    assert b"secret@example.net" not in wire
    assert b"\r\nBcc:" not in wire and not wire.startswith(b"Bcc:")
    assert wire.isascii()
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    assert b"=?utf-8?" in wire  # non-ASCII subject and names are RFC 2047 encoded
    back = PARSER.parsebytes(wire)
    assert back["Subject"] == "Grüße, 日本"
    assert back["From"].addresses[0].display_name == "Älice Ünicode"
    assert back["From"].addresses[0].addr_spec == "alice@example.com"
    assert [a.addr_spec for a in back["To"].addresses] == ["bob@example.org", "Carol@Example.net"]
    assert [a.addr_spec for a in back["Cc"].addresses] == ["carol@example.net", "dave@example.net"]
    assert back["Reply-To"].addresses[0].addr_spec == "replies@example.com"
    assert back["Date"].datetime == when
    assert back["Message-ID"].startswith("<") and back["Message-ID"].endswith("@example.com>")
    assert back["Bcc"] is None


def test_build_message_defaults():
    before = datetime.now(UTC)
    msg, envelope = _build(sender="alice@example.com", to=["bob@example.org"], text=None)
    back = PARSER.parsebytes(_wire(msg))
    assert envelope == ["bob@example.org"]
    assert before - timedelta(seconds=5) <= back["Date"].datetime <= datetime.now(UTC) + timedelta(seconds=5)
    assert back["Message-ID"].endswith("@example.com>")
    assert back.get_content_type() == "text/plain"
    assert back.get_content() in ("\n", "\r\n")
    msg, _ = _build(message_id_domain="mail.example.net")
    assert msg["Message-ID"].endswith("@mail.example.net>")


def test_build_message_display_name_with_comma():
    msg, _ = _build(to=[("Doe, John", "j@x.org")])
    assert b'To: "Doe, John" <j@x.org>' in _wire(msg)


def test_build_message_bodies():
    msg, _ = _build(text="plain é " + "x" * 200, html="<p>rich</p>")
    back = PARSER.parsebytes(_wire(msg))
    assert back.get_content_type() == "multipart/alternative"
    parts = list(back.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert _text(parts[0]) == "plain é " + "x" * 200 + "\n"
    assert parts[0]["Content-Transfer-Encoding"] != "8bit"
    assert _text(parts[1]) == "<p>rich</p>\n"

    msg, _ = _build(text=None, html="<h1>Title</h1><p>Para <a href='https://x.org'>x</a></p>")
    parts = list(PARSER.parsebytes(_wire(msg)).iter_parts())
    assert _text(parts[0]) == "Title\n\nPara x (https://x.org)\n"
    assert parts[1].get_content_type() == "text/html"

    msg, _ = _build(text="日本語のテキスト" * 50)
    back = PARSER.parsebytes(_wire(msg))
    assert back["Content-Transfer-Encoding"] == "base64"
    assert _text(back) == "日本語のテキスト" * 50 + "\n"


def test_build_message_binary_attachment_round_trip(tmp_path):
    data = random.Random(1234).randbytes(1024 * 1024)
    path = tmp_path / "Données été €.bin"
    path.write_bytes(data)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n")
    tgz = tmp_path / "logs.tar.gz"
    tgz.write_bytes(b"\x1f\x8b\x08\x00")
    msg, _ = _build(text="see attached", html="<p>see attached</p>", attachments=[path, pdf, tgz])
    wire = _wire(msg)
    assert wire.isascii()
    assert b"filename*=utf-8''Donn%C3%A9es%20%C3%A9t%C3%A9%20%E2%82%AC.bin" in wire
    back = PARSER.parsebytes(wire)
    assert back.get_content_type() == "multipart/mixed"
    body, *attachments = back.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [a.get_filename() for a in attachments] == ["Données été €.bin", "report.pdf", "logs.tar.gz"]
    assert [a.get_content_type() for a in attachments] == [
        "application/octet-stream",
        "application/pdf",
        "application/gzip",
    ]
    assert all(a["Content-Transfer-Encoding"] == "base64" for a in attachments)
    assert attachments[0].get_content() == data
    assert attachments[1].get_content() == b"%PDF-1.4\n"
    # And our own reader sees the same thing.
    parsed = readable.parse_for_reading(wire)
    assert parsed.body == "see attached"
    assert [(a.filename, a.size) for a in parsed.attachments] == [
        ("Données été €.bin", len(data)),
        ("report.pdf", 9),
        ("logs.tar.gz", 4),
    ]
    assert parsed.attachments[0].payload == data


def test_build_message_missing_attachment(tmp_path):
    missing = tmp_path / "nope.pdf"
    with pytest.raises(errors.InputFileError, match=re.escape("nope.pdf")):
        _build(attachments=[missing])
    with pytest.raises(errors.InputFileError, match=re.escape(str(tmp_path))):
        _build(attachments=[tmp_path])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_build_message_unreadable_attachment(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x")
    secret.chmod(0)
    with pytest.raises(errors.InputFileError, match=re.escape("secret.txt")):
        _build(attachments=[secret])


def test_build_message_refuses_bad_input(tmp_path):
    with pytest.raises(errors.BadInputError, match="line break"):
        _build(subject="Hi\r\nBcc: evil@x.org")
    with pytest.raises(errors.BadInputError, match="line break"):
        _build(to=[("Evil\nBcc: x@y.z", "a@b.c")])
    with pytest.raises(errors.BadInputError, match="not a valid address"):
        _build(to=[("", "not-an-address")])
    with pytest.raises(errors.UsageError):
        _build(to=[], cc=[], bcc=[])
    weird = tmp_path / "new\nline.txt"
    weird.write_bytes(b"x")
    with pytest.raises(errors.BadInputError, match="line break"):
        _build(attachments=[weird])


def test_build_message_bcc_only():
    msg, envelope = _build(to=[], bcc=[("", "hidden@example.net")])
    wire = _wire(msg)
    assert envelope == ["hidden@example.net"]
    assert b"hidden@example.net" not in wire
    assert msg["To"] is None


def test_message_size_and_check_size(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(5).randbytes(300 * 1024))
    msg, _ = _build(attachments=[big])
    size = compose.message_size(msg)
    assert size == len(_wire(msg))
    assert size > 400 * 1024  # base64 grows it by a third
    assert compose.check_size(msg, 1) == size
    with pytest.raises(errors.BadInputError) as info:
        compose.check_size(msg, 0.25)
    assert str(size) in info.value.message
    assert "0.25 MB" in info.value.message


# ---------------------------------------------------------------------------
# envelope_from_raw
# ---------------------------------------------------------------------------


def test_envelope_from_raw_strips_bcc_only():
    raw = (
        b"From: Alice <alice@example.com>\r\n"
        b"To: bob@example.org, Carol <carol@example.net>\r\n"
        b"Bcc: secret@example.net,\r\n"
        b"  other@example.net\r\n"
        b"Cc: BOB@example.org\r\n"
        b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"BCC: third@example.net\r\n"
        b"X-Raw: \xff\xfe kept\r\n"
        b"\r\n"
        b"Bcc: this line is body text\r\n"
    )
    sender, recipients, data = compose.envelope_from_raw(raw)
    assert sender == "alice@example.com"
    assert recipients == [
        "bob@example.org",
        "carol@example.net",
        "secret@example.net",
        "other@example.net",
        "third@example.net",
    ]
    assert data == (
        b"From: Alice <alice@example.com>\r\n"
        b"To: bob@example.org, Carol <carol@example.net>\r\n"
        b"Cc: BOB@example.org\r\n"
        b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"X-Raw: \xff\xfe kept\r\n"
        b"\r\n"
        b"Bcc: this line is body text\r\n"
    )


def test_envelope_from_raw_lf_and_no_bcc():
    raw = b"From: a@x.org\nTo: b@y.org\nSubject: s\n\nbody\n"
    assert compose.envelope_from_raw(raw) == ("a@x.org", ["b@y.org"], raw)
    assert compose.envelope_from_raw(b"Subject: only\r\n\r\n") == (None, [], b"Subject: only\r\n\r\n")
    headers_only = b"From: a@x.org\r\nBcc: z@y.org\r\n"
    assert compose.envelope_from_raw(headers_only) == ("a@x.org", ["z@y.org"], b"From: a@x.org\r\n")


def test_envelope_from_raw_round_trips_built_message():
    msg, envelope = _build(bcc=[("", "hidden@example.net")])
    wire = msg.as_bytes(policy=email.policy.SMTP)
    sender, recipients, data = compose.envelope_from_raw(wire)
    assert sender == "alice@example.com"
    assert recipients == ["bob@example.org"]  # the built message already has no Bcc
    assert data == wire
    assert envelope == ["bob@example.org", "hidden@example.net"]
