"""IMAP IDLE (RFC 2177) on the wire: the lines a server sends while a client idles.

Pure functions, so the parsing is tested without a server: what kind of line it is
(continuation, untagged EXISTS/EXPUNGE/BYE..., the tagged end of the command), and the
back-off Exchange suggests when it throttles (``Request is throttled. Suggested Backoff
Time: 4200 milliseconds``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNTAGGED = re.compile(rb"^\* (?:(\d+) )?([A-Za-z]+)\b ?(.*)$", re.S)
_THROTTLED = re.compile(r"Suggested\s+Backoff\s+Time:\s*(\d+)\s*milli", re.I)
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


@dataclass(frozen=True)
class Line:
    """One response line. ``kind``: ``continuation``, ``tagged`` or the untagged keyword
    upper-cased (``EXISTS``, ``EXPUNGE``, ``BYE``, ``OK``, ``FETCH``, ...)."""

    kind: str
    number: int | None = None
    text: str = ""
    status: str | None = None  # tagged: OK / NO / BAD


def parse_line(line: bytes, tag: bytes | None = None) -> Line:
    """Classify one server line (CRLF optional). A line that fits nothing is ``kind='unknown'``."""
    body = line.rstrip(b"\r\n")
    if body.startswith(b"+"):
        return Line("continuation", text=_text(body[1:].strip()))
    if tag is not None and body.startswith(tag + b" "):
        rest = body[len(tag) + 1 :]
        status, _, text = rest.partition(b" ")
        return Line("tagged", text=_text(text), status=status.decode("ascii", "replace").upper())
    match = _UNTAGGED.match(body)
    if match is None:
        return Line("unknown", text=_text(body))
    number = int(match.group(1)) if match.group(1) and len(match.group(1)) <= 10 else None
    return Line(match.group(2).decode("ascii").upper(), number, _text(match.group(3)))


def literal_size(line: bytes) -> int | None:
    """The size of the literal announced at the end of ``line`` (``{123}``), else None."""
    match = _LITERAL.search(line.rstrip(b"\r\n"))
    return int(match.group(1)) if match and len(match.group(1)) <= 10 else None


def suggested_backoff(text: str) -> float | None:
    """Exchange's throttling hint in seconds, from a BYE/NO text, else None."""
    match = _THROTTLED.search(text)
    if match is None or len(match.group(1)) > 9:
        return None
    return int(match.group(1)) / 1000.0


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
