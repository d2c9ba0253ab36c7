"""Malformed and exotic messages for robustness tests.

Every item is a complete RFC 822 byte string that a Maildir delivery accepts (the
integration test seeds them into Dovecot); most are deliberately wrong in one way.
"""

from __future__ import annotations

import base64

DATE = b"Date: Fri, 27 Nov 2026 10:01:02 +0000\r\n"
FROM = b"From: Alice Example <alice@example.com>\r\n"
TO = b"To: bob@example.org\r\n"


def _b(text: str, charset: str) -> bytes:
    """An RFC 2047 B-encoded word."""
    return b"=?" + charset.encode() + b"?B?" + base64.b64encode(text.encode(charset)) + b"?="


def _simple(name: str, headers: bytes, body: bytes = b"Body text.\r\n") -> tuple[str, bytes]:
    return name, headers + b"\r\n" + body


def _with_subject(name: str, subject: bytes) -> tuple[str, bytes]:
    return _simple(name, DATE + FROM + TO + b"Subject: " + subject + b"\r\n")


def _header_charsets() -> list[tuple[str, bytes]]:
    return [
        _with_subject("utf8_b_subject", _b("Grüße aus Köln", "utf-8")),
        _with_subject("utf8_q_subject", b"=?UTF-8?Q?Caf=C3=A9_cr=C3=A8me_br=C3=BBl=C3=A9e?="),
        _with_subject("iso8859_1_subject", b"=?iso-8859-1?Q?Andr=E9_a_r=E9pondu?="),
        _with_subject("windows_1252_subject", b"=?windows-1252?Q?=93Quoted=94_price_=80100?="),
        _with_subject("koi8_r_subject", _b("Привет мир", "koi8-r")),
        _with_subject("gb2312_subject", _b("你好世界", "gb2312")),
        _with_subject("shift_jis_subject", _b("こんにちは", "shift_jis")),
        _with_subject("iso_2022_jp_subject", _b("日本語の件名", "iso-2022-jp")),
        _with_subject("unknown_charset_subject", b"=?x-unknown?Q?hello_w=F6rld?="),
        _with_subject("bad_base64_word", b"=?utf-8?B?SGVsbG8*&^%?= tail"),
        _with_subject("truncated_encoded_word", b"=?utf-8?Q?unterminated_word"),
        # One UTF-8 character split across two encoded words, as some mailers do.
        _with_subject("split_multibyte_words", b"=?utf-8?B?4oI=?= =?utf-8?B?rCBwcmljZQ==?="),
        _with_subject("emoji_subject", _b("🎉 Party 👨‍👩‍👧 time", "utf-8")),
        _with_subject("rtl_subject", _b("שלום עולם مرحبا", "utf-8")),
        _with_subject("control_chars_subject", b"=?utf-8?Q?evil=1B[2J=0D=0AInjected:_yes=07?="),
    ]


def _raw_headers() -> list[tuple[str, bytes]]:
    return [
        _with_subject("raw_8bit_utf8_subject", "Ünïcödé raw subject".encode()),
        _with_subject("raw_8bit_latin1_subject", "Café crème".encode("latin-1")),
        _simple(
            "raw_8bit_from",
            DATE + "From: Jürgen Müller <jm@example.de>\r\n".encode() + TO + b"Subject: x\r\n",
        ),
        _simple("no_subject", DATE + FROM + TO),
        _simple("no_from", DATE + TO + b"Subject: nobody sent this\r\n"),
        _simple("no_date", FROM + TO + b"Subject: timeless\r\n"),
        _simple("only_one_header", b"Subject: lonely header\r\n"),
        _simple("bad_date_yesterday", b"Date: yesterday\r\n" + FROM + TO + b"Subject: vague\r\n"),
        _simple("bad_date_day32", b"Date: Mon, 32 Foo 2020 25:61:00 +9999\r\n" + FROM + TO + b"Subject: x\r\n"),
        _with_subject("long_subject_10k", b"A" * 10240),
        _with_subject("huge_folded_subject", b"\r\n".join(b" word%d" % i for i in range(100))),
        _simple(
            "huge_folded_to",
            DATE
            + FROM
            + b"Subject: many\r\nTo: "
            + b",\r\n ".join(b"r%d@example.org" % i for i in range(100))
            + b"\r\n",
        ),
        _simple(
            "duplicate_subject_from",
            DATE + FROM + b"From: Mallory <mallory@example.net>\r\n" + TO + b"Subject: first\r\nSubject: second\r\n",
        ),
        _with_subject("whitespace_only_subject", b"   \t "),
        _simple("address_no_domain", DATE + b"From: john\r\nTo: jane@\r\nSubject: x\r\n"),
        _simple("garbage_addresses", DATE + b"From: <<<@@@>>>\r\nTo: ,,,;;;\r\nSubject: x\r\n"),
        _simple(
            "encoded_display_name",
            DATE + b"From: =?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\r\n" + TO + b"Subject: x\r\n",
        ),
        _simple(
            "quoted_comma_name",
            DATE + b'From: "Doe, John" <john@example.com>\r\n' + TO + b"Subject: x\r\n",
        ),
    ]


