"""Reading one message for a person: its text (HTML reduced to text), its attachments, and
saving those under safe names. Pure functions over hostile input: they never raise on a
malformed message and show what can be shown.
"""

from __future__ import annotations

import email.errors
import email.policy
import email.utils
import mimetypes
import os
import re
from dataclasses import dataclass
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path

from mailbotcore.mail.headers import (
    HEADER_PARSER,
    OTHER_SURROGATES,
    PARSE_ERRORS,
    clean_body,
    clean_text,
    decode_bytes,
    decode_header,
    first_headers,
    from_surrogates,
)
from mailbotcore.wire.text import clean_line

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
    except PARSE_ERRORS:
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
    except PARSE_ERRORS:
        return "application/octet-stream"


def _raw_param(part: Message, header: str, key: str) -> str | tuple[str | None, str | None, str] | None:
    """A MIME parameter as written, RFC 2231 parts joined and unquoted, no codec run.

    The default policy's header parsing decodes RFC 2231 and RFC 2047 values with any
    Python codec a sender names; a compat32 holder keeps them raw for ``decode_bytes``.
    """
    raw = first_headers(part).get(header)
    if raw is None:
        return None
    holder = Message()
    holder[header] = raw
    value = holder.get_param(key, None, header)
    return value if isinstance(value, (str, tuple)) else None


def _filename(part: Message) -> str | None:
    try:
        value = _raw_param(part, "content-disposition", "filename")
        if value is None:
            value = _raw_param(part, "content-type", "name")
    except PARSE_ERRORS:
        return None
    if isinstance(value, tuple):
        charset, _language, text = value
        try:
            data = text.encode("latin-1", "surrogateescape")  # %XX unquoted as latin-1
        except UnicodeError:
            return clean_line(from_surrogates(text)) or None
        return clean_line(decode_bytes(data, charset)) or None
    return (decode_header(value) or None) if value else None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except PARSE_ERRORS:
        return None


def _payload_bytes(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except PARSE_ERRORS:
        return b""
    return data if isinstance(data, bytes) else b""


def _part_text(part: Message) -> str:
    try:
        charset = part.get_content_charset()
    except PARSE_ERRORS:
        charset = None
    return decode_bytes(_payload_bytes(part), charset)


def _is_attachment(part: Message, ctype: str) -> bool:
    if _disposition(part) == "attachment" or _filename(part):
        return True
    # A multipart that did not parse (no boundary) is shown as text.
    return ctype not in ("text/plain", "text/html") and not ctype.startswith("multipart/")


def _attached_message(part: Message, index: int) -> Attachment:
    inner = part.get_payload()
    messages = [sub for sub in inner if isinstance(sub, Message)] if isinstance(inner, list) else []
    chunks = []
    for sub in messages:
        try:
            chunks.append(sub.as_bytes(policy=_RAW_POLICY))
        except PARSE_ERRORS:
            chunks.append(b"")
    name = _filename(part)
    if not name:
        subject = decode_header(first_headers(messages[0]).get("subject")) if messages else ""
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
        results = [_collect(sub, attachments, depth + 1) for sub in part.get_payload() if isinstance(sub, Message)]
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
        msg = HEADER_PARSER.parsebytes(raw)
        plains, htmls = _collect(msg, attachments, 0)
    except RecursionError:
        # Nesting deeper than the email package can parse: show the headers and the raw body.
        msg = HEADER_PARSER.parsebytes(raw, headersonly=True)
        body = msg.get_payload()
        plains = [from_surrogates(body) if isinstance(body, str) else ""]
        htmls, attachments = [], []
    first = first_headers(msg)
    headers = [(name, decode_header(first[name.lower()])) for name in _READ_HEADERS if name.lower() in first]
    if plains:
        body = "\n\n".join(t.strip("\r\n") for t in plains)
    elif htmls:
        body = "\n\n".join(html_to_text(h) for h in htmls)
    else:
        body = ""
    return ReadableMessage(headers, clean_body(body), attachments)


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
    lines = [f"{name}: {clean_text(value)}" for name, value in msg.headers]
    lines.append("")
    body = clean_body(msg.body).rstrip("\n")
    if body:
        lines.append(body)
    if msg.attachments:
        lines += ["", "Attachments:"] if body else ["Attachments:"]
        for att in msg.attachments:
            lines.append(f"  {clean_text(att.filename)} ({human_size(att.size)}, {clean_text(att.content_type)})")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Saving attachments
# ---------------------------------------------------------------------------

_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*]')
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

    Strips directories, controls, bidi controls (``wire.text``: "invoice\u202efdp.exe"
    would display as "invoiceexe.pdf") and leading dots (no hidden files, no
    ".."), replaces Windows-reserved characters, and caps the UTF-8 length at 200 bytes
    keeping the extension.
    """
    if not name:
        return fallback
    name = clean_line(OTHER_SURROGATES.sub("_", from_surrogates(name)))
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
