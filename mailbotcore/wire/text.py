"""Text from outside (headers, server replies, file names) made safe to show, log or pass on.

Pure functions. Applied after decoding, so whatever a codec produced, no lone surrogate,
C0/C1 control or bidi override/isolate reaches a terminal, a JSON document or an
environment variable.
"""

from __future__ import annotations

import re

# Bidi embeddings, overrides and isolates (and the Arabic letter mark): they reorder what is
# shown, so "invoice\u202efdp.exe" would display as "invoiceexe.pdf".
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SURROGATES = re.compile("[\ud800-\udfff]")
# Every C0/C1 control, DEL, the Unicode line/paragraph separators and the bidi controls.
_LINE_UNSAFE = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]} | {
    ord(c): None for c in BIDI_CONTROLS
}
# Multi-line text keeps tab and newline.
_BODY_UNSAFE = {c: r for c, r in _LINE_UNSAFE.items() if c not in (0x09, 0x0A)}


def without_surrogates(text: str) -> str:
    """Lone surrogates (a codec's or a parser's leftovers) become U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def clean_line(text: str) -> str:
    """One display line: controls become spaces, bidi controls go, whitespace runs collapse."""
    return " ".join(without_surrogates(text).translate(_LINE_UNSAFE).split())


def clean_multiline(text: str) -> str:
    """Body text: newlines normalised to LF, tab kept, every other control and bidi control removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return without_surrogates(text).translate(_BODY_UNSAFE)


# What JSON (ensure_ascii=False) would write raw although a terminal acts on it or a strict
# UTF-8 encoder refuses it: DEL, C1 controls, line/paragraph separators, bidi controls and
# lone surrogates. JSON itself escapes C0 controls.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff" + BIDI_CONTROLS + "]")


def json_safe(document: str) -> str:
    """A JSON document with the characters above written as ``\\uXXXX`` escapes.

    The data stays exactly what it was for a JSON reader; only a terminal showing the
    document cannot be steered by it."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
