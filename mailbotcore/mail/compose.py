"""Composing mail: addresses and header values checked, the message built with the email
package's SMTP policy, sizes, and envelopes of queued ``.eml`` files. Everything here takes
user input and refuses (``errors.BadInputError``, ``errors.InputFileError``) rather than
guessing, because a wrong guess sends mail.
"""

from __future__ import annotations

import email.errors
import email.policy
import email.utils
import mimetypes
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

from mailbotcore import errors
from mailbotcore.mail.headers import FOLD, from_surrogates

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
            raise errors.BadInputError(f"{field} contains a line break (CR or LF), which is not allowed in a header")
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
    return [Address(display_name=name, username=addr.split("@")[0], domain=addr.split("@")[1]) for name, addr in pairs]


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
            raise errors.InputFileError(f"cannot read attachment {str(path)!r}: {exc.strerror or exc}") from exc
    return files


def _set_bodies(msg: EmailMessage, text: str | None, html: str | None) -> None:
    if text is None:
        from mailbotcore.mail.readable import html_to_text  # html.parser: only for --html-file

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
    appears in the headers; without To the header is ``To: undisclosed-recipients:;``.
    Attachment files are read first; a missing or unreadable one raises InputFileError.
    No recipients at all raises UsageError.
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
    else:
        # Only Cc/Bcc: the usual empty group, so filters do not see a message without To.
        msg["To"] = "undisclosed-recipients:;"
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
            f"message is {_human_size(size)} ({size} bytes) encoded, over the {max_mb:g} MB limit",
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
    return FOLD.sub("", value.decode("utf-8", "surrogateescape")).strip()


def _raw_addresses(field_bytes: bytes) -> list[str]:
    pairs = email.utils.getaddresses([_field_value(field_bytes)])
    return [from_surrogates(addr) for _, addr in pairs if addr]


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


def _human_size(size: int) -> str:
    from mailbotcore.mail.readable import human_size

    return human_size(size)
