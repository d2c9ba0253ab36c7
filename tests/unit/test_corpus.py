"""Unit tests over the hostile-message corpus: nothing raises, the important values decode."""

from __future__ import annotations

import json
import time

import pytest

from mailbotcore.mail import headers as messages
from mailbotcore.mail import readable
from mailbotcore.render import record
from tests.support.corpus import HOSTILE_CHARSETS, malformed_corpus


@pytest.fixture
def utc_tz(monkeypatch):
    """Run with the local time zone set to UTC so local-time output is exact."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _has_control(text: str, keep: str = "") -> bool:
    """A C0/C1 control, DEL, line separator, bidi control or lone surrogate (``keep`` allowed)."""
    return any(
        (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" or c in _BIDI or 0xD800 <= ord(c) < 0xE000)
        and c not in keep
        for c in text
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
    for text in (summary.from_, summary.to, summary.subject, summary.from_address or "", summary.from_header):
        assert not _has_control(text)
    json.dumps(record(summary), ensure_ascii=False).encode("utf-8")  # strict: no lone surrogate
    line = messages.format_list_line(summary, 80)
    assert messages.display_width(line) <= 80
    line.encode("utf-8")
    parsed = readable.parse_for_reading(raw)
    out = readable.format_readable(parsed)
    out.encode("utf-8")
    assert not _has_control(out, keep="\n\t")
    assert not _has_control(parsed.body, keep="\n\t")
    for header, value in parsed.headers:
        assert not _has_control(value), header
    for att in parsed.attachments:
        assert not _has_control(att.filename)
        safe = readable.safe_filename(att.filename, "fallback")
        assert "/" not in safe and safe not in ("", ".", "..")
        assert not _has_control(safe)
        safe.encode("utf-8")


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


@pytest.mark.parametrize("charset", HOSTILE_CHARSETS)
def test_corpus_non_text_codecs_are_unknown_charsets(charset):
    """A label naming a Python codec that is no mail text encoding is sniffed, never run."""
    raw = _corpus_item(f"{charset}_charset_subject")
    assert messages.summarize(1, [], 1, _header_block(raw)).subject == "\\ud800 x"
    body = readable.parse_for_reading(_corpus_item(f"{charset}_charset_body")).body
    assert body == "\\ud800 \\x1b[2J \\u202e body"


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("utf7_lone_surrogate_subject", "a\ufffdb"),
        ("utf16_lone_surrogate_word", "a\ufffdb"),
        ("raw_surrogate_bytes_subject", "surí €rogate"),
        ("bidi_override_subject", "invoicefdp.exe"),
        ("bidi_isolates_subject", "abcdefgh"),
        ("c1_csi_subject", "c1 2J next"),
        ("osc52_subject", "clip ]52;c;ZXZpbA== board"),
    ],
)
def test_corpus_surrogates_and_bidi_are_removed_after_decoding(name, subject):
    raw = _corpus_item(name)
    assert messages.summarize(1, [], 1, _header_block(raw)).subject == subject
    assert ("Subject", subject) in readable.parse_for_reading(raw).headers


def test_corpus_bidi_in_names_bodies_and_attachment_names():
    s = messages.summarize(1, [], 1, _header_block(_corpus_item("bidi_display_name")))
    assert (s.from_, s.from_address, s.from_header) == (
        "Bank moc.evil",
        "phish@example.net",
        "Bank moc.evil <phish@example.net>",
    )
    body = readable.parse_for_reading(_corpus_item("bidi_body")).body
    assert body == "left right iso  ]52;c;eA==   2J end"
    utf7 = readable.parse_for_reading(_corpus_item("utf7_lone_surrogate_body")).body
    assert utf7 == "a\ufffdb"
    [att] = readable.parse_for_reading(_corpus_item("bidi_attachment_name")).attachments
    assert att.filename == "invoicefdp.exe"  # shown as saved: no "invoiceexe.pdf" on screen
    assert readable.safe_filename(att.filename, "x") == "invoicefdp.exe"
    [att] = readable.parse_for_reading(_corpus_item("unicode_escape_attachment_name")).attachments
    assert att.filename == "\\ud800\\u202etxt.exe"
    [att] = readable.parse_for_reading(_corpus_item("encoded_word_attachment_name")).attachments
    assert att.filename == "\\ud800.bin"


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
