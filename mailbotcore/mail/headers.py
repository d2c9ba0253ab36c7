"""Decoding what arrives: header values in any charset, dates, and the one-line summaries
``list`` shows. Pure functions, no network.

Everything here takes hostile input (spam, broken mailers, other people's bugs) and must
never raise; it shows what can be shown and replaces control characters so a subject
cannot write escape sequences or fake lines into the terminal. Reading a whole message is
in ``readable.py``; composing one is in ``compose.py``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import email.errors
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from email.message import Message

from mailbotcore.wire.text import clean_line, clean_multiline, without_surrogates

# Exceptions the email package has been seen to raise on hostile input; caught only
# where the contract is "never raise".
PARSE_ERRORS = (
    ValueError,
    TypeError,
    LookupError,
    IndexError,
    AttributeError,
    UnicodeError,
    email.errors.MessageError,
)

# ---------------------------------------------------------------------------
# Text decoding and cleaning
# ---------------------------------------------------------------------------

# Labels mailers use for a subset of what they actually send (the WHATWG mappings).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-2022-jp": "iso2022_jp_2",
    "tis-620": "cp874",
}

# Charsets that promise ASCII but often carry 8-bit text: sniff instead of trusting them.
_SNIFF_CHARSETS = {"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "unknown"}

# Codecs Python marks as text encodings that are no charset of mail: they interpret escape
# sequences or punycode ("unicode_escape" turns the text "\\ud800" into a lone surrogate),
# or exist only to fail. A label naming one is treated as unknown.
_NOT_MAIL_CHARSETS = {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined", "charmap"}

_ESCAPED_SURROGATES = re.compile("[\udc80-\udcff]")
OTHER_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")
FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")


def _decode_sniffed(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8 if it is valid, else Windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def text_codec(charset: str | None) -> str | None:
    """The Python codec for a mail charset label, or None when it names no text encoding.

    Only codecs ``codecs`` marks as text encodings (bytes to str) count, so "base64",
    "rot13", "zlib" or "uu" are unknown; so are the Python-specific ones above.
    """
    name = (charset or "").strip().strip('"').lower()
    if name in _SNIFF_CHARSETS:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CHARSETS:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, falling back to sniffing when it is unknown.

    The result never holds a lone surrogate (a UTF-7 decoder can produce them).
    """
    name = text_codec(charset)
    if name is None:
        return _decode_sniffed(data)
    try:
        return without_surrogates(data.decode(name, errors="replace"))
    except (LookupError, UnicodeError, ValueError, TypeError):
        return _decode_sniffed(data)


def from_surrogates(value: str) -> str:
    """Turn a str holding surrogate-escaped raw bytes (as the email parser stores 8-bit headers) into text."""
    value = OTHER_SURROGATES.sub("\ufffd", value)
    if not _ESCAPED_SURROGATES.search(value):
        return value
    return _decode_sniffed(value.encode("utf-8", "surrogateescape"))


def clean_text(text: str) -> str:
    """One display line (``wire.text.clean_line``): no controls, bidi controls or surrogates."""
    return clean_line(text)


def clean_body(text: str) -> str:
    """Body text for a terminal (``wire.text.clean_multiline``): LF newlines, tab, nothing else unsafe."""
    return clean_multiline(text)


def _b_decode(text: str) -> bytes:
    # Lenient: drop non-alphabet characters, repair padding, drop a dangling sextet.
    chars = re.sub(r"[^A-Za-z0-9+/]", "", text)
    if len(chars) % 4 == 1:
        chars = chars[:-1]
    chars += "=" * (-len(chars) % 4)
    try:
        return base64.b64decode(chars)
    except binascii.Error:
        return b""


def _q_decode(text: str) -> bytes:
    return binascii.a2b_qp(text.encode("utf-8", "replace"), header=True)


def _decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words anywhere in text (lenient, like common mail clients).

    Adjacent words in the same charset are joined as bytes before decoding, because
    mailers split multi-byte characters across words.
    """
    out: list[str] = []
    pending_charset: str | None = None
    pending = b""
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        charset = match.group(1).lower()
        adjacent = pending_charset is not None and not gap.strip()
        if pending_charset is not None and not (adjacent and charset == pending_charset):
            out.append(decode_bytes(pending, pending_charset))
            pending_charset, pending = None, b""
        if not adjacent:
            out.append(gap)
        data = _b_decode(match.group(3)) if match.group(2) in "bB" else _q_decode(match.group(3))
        pending_charset = charset
        pending += data
        pos = match.end()
    if pending_charset is not None:
        out.append(decode_bytes(pending, pending_charset))
    out.append(text[pos:])
    return "".join(out)


def decode_header(value: str | bytes | None) -> str:
    """Decode a raw header value to one display line; never raises.

    Handles RFC 2047 words in any charset, raw 8-bit bytes (UTF-8, else Windows-1252),
    folding, and replaces control characters with spaces (terminal safety).
    """
    if value is None:
        return ""
    text = _decode_sniffed(value) if isinstance(value, bytes) else from_surrogates(str(value))
    text = FOLD.sub("", text)
    return clean_text(_decode_words(text))


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

_MONTHS = {
    m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
}
_INTERNALDATE = re.compile(
    r"(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{1,2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})",
)


def parse_internaldate(value: bytes | str) -> datetime | None:
    """Parse an IMAP INTERNALDATE ("27-Nov-2026 10:01:02 +0000"); None if it does not parse."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    match = _INTERNALDATE.search(value)
    if not match:
        return None
    day, mon, year, hour, minute, sec, sign, tzh, tzm = match.groups()
    month = _MONTHS.get(mon.lower())
    if month is None:
        return None
    offset = timedelta(hours=int(tzh), minutes=int(tzm)) * (-1 if sign == "-" else 1)
    try:
        return datetime(int(year), month, int(day), int(hour), int(minute), int(sec), tzinfo=timezone(offset))
    except (ValueError, OverflowError):
        return None


