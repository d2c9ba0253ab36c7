"""Unit tests over the hostile-message corpus: nothing raises, the important values decode."""

from __future__ import annotations

import json
import time

import pytest

from mailbotcore.mail import headers as messages
from mailbotcore.mail import readable
from mailbotcore.render import record
from tests.support.corpus import malformed_corpus


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