def _multipart(name: str, content_type: bytes, parts: list[bytes], boundary: bytes = b"b0") -> tuple[str, bytes]:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts) + b"--" + boundary + b"--\r\n"
    head = DATE + FROM + TO + b"Subject: " + name.encode() + b"\r\nMIME-Version: 1.0\r\n"
    return name, head + b"Content-Type: " + content_type + b'; boundary="' + boundary + b'"\r\n\r\n' + body


def _nested(depth: int) -> bytes:
    if depth == 0:
        return b"Content-Type: text/plain; charset=utf-8\r\n\r\ndeepest text\r\n"
    boundary = b"n%d" % depth
    return (
        b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        b"--" + boundary + b"\r\n" + _nested(depth - 1) + b"\r\n--" + boundary + b"--\r\n"
    )


def _mime() -> list[tuple[str, bytes]]:
    inner = DATE + b"From: inner@example.com\r\nSubject: Inner message\r\n\r\nInner body.\r\n"
    return [
        _simple(
            "nested_multipart_5_deep",
            DATE + FROM + TO + b"Subject: nested\r\nMIME-Version: 1.0\r\n" + _nested(5).split(b"\r\n\r\n", 1)[0],
            _nested(5).split(b"\r\n\r\n", 1)[1],
        ),
        _multipart(
            "message_rfc822",
            b"multipart/mixed",
            [
                b"Content-Type: text/plain\r\n\r\nSee attached.",
                b"Content-Type: message/rfc822\r\n\r\n" + inner,
            ],
        ),
        _simple(
            "missing_boundary",
            DATE + FROM + TO + b"Subject: no boundary\r\nContent-Type: multipart/mixed\r\n",
            b"--xyz\r\nContent-Type: text/plain\r\n\r\nlost part\r\n--xyz--\r\n",
        ),
        _simple(
            "boundary_never_appears",
            DATE + FROM + TO + b'Subject: absent\r\nContent-Type: multipart/mixed; boundary="nope"\r\n',
            b"just text, no parts\r\n",
        ),
        _simple(
            "bad_transfer_encoding",
            DATE + FROM + TO + b"Subject: bogus cte\r\nContent-Transfer-Encoding: x-bogus\r\n",
            b"text under a made-up encoding\r\n",
        ),
        _simple(
            "broken_base64_body",
            DATE + FROM + TO + b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n",
            b"SGVsbG8gd29y!!!bGQ=\r\nnot base64 at all ***\r\n",
        ),
        _simple(
            "unknown_body_charset",
            DATE + FROM + TO + b"Subject: charset\r\nContent-Type: text/plain; charset=x-made-up\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n",
            "Grüße\r\n".encode("latin-1"),
        ),
        _simple("nul_bytes_in_body", DATE + FROM + TO + b"Subject: nul\r\n", b"before\x00after\r\n"),
        _simple("very_long_line", DATE + FROM + TO + b"Subject: long line\r\n", b"x" * 100_000),
        (
            "lf_only_line_endings",
            (DATE + FROM + TO + b"Subject: unix\r\n\r\nline one\r\nline two\r\n").replace(b"\r\n", b"\n"),
        ),
        _multipart(
            "html_only",
            b"multipart/alternative",
            [
                b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>HTML</b> &amp; <a href='https://x.org'>link</a></p>"
            ],
        ),
        _multipart(
            "attachment_path_traversal",
            b"multipart/mixed",
            [
                b"Content-Type: text/plain\r\n\r\nsee file",
                b"Content-Type: application/octet-stream\r\n"
                b'Content-Disposition: attachment; filename="../../etc/passwd"\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\ncm9vdDp4OjA6MDo=",
            ],
        ),
        _multipart(
            "rfc2231_filename",
            b"multipart/mixed",
            [
                b"Content-Type: text/plain\r\n\r\nrates attached",
                b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
                b" filename*0*=utf-8''%E2%82%AC%20rates;\r\n filename*1*=%20%C3%A9t%C3%A9.pdf\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK",
            ],
        ),
    ]