def _parse_date(raw: str | None) -> datetime | None:
    """Parse a Date header; None when missing or unparseable. Naive (-0000) means UTC."""
    if not raw:
        return None
    try:
        from email.utils import parsedate_to_datetime

        parsed = parsedate_to_datetime(decode_header(raw))
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


# ---------------------------------------------------------------------------
# Summaries (the "list" command)
# ---------------------------------------------------------------------------


@dataclass
class MessageSummary:
    uid: int
    date: datetime | None
    from_: str
    to: str
    subject: str
    size: int
    flags: list[str] = field(default_factory=list)
    message_id: str | None = None
    from_address: str | None = None

    @property
    def seen(self) -> bool:
        # IMAP flags are case-insensitive.
        return any(flag.lower() == "\\seen" for flag in self.flags)

    @property
    def from_header(self) -> str:
        """``Name <address>`` (or whichever of the two there is), for a handler's environment."""
        if self.from_address and self.from_ and self.from_ != self.from_address:
            return f"{self.from_} <{self.from_address}>"
        return self.from_address or self.from_


def __getattr__(name: str) -> Any:
    """``HEADER_PARSER`` is built on first use: email.policy and its header registry cost a cron
    run that parses no message (a nothing-new ``fetch``) several milliseconds of CPU."""
    if name == "HEADER_PARSER":
        return _header_parser()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_PARSER: list[Any] = []


def _header_parser() -> Any:
    if not _PARSER:
        import email.policy
        from email.parser import BytesParser

        _PARSER.append(BytesParser(policy=email.policy.default))
    return _PARSER[0]


def first_headers(msg: Message) -> dict[str, str]:
    """First occurrence of each header, raw (undecoded) value, keyed by lowercase name.

    raw_items() bypasses the policy's structured header parsing, which can raise on garbage.
    """
    first: dict[str, str] = {}
    for name, value in msg.raw_items():
        first.setdefault(name.lower(), str(value))
    return first


def _address_pairs(raw: str) -> list[tuple[str, str]] | None:
    """(decoded name, address) pairs, or None when the header does not parse as addresses."""
    from email.utils import getaddresses

    pairs = getaddresses([FOLD.sub("", raw)])
    if not pairs or any(not name and not addr for name, addr in pairs):
        return None
    return [(decode_header(name), decode_header(addr)) for name, addr in pairs]


def _sender(raw: str | None) -> tuple[str, str | None]:
    """(what to show: the name, else the address; the address, when there is one)."""
    if raw is None:
        return "", None
    pairs = _address_pairs(raw)
    if not pairs:
        return decode_header(raw), None
    name, addr = pairs[0]
    return name or addr, addr if "@" in addr else None


def _recipients_display(raw: str | None) -> str:
    if raw is None:
        return ""
    pairs = _address_pairs(raw)
    if not pairs:
        return decode_header(raw)
    return ", ".join(addr or name for name, addr in pairs)


def summarize(
    uid: int,
    flags: list[str],
    size: int,
    header_block: bytes,
    internaldate: datetime | None = None,
) -> MessageSummary:
    """Summarise a header block for listing; never raises on malformed headers.

    The first of duplicate headers wins. An unparseable or missing Date falls back to
    ``internaldate`` (the server's arrival time), else None. ``to`` lists addresses.
    """
    headers = first_headers(_header_parser().parsebytes(header_block, headersonly=True))
    message_id = decode_header(headers.get("message-id")) or None
    sender, sender_address = _sender(headers.get("from"))
    return MessageSummary(
        uid=uid,
        date=_parse_date(headers.get("date")) or _aware(internaldate),
        from_=sender,
        from_address=sender_address,
        to=_recipients_display(headers.get("to")),
        subject=decode_header(headers.get("subject")),
        size=size,
        flags=[flag.decode("ascii", "replace") if isinstance(flag, bytes) else str(flag) for flag in flags],
        message_id=message_id,
    )


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Terminal columns text occupies (wide East Asian characters count as two)."""
    return sum(_char_width(ch) for ch in text)


def _fit(text: str, width: int) -> str:
    """Cut text to at most width columns, ending with "…" when cut."""
    if width <= 0:
        return ""
    if display_width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = _char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


_SENDER_COLUMNS = 24


def _local_short(date: datetime | None) -> str:
    if date is None:
        return " " * 16
    # Out of the platform's range: show it in its own zone.
    with contextlib.suppress(OverflowError, OSError, ValueError):
        date = date.astimezone()
    return date.strftime("%Y-%m-%d %H:%M")


def format_list_line(summary: MessageSummary, width: int | None, *, show_uid: bool = True) -> str:
    """One listing line: unread mark, UID, local date, sender, subject.

    With ``width`` the sender column is cut to 24 columns and the line to ``width``
    columns (wide characters count double, "…" marks a cut); with None nothing is cut.
    """
    mark = " " if summary.seen else "*"
    sender = clean_text(summary.from_) or "(unknown sender)"
    if width is not None:
        sender = _fit(sender, _SENDER_COLUMNS)
    subject = clean_text(summary.subject) or "(no subject)"
    uid = f"{summary.uid:>6} " if show_uid else ""
    line = f"{mark} {uid}{_local_short(summary.date)}  {_pad(sender, _SENDER_COLUMNS)}  {subject}"
    return line if width is None else _fit(line, width)
