"""Mail wire formats: decoding what arrives, encoding what leaves. Pure functions, no network.

Reading side: everything here takes hostile input (spam, broken mailers, other people's
bugs) and must never raise; it shows what can be shown and replaces control characters so
a subject cannot write escape sequences or fake lines into the terminal.

Sending side: everything here takes user input and refuses (``errors.BadInputError``,
``errors.InputFileError``) rather than guessing, because a wrong guess sends mail.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.errors
import email.policy
import email.utils
import mimetypes
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

import errors

# Exceptions the email package has been seen to raise on hostile input; caught only
# where the contract is "never raise".
_PARSE_ERRORS = (
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

# Every C0/C1 control, DEL and the Unicode line/paragraph separators become a space.
_CONTROL_TO_SPACE = {c: " " for c in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]}
# Same for bodies, but keep tab and newline.
_BODY_CONTROLS = {c: r for c, r in _CONTROL_TO_SPACE.items() if c not in (0x09, 0x0A)}

_ESCAPED_SURROGATES = re.compile("[\udc80-\udcff]")
_OTHER_SURROGATES = re.compile("[\ud800-\udc7f\udd00-\udfff]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?]*)\?=")


def _decode_sniffed(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8 if it is valid, else Windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, falling back to sniffing when it is unknown."""
    name = (charset or "").strip().strip('"').lower()
    if name in _SNIFF_CHARSETS:
        return _decode_sniffed(data)
    name = _CHARSET_ALIASES.get(name, name)
    try:
        return data.decode(name, errors="replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        # Unknown or non-text codec ("base64", "undefined"...).
        return _decode_sniffed(data)


def _from_surrogates(value: str) -> str:
    """Turn a str holding surrogate-escaped raw bytes (as the email parser stores 8-bit headers) into text."""
    value = _OTHER_SURROGATES.sub("\ufffd", value)
    if not _ESCAPED_SURROGATES.search(value):
        return value
    return _decode_sniffed(value.encode("utf-8", "surrogateescape"))


def _clean(text: str) -> str:
    """One display line: controls become spaces, whitespace runs collapse."""
    return " ".join(text.translate(_CONTROL_TO_SPACE).split())


def _clean_body(text: str) -> str:
    """Body text for a terminal: normalised newlines, no escape sequences or NULs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.translate(_BODY_CONTROLS)


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
            out.append(_decode_bytes(pending, pending_charset))
            pending_charset, pending = None, b""
        if not adjacent:
            out.append(gap)
        data = _b_decode(match.group(3)) if match.group(2) in "bB" else _q_decode(match.group(3))
        pending_charset = charset
        pending += data
        pos = match.end()
    if pending_charset is not None:
        out.append(_decode_bytes(pending, pending_charset))
    out.append(text[pos:])
    return "".join(out)


def decode_header(value: str | bytes | None) -> str:
    """Decode a raw header value to one display line; never raises.

    Handles RFC 2047 words in any charset, raw 8-bit bytes (UTF-8, else Windows-1252),
    folding, and replaces control characters with spaces (terminal safety).
    """
    if value is None:
        return ""
    text = _decode_sniffed(value) if isinstance(value, bytes) else _from_surrogates(str(value))
    text = _FOLD.sub("", text)
    return _clean(_decode_words(text))


# ---------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
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
        parsed = email.utils.parsedate_to_datetime(decode_header(raw))
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

    @property
    def seen(self) -> bool:
        # IMAP flags are case-insensitive.
        return any(flag.lower() == "\\seen" for flag in self.flags)

    def to_json(self) -> dict:
        return {
            "uid": self.uid,
            "date": self.date.isoformat() if self.date else None,
            "from": self.from_,
            "to": self.to,
            "subject": self.subject,
            "size": self.size,
            "flags": list(self.flags),
            "seen": self.seen,
            "message_id": self.message_id,
        }


_HEADER_PARSER = BytesParser(policy=email.policy.default)


def _first_headers(msg: Message) -> dict[str, str]:
    """First occurrence of each header, raw (undecoded) value, keyed by lowercase name.

    raw_items() bypasses the policy's structured header parsing, which can raise on garbage.
    """
    first: dict[str, str] = {}
    for name, value in msg.raw_items():
        first.setdefault(name.lower(), str(value))
    return first


def _address_pairs(raw: str) -> list[tuple[str, str]] | None:
    """(decoded name, address) pairs, or None when the header does not parse as addresses."""
    pairs = email.utils.getaddresses([_FOLD.sub("", raw)])
    if not pairs or any(not name and not addr for name, addr in pairs):
        return None
    return [(decode_header(name), decode_header(addr)) for name, addr in pairs]


def _sender_display(raw: str | None) -> str:
    if raw is None:
        return ""
    pairs = _address_pairs(raw)
    if not pairs:
        return decode_header(raw)
    name, addr = pairs[0]
    return name or addr


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
    headers = _first_headers(_HEADER_PARSER.parsebytes(header_block, headersonly=True))
    message_id = decode_header(headers.get("message-id")) or None
    return MessageSummary(
        uid=uid,
        date=_parse_date(headers.get("date")) or _aware(internaldate),
        from_=_sender_display(headers.get("from")),
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
    sender = _clean(summary.from_) or "(unknown sender)"
    if width is not None:
        sender = _fit(sender, _SENDER_COLUMNS)
    subject = _clean(summary.subject) or "(no subject)"
    uid = f"{summary.uid:>6} " if show_uid else ""
    line = f"{mark} {uid}{_local_short(summary.date)}  {_pad(sender, _SENDER_COLUMNS)}  {subject}"
    return line if width is None else _fit(line, width)


# ---------------------------------------------------------------------------
# HTML to text
# ---------------------------------------------------------------------------

_SKIP_TAGS = {"script", "style", "head", "title", "template", "noscript"}
_PARA_TAGS = {
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl", "figure",
}  # fmt: skip
_LINE_TAGS = {
    "div", "tr", "dt", "dd", "section", "article", "header", "footer", "nav", "aside", "address",
    "form", "fieldset", "main", "center", "caption", "figcaption", "details", "summary", "hr",
}  # fmt: skip


_LOOK_BACK = 16
_MAX_INDENT = 8  # list nesting levels shown; deeper lists are not worth a screen of spaces


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip: dict[str, int] = {}
        self._pre = 0
        self._list_depth = 0
        self._links: list[tuple[str, int]] = []

    def _skipping(self) -> bool:
        return any(self._skip.values())

    def _trailing_newlines(self) -> int:
        """Newlines ending the output (at most 2 are counted; -1 when there is no output yet)."""
        count = 0
        # Bounded look-back keeps hostile input (100k empty cells) linear.
        for piece in self.out[-1:-_LOOK_BACK:-1]:
            stripped = piece.rstrip(" ")
            count += len(stripped) - len(stripped.rstrip("\n"))
            if stripped.rstrip("\n") or count >= 2:
                return count
        return count if self.out else -1

    def _break(self, lines: int) -> None:
        have = self._trailing_newlines()
        if have >= 0 and lines > have:
            self.out.append("\n" * (lines - have))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skip.pop("head", None)  # an unclosed <head> must not hide the body
        if tag in _SKIP_TAGS:
            self._skip[tag] = self._skip.get(tag, 0) + 1
            return
        if self._skipping():
            return
        self._block_break(tag)
        if tag in ("ul", "ol"):
            self._list_depth += 1
        elif tag == "li":
            self._break(1)
            self.out.append("  " * min(_MAX_INDENT, max(0, self._list_depth - 1)) + "- ")
        elif tag == "br":
            self.out.append("\n")
        elif tag in ("td", "th"):
            if self._trailing_newlines() == 0:
                self.out.append("  ")
        elif tag == "pre":
            self._pre += 1
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and alt.strip():
                self.handle_data(alt)
        elif tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            if self._skip.get(tag):
                self._skip[tag] -= 1
            return
        if self._skipping():
            return
        if tag in ("ul", "ol"):
            self._list_depth = max(0, self._list_depth - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
        elif tag == "a" and self._links:
            self._end_link(*self._links.pop())
        self._block_break(tag)

    def _block_break(self, tag: str) -> None:
        if tag in ("ul", "ol") and self._list_depth:
            self._break(1)  # a nested list continues its parent item
        elif tag in _PARA_TAGS:
            self._break(2)
        elif tag in _LINE_TAGS or tag == "li":
            self._break(1)

    def _end_link(self, href: str, start: int) -> None:
        href = href.strip()
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        text = "".join(self.out[start:]).strip()
        if not text:
            self.out.append(href)
        elif _link_key(text) != _link_key(href):
            self.out.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if self._skipping():
            return
        if self._pre:
            self.out.append(data.replace("\r\n", "\n"))
            return
        text = re.sub(r"\s+", " ", data)
        at_line_start = self._trailing_newlines() != 0
        ends_with_space = bool(self.out) and self.out[-1].endswith(" ")
        if at_line_start or ends_with_space:
            text = text.lstrip(" ")
        if text:
            self.out.append(text)


def _link_key(value: str) -> str:
    """Normalise a link or its text so "example.com" and "https://example.com/" compare equal."""
    value = value.strip().lower()
    value = re.sub(r"^(mailto:|https?://)", "", value)
    return value.rstrip("/")


def html_to_text(html: str) -> str:
    """Readable plain text from HTML using only html.parser."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except _PARSE_ERRORS:
        pass  # keep what was extracted before the parser gave up
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# ---------------------------------------------------------------------------
# Reading one message
# ---------------------------------------------------------------------------


@dataclass
class Attachment:
    filename: str
    content_type: str
    size: int
    payload: bytes


@dataclass
class ReadableMessage:
    headers: list[tuple[str, str]]
    body: str
    attachments: list[Attachment]


_READ_HEADERS = ("Date", "From", "To", "Cc", "Subject", "Message-ID")
_MAX_DEPTH = 40  # deeper MIME nesting is an attack, not a message
# Re-serialise attached messages without refolding, so their headers stay as received.
_RAW_POLICY = email.policy.default.clone(refold_source="none", linesep="\r\n")


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except _PARSE_ERRORS:
        return "application/octet-stream"


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except _PARSE_ERRORS:
        return None
    return (decode_header(name) or None) if name else None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except _PARSE_ERRORS:
        return None


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except _PARSE_ERRORS:
        return b""
    return data if isinstance(data, bytes) else b""


def _part_text(part: Message) -> str:
    try:
        charset = part.get_content_charset()
    except _PARSE_ERRORS:
        charset = None
    return _decode_bytes(_payload_bytes(part), charset)


def _is_attachment(part: Message, ctype: str) -> bool:
    if _disposition(part) == "attachment" or _filename(part):
        return True
    # A multipart that did not parse (no boundary) is shown as text.
    return ctype not in ("text/plain", "text/html") and not ctype.startswith("multipart/")


def _attached_message(part: Message, index: int) -> Attachment:
    inner = part.get_payload()
    messages = inner if isinstance(inner, list) else []
    chunks = []
    for sub in messages:
        try:
            chunks.append(sub.as_bytes(policy=_RAW_POLICY))
        except _PARSE_ERRORS:
            chunks.append(b"")
    name = _filename(part)
    if not name:
        subject = decode_header(_first_headers(messages[0]).get("subject")) if messages else ""
        name = f"{subject or f'message-{index}'}.eml"
    payload = b"".join(chunks)
    return Attachment(name, _content_type(part), len(payload), payload)


def _make_attachment(part: Message, ctype: str, index: int) -> Attachment:
    if ctype.startswith("message/"):
        return _attached_message(part, index)
    payload = _payload_bytes(part)
    name = _filename(part)
    if not name:
        name = f"part-{index}{mimetypes.guess_extension(ctype) or '.bin'}"
    return Attachment(name, ctype, len(payload), payload)


def _collect(part: Message, attachments: list[Attachment], depth: int) -> tuple[list[str], list[str]]:
    """Walk the MIME tree: return (plain texts, html texts) for the body, gather attachments."""
    if depth > _MAX_DEPTH:
        return [], []
    ctype = _content_type(part)
    if part.is_multipart() and not ctype.startswith("message/"):
        results = [_collect(sub, attachments, depth + 1) for sub in part.get_payload()]
        plains = [r[0] for r in results if r[0]]
        htmls = [r[1] for r in results if r[1]]
        if ctype == "multipart/alternative":
            # Alternatives say the same thing: take one of each kind, not all of them.
            return (plains[0] if plains else []), (htmls[0] if htmls else [])
        return [t for p in plains for t in p], [t for h in htmls for t in h]
    if _is_attachment(part, ctype):
        attachments.append(_make_attachment(part, ctype, len(attachments) + 1))
        return [], []
    text = _part_text(part)
    return ([], [text]) if ctype == "text/html" else ([text], [])


def parse_for_reading(raw: bytes) -> ReadableMessage:
    """Decode a whole message for display; never raises on malformed MIME.

    Body: the text/plain part(s), else HTML reduced to text, else "". Attachments: every
    other leaf part; an attached message is one attachment. Unnamed parts get "part-N.ext".
    """
    attachments: list[Attachment] = []
    try:
        msg = _HEADER_PARSER.parsebytes(raw)
        plains, htmls = _collect(msg, attachments, 0)
    except RecursionError:
        # Nesting deeper than the email package can parse: show the headers and the raw body.
        msg = _HEADER_PARSER.parsebytes(raw, headersonly=True)
        body = msg.get_payload()
        plains = [_from_surrogates(body) if isinstance(body, str) else ""]
        htmls, attachments = [], []
    first = _first_headers(msg)
    headers = [(name, decode_header(first[name.lower()])) for name in _READ_HEADERS if name.lower() in first]
    if plains:
        body = "\n\n".join(t.strip("\r\n") for t in plains)
    elif htmls:
        body = "\n\n".join(html_to_text(h) for h in htmls)
    else:
        body = ""
    return ReadableMessage(headers, _clean_body(body), attachments)


def human_size(size: int) -> str:
    """1536 -> "1.5 KB" (binary units, as mail clients show them)."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


def format_readable(msg: ReadableMessage) -> str:
    """Terminal text: header lines, blank line, body, then the attachment list."""
    lines = [f"{name}: {_clean(value)}" for name, value in msg.headers]
    lines.append("")
    body = _clean_body(msg.body).rstrip("\n")
    if body:
        lines.append(body)
    if msg.attachments:
        lines += ["", "Attachments:"] if body else ["Attachments:"]
        for att in msg.attachments:
            lines.append(f"  {_clean(att.filename)} ({human_size(att.size)}, {_clean(att.content_type)})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Saving attachments
# ---------------------------------------------------------------------------

_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*]')
# Bidi overrides let "invoice\u202efdp.exe" display as "invoiceexe.pdf".
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f]")
_WINDOWS_DEVICES = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)
_MAX_NAME_BYTES = 200
_MAX_EXT_CHARS = 16


def _split_ext(name: str) -> tuple[str, str]:
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > _MAX_EXT_CHARS:
        return name, ""
    return stem, "." + ext


def _cap_bytes(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def safe_filename(name: str | None, fallback: str) -> str:
    """A safe base name for saving a hostile attachment name; ``fallback`` when nothing is left.

    Strips directories, controls, bidi overrides and leading dots (no hidden files, no
    ".."), replaces Windows-reserved characters, and caps the UTF-8 length at 200 bytes
    keeping the extension.
    """
    if not name:
        return fallback
    name = _OTHER_SURROGATES.sub("_", _from_surrogates(name))
    name = _BIDI_CONTROLS.sub("", name.translate(_CONTROL_TO_SPACE))
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_NAME_CHARS.sub("_", name)
    name = name.strip().lstrip(".").rstrip(". ")  # Windows drops trailing dots and spaces
    if not name:
        return fallback
    if _WINDOWS_DEVICES.fullmatch(name):
        name = "_" + name
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        stem, ext = _split_ext(name)
        name = _cap_bytes(stem, _MAX_NAME_BYTES - len(ext.encode("utf-8"))).rstrip(". ") + ext
    return name or fallback


_SAVE_MODE = 0o600  # attachments are private mail; the umask can only narrow this
_MAX_COLLISIONS = 10000


def save_unique(directory: Path, name: str, data: bytes) -> Path:
    """Write data as a new file in directory, never overwriting and never following a symlink.

    O_CREAT|O_EXCL fails on any existing entry, symlinks included (even dangling ones), so
    a collision moves on to "name (1).ext", "name (2).ext"... OSError (directory missing,
    disk full) propagates; a partly written file is removed.
    """
    name = safe_filename(name, "attachment")
    stem, ext = _split_ext(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for n in range(_MAX_COLLISIONS):
        path = Path(directory) / (name if n == 0 else f"{stem} ({n}){ext}")
        try:
            fd = os.open(path, flags, _SAVE_MODE)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path
    raise FileExistsError(f"{directory}: too many files named like {name}")


# ---------------------------------------------------------------------------
# Sending side: addresses and header values
# ---------------------------------------------------------------------------


def check_header_value(value: str, field: str) -> str:
    """Return value unchanged, or raise BadInputError if it holds a line break or control character.

    CR and LF would inject headers; other C0/C1 controls, U+2028/U+2029 are refused too
    because the email package treats some of them as line breaks when folding. Tab is allowed.
    """
    for ch in value:
        if ch in "\r\n":
            raise errors.BadInputError(
                f"{field} contains a line break (CR or LF), which is not allowed in a header"
            )
        if ch != "\t" and (unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029"):
            raise errors.BadInputError(f"{field} contains a control character (U+{ord(ch):04X})")
    return value


def _split_address_list(value: str) -> list[str]:
    """Split on commas/semicolons outside double quotes and angle brackets."""
    parts: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    angle = 0
    for ch in value:
        if quoted:
            quoted = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">":
            angle = max(0, angle - 1)
        elif ch in ",;" and angle == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NAME_ADDR = re.compile(r"(.*?)\s*<([^<>]*)>", re.DOTALL)
_UNESCAPED_QUOTE = re.compile(r'(?<!\\)"')


def _valid_addr(addr: str) -> str | None:
    """The address with an IDN domain in ASCII (punycode) form, or None if it is not local@domain.

    Rules: exactly one "@", an ASCII dot-atom local part of at most 64 characters, and a
    domain of valid labels (letters, digits, inner hyphens). A single-label domain
    ("user@localhost") is accepted; quoted local parts, IP literals and non-ASCII local
    parts (SMTPUTF8) are not.
    """
    if addr.count("@") != 1:
        return None
    local, domain = addr.split("@")
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = domain.split(".")
    if len(domain) > 253 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return None
    return f"{local}@{domain}"


def _unquote_name(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def _parse_one(chunk: str, field: str) -> tuple[str, str]:
    match = _NAME_ADDR.fullmatch(chunk)
    name, addr = (match.group(1).strip(), match.group(2).strip()) if match else ("", chunk)
    valid = _valid_addr(addr)
    if valid is None or len(_UNESCAPED_QUOTE.findall(name)) % 2:
        raise errors.BadInputError(
            f"{field}: {chunk!r} is not a valid address",
            hint="use user@example.com or 'Name <user@example.com>'",
        )
    return _unquote_name(name).strip(), valid


def parse_addresses(values: list[str], field: str) -> list[tuple[str, str]]:
    """Parse address arguments into (display name, address) pairs.

    Each value may hold several addresses separated by "," or ";"; names may be quoted
    ('"Doe, John" <j@x.org>'). Raises BadInputError naming the field and the bad address,
    or when a value contains a line break (header injection).
    """
    result: list[tuple[str, str]] = []
    for value in values:
        check_header_value(value, field)
        chunks = _split_address_list(value)
        if not chunks:
            raise errors.BadInputError(f"{field}: empty address")
        result.extend(_parse_one(chunk, field) for chunk in chunks)
    return result


# ---------------------------------------------------------------------------
# Sending side: building the message
# ---------------------------------------------------------------------------

AddressLike = tuple[str, str] | str
_COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def _normalize(items: AddressLike | Iterable[AddressLike] | None, field: str) -> list[tuple[str, str]]:
    if items is None:
        return []
    if isinstance(items, (str, tuple)):
        items = [items]
    pairs: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, str):
            pairs.extend(parse_addresses([item], field))
            continue
        name, addr = item
        check_header_value(name, field)
        check_header_value(addr, field)
        valid = _valid_addr(addr)
        if valid is None:
            raise errors.BadInputError(f"{field}: {addr!r} is not a valid address")
        pairs.append((name, valid))
    return pairs


def _header_addresses(pairs: list[tuple[str, str]]) -> list[Address]:
    return [
        Address(display_name=name, username=addr.split("@")[0], domain=addr.split("@")[1])
        for name, addr in pairs
    ]


def _text_cte(text: str) -> str | None:
    """Transfer encoding for a text part; never 8bit, since not every relay accepts it."""
    if text.isascii() and all(len(line) <= 78 for line in text.splitlines()):
        return None  # the email package picks 7bit
    non_ascii = sum(not ch.isascii() for ch in text)
    return "quoted-printable" if non_ascii * 3 < len(text) else "base64"


def _mime_type(path: Path) -> tuple[str, str]:
    ctype, encoding = mimetypes.guess_type(path.name)
    if encoding:
        ctype = _COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    maintype, _, subtype = (ctype or "application/octet-stream").partition("/")
    return maintype, subtype


def _read_attachments(paths: Sequence[Path]) -> list[tuple[Path, bytes]]:
    files = []
    for path in paths:
        path = Path(path)
        try:
            files.append((path, path.read_bytes()))
        except OSError as exc:
            # repr: a file name may hold a newline, and the error must stay one line
            raise errors.InputFileError(
                f"cannot read attachment {str(path)!r}: {exc.strerror or exc}"
            ) from exc
    return files


def _set_bodies(msg: EmailMessage, text: str | None, html: str | None) -> None:
    if text is None:
        text = html_to_text(html) if html is not None else ""
    try:
        msg.set_content(text, subtype="plain", charset="utf-8", cte=_text_cte(text))
        if html is not None:
            msg.add_alternative(html, subtype="html", charset="utf-8", cte=_text_cte(html))
    except UnicodeEncodeError as exc:
        raise errors.BadInputError("message body is not valid text (it cannot be encoded as UTF-8)") from exc


def _dedupe(addresses: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    result = []
    for addr in addresses:
        if addr.lower() not in seen:
            seen.add(addr.lower())
            result.append(addr)
    return result


def build_message(
    *,
    sender: AddressLike,
    to: Iterable[AddressLike] | None,
    cc: Iterable[AddressLike] | None,
    bcc: Iterable[AddressLike] | None,
    subject: str,
    text: str | None,
    html: str | None,
    attachments: Sequence[Path],
    reply_to: AddressLike | Iterable[AddressLike] | None = None,
    message_id_domain: str | None = None,
    date: datetime | None = None,
) -> tuple[EmailMessage, list[str]]:
    """Build an outgoing message and its envelope recipients (to+cc+bcc, deduplicated).

    Addresses are (name, addr) pairs or strings (parsed with parse_addresses). Bcc never
    appears in the headers. Attachment files are read first; a missing or unreadable one
    raises InputFileError. No recipients at all raises UsageError.
    """
    files = _read_attachments(attachments)
    senders = _normalize(sender, "from")
    if len(senders) != 1:
        raise errors.BadInputError("from: exactly one sender address is needed")
    to_pairs, cc_pairs, bcc_pairs = _normalize(to, "to"), _normalize(cc, "cc"), _normalize(bcc, "bcc")
    envelope = _dedupe(addr for _, addr in to_pairs + cc_pairs + bcc_pairs)
    if not envelope:
        raise errors.UsageError("no recipients: give at least one of to, cc or bcc")
    check_header_value(subject, "subject")

    msg = EmailMessage(policy=email.policy.SMTP)
    when = date or datetime.now(timezone.utc)
    msg["Date"] = email.utils.format_datetime(when.astimezone() if when.tzinfo is None else when)
    msg["From"] = _header_addresses(senders)
    if to_pairs:
        msg["To"] = _header_addresses(to_pairs)
    if cc_pairs:
        msg["Cc"] = _header_addresses(cc_pairs)
    reply_pairs = _normalize(reply_to, "reply-to")
    if reply_pairs:
        msg["Reply-To"] = _header_addresses(reply_pairs)
    msg["Subject"] = subject
    msg["Message-ID"] = email.utils.make_msgid(domain=message_id_domain or senders[0][1].split("@")[1])
    _set_bodies(msg, text, html)
    for path, data in files:
        check_header_value(path.name, f"attachment name {path.name!r}")  # repr: one error line
        maintype, subtype = _mime_type(path)
        # Bytes content is always base64: binary-safe. Non-ASCII names go out as RFC 2231.
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    return msg, envelope


def message_size(msg: EmailMessage) -> int:
    """Size in bytes as the message would be sent."""
    return len(msg.as_bytes(policy=email.policy.SMTP))


def check_size(msg: EmailMessage, max_mb: float) -> int:
    """Return the message size; raise BadInputError when it exceeds max_mb (MiB, 1024*1024 bytes)."""
    size = message_size(msg)
    limit = int(max_mb * 1024 * 1024)
    if size > limit:
        raise errors.BadInputError(
            f"message is {human_size(size)} ({size} bytes) encoded, over the {max_mb:g} MB limit",
            hint="attachments grow by a third when encoded; send fewer or smaller files",
        )
    return size


# ---------------------------------------------------------------------------
# Queued .eml files
# ---------------------------------------------------------------------------

_FIELD_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")
_BLIND_HEADERS = {b"bcc", b"resent-bcc"}


def _raw_fields(raw: bytes) -> tuple[list[tuple[bytes | None, bytes]], bytes]:
    """Split the header section into fields [(lowercase name or None, raw bytes)] and the rest."""
    fields: list[tuple[bytes | None, bytes]] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end + 1
        line = raw[pos:end]
        if not line.strip(b"\r\n"):
            break  # the blank line ending the header section stays with the body
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + line)
        else:
            match = _FIELD_NAME.match(line)
            fields.append((match.group(1).lower() if match else None, line))
        pos = end
    return fields, raw[pos:]


def _field_value(field_bytes: bytes) -> str:
    value = field_bytes.split(b":", 1)[1]
    return _FOLD.sub("", value.decode("utf-8", "surrogateescape")).strip()


def _raw_addresses(field_bytes: bytes) -> list[str]:
    pairs = email.utils.getaddresses([_field_value(field_bytes)])
    return [_from_surrogates(addr) for _, addr in pairs if addr]


def envelope_from_raw(raw: bytes) -> tuple[str | None, list[str], bytes]:
    """Envelope for a ready-made message: (From address, To+Cc+Bcc addresses, bytes without Bcc).

    Bcc (and Resent-Bcc) lines are cut out textually; every other byte is kept as is.
    """
    fields, rest = _raw_fields(raw)
    sender = None
    recipients: list[str] = []
    for name, text in fields:
        if name == b"from" and sender is None:
            sender = next(iter(_raw_addresses(text)), None)
        elif name in (b"to", b"cc", b"bcc"):
            recipients.extend(_raw_addresses(text))
    kept = b"".join(text for name, text in fields if name not in _BLIND_HEADERS)
    return sender, _dedupe(recipients), kept + rest