# Python codecs that are not text encodings of mail, or are Python-specific: a charset label
# naming one must be treated as unknown (sniffed), never run.
HOSTILE_CHARSETS = (
    "unicode_escape",
    "raw_unicode_escape",
    "base64",
    "rot13",
    "uu",
    "zlib",
    "hex",
    "quopri",
    "bz2",
    "idna",
    "punycode",
    "undefined",
    "charmap",
)


def _hostile() -> list[tuple[str, bytes]]:
    """Hostile charsets, surrogates and bidi/terminal controls (issue 11 items 1 and 11)."""
    items = [
        _with_subject(f"{name}_charset_subject", b"=?" + name.encode() + b"?q?=5Cud800_x?=")
        for name in HOSTILE_CHARSETS
    ]
    items += [
        _simple(
            f"{name}_charset_body",
            DATE + FROM + TO + b"Subject: " + name.encode() + b" body\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=" + name.encode() + b"\r\nContent-Transfer-Encoding: 8bit\r\n",
            b"\\ud800 \\x1b[2J \\u202e body\r\n",
        )
        for name in HOSTILE_CHARSETS
    ]
    items += [
        # UTF-7 is a real charset, and its decoder yields lone surrogates for "+2AA-".
        _with_subject("utf7_lone_surrogate_subject", b"=?utf-7?q?a+2AA-b?="),
        _simple(
            "utf7_lone_surrogate_body",
            DATE + FROM + TO + b"Subject: utf7 body\r\nContent-Type: text/plain; charset=utf-7\r\n",
            b"a+2AA-b\r\n",
        ),
        _with_subject("utf16_lone_surrogate_word", b"=?utf-16-le?b?" + base64.b64encode(b"a\x00\x00\xd8b\x00") + b"?="),
        _with_subject("raw_surrogate_bytes_subject", b"sur\xed\xa0\x80rogate"),
        _with_subject("bidi_override_subject", _b("invoice\u202efdp.exe", "utf-8")),
        _with_subject("bidi_isolates_subject", _b("a\u2066b\u2067c\u2068d\u2069e\u061cf\u200eg\u200fh", "utf-8")),
        _with_subject("c1_csi_subject", _b("c1\u009b2J\u0085next", "utf-8")),
        _with_subject("osc52_subject", b"=?utf-8?Q?clip=1B]52;c;ZXZpbA=3D=3D=07board?="),
        _simple(
            "bidi_display_name",
            DATE
            + b"From: "
            + _b("Bank\u202e moc.evil", "utf-8")
            + b" <phish@example.net>\r\n"
            + TO
            + b"Subject: x\r\n",
        ),
        _simple(
            "bidi_body",
            DATE + FROM + TO + b"Subject: bidi body\r\nContent-Type: text/plain; charset=utf-8\r\n",
            "left \u202eright\u202c \u2066iso\u2069 \x1b]52;c;eA==\x07 \u009b2J end\r\n".encode(),
        ),
        _multipart(
            "bidi_attachment_name",
            b"multipart/mixed",
            [
                b"Content-Type: text/plain\r\n\r\ninvoice attached",
                b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
                b" filename*=utf-8''invoice%E2%80%AEfdp.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVo=",
            ],
        ),
        _multipart(
            "unicode_escape_attachment_name",
            b"multipart/mixed",
            [
                b"Content-Type: text/plain\r\n\r\nsee name",
                b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n"
                b" filename*=unicode_escape''%5Cud800%5Cu202etxt.exe\r\nContent-Transfer-Encoding: base64\r\n\r\nTVo=",
            ],
        ),
        _multipart(
            "encoded_word_attachment_name",
            b"multipart/mixed",
            [
                b"Content-Type: text/plain\r\n\r\nsee name",
                b"Content-Type: application/octet-stream\r\n"
                b'Content-Disposition: attachment; filename="=?unicode_escape?q?=5Cud800.bin?="\r\n'
                b"Content-Transfer-Encoding: base64\r\n\r\nTVo=",
            ],
        ),
    ]
    return items


def malformed_corpus() -> list[tuple[str, bytes]]:
    """(name, raw message) pairs: malformed or exotic messages, names unique."""
    return _header_charsets() + _raw_headers() + _mime() + _hostile()
