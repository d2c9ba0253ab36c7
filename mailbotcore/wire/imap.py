"""IMAP wire formats: modified UTF-7 folder names, quoting, and FETCH response parsing.

Pure functions over what imaplib hands back, so they can be tested without a server.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import date

from mailbotcore.errors import BadInputError, MailbotError, ServiceRefused, SignInRequired, TemporaryFailure
from mailbotcore.wire.text import clean_line

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def encode_folder(name: str) -> bytes:
    """Encode a folder name in IMAP's modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[bytes] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.append(b"&" + base64.b64encode(utf16).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return b"".join(out)


def decode_folder(raw: bytes | str) -> str:
    """Decode a modified UTF-7 folder name; undecodable runs are kept as they are."""
    text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw

    def replace(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if chunk == "":
            return "&"
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        try:
            return base64.b64decode(padded).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return match.group(0)

    return re.sub(r"&([A-Za-z0-9+,]*)-", replace, text)


def quote(value: bytes | str) -> bytes:
    """An IMAP quoted string; callers send non-ASCII text as a literal instead."""
    data = value.encode("ascii") if isinstance(value, str) else value
    if b"\r" in data or b"\n" in data:
        raise ValueError("IMAP quoted strings cannot contain CR or LF")
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def quoted_folder(name: str) -> bytes:
    return quote(encode_folder(name))


def search_date(day: date) -> str:
    """IMAP date for SEARCH SINCE: 27-Nov-2026 (English month names whatever the locale)."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


class ProtocolViolation(ValueError):
    """A server reply that does not parse (a number that is not one, a truncated line)."""


def parse_number(value: bytes | str, what: str) -> int:
    """A non-negative IMAP number (RFC 3501 ``number``: digits, below 2**32 for UIDs and counts)."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    text = text.strip()
    if not text.isdigit() or not text.isascii() or len(text) > 10 or int(text) >= 2**32:
        raise ProtocolViolation(f"{what} {clean_line(text[:40])!r} is not a number")
    return int(text)


def parse_search(data: list[bytes | None]) -> list[int]:
    """The UIDs of a ``* SEARCH`` reply, sorted; a word that is not a number is a protocol error."""
    words = b" ".join(d for d in data if isinstance(d, bytes)).split()
    return sorted(parse_number(word, "SEARCH result") for word in words)


def parse_capabilities(line: bytes) -> tuple[str, ...]:
    """A CAPABILITY list as upper-case atoms (``IMAP4REV1``, ``AUTH=XOAUTH2``, ``MOVE``...)."""
    return tuple(line.decode("ascii", "replace").upper().split())


@dataclass
class FetchedMessage:
    """One message of a FETCH response: simple attributes and the literal sections."""

    uid: int | None = None
    flags: list[str] = field(default_factory=list)
    internaldate: str | None = None
    size: int | None = None
    sections: dict[str, bytes] = field(default_factory=dict)


_START = re.compile(rb"^(\d+) \(")
_UID = re.compile(rb"\bUID ([^\s()]*)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_DATE = re.compile(rb'\bINTERNALDATE "([^"]*)"')
_SIZE = re.compile(rb"\bRFC822\.SIZE ([^\s()]*)")
_SECTION = re.compile(rb"(BODY\[[^\]]*\](?:<\d+>)?) \{\d+\}$")


def parse_fetch(data: list[bytes | tuple[bytes, bytes] | None]) -> list[FetchedMessage]:
    """Parse imaplib's FETCH data into messages.

    imaplib returns, per message, a tuple ``(text ending in {n}, literal)`` for each literal
    followed by the text after it (``b')'`` or more attributes), or one bytes line when
    there is no literal. Only the first piece of a message starts with ``<seq> (``; the
    others start with a space or ``)``. Attribute order is the server's choice, so
    attributes are looked up in the concatenated non-literal text of each message.
    """
    messages: list[FetchedMessage] = []
    texts: list[bytes] = []
    for item in data:
        if item is None:
            continue
        head = item[0] if isinstance(item, tuple) else item
        start = _START.match(head)
        if start:
            messages.append(FetchedMessage())
            texts.append(b"")
        if not messages:
            continue
        texts[-1] += head
        if isinstance(item, tuple):
            section = _SECTION.search(head)
            if section:
                messages[-1].sections[_normalize_section(section.group(1).decode("ascii", "replace"))] = item[1]
    for message, text in zip(messages, texts, strict=True):
        if match := _UID.search(text):
            message.uid = parse_number(match.group(1), "UID")
        if match := _FLAGS.search(text):
            message.flags = [flag.decode("ascii", "replace") for flag in match.group(1).split()]
        if match := _DATE.search(text):
            message.internaldate = match.group(1).decode("ascii", "replace")
        if match := _SIZE.search(text):
            message.size = parse_number(match.group(1), "RFC822.SIZE")
    return messages


def _normalize_section(key: str) -> str:
    """The section key: ``HEADER`` for a header-fields section, ``""`` for the whole message."""
    inner = key[key.index("[") + 1 : key.index("]")]
    return inner.split(" ", 1)[0].split(".FIELDS", 1)[0]


# ----------------------------------------------------------------------------------------
# The one table from IMAP replies to mailbot errors.

IMAP_AUTH_HINT = (
    "the server refused the token: check that IMAP is switched on for the mailbox "
    "(Outlook.com: Settings > Mail > Forwarding and IMAP), that OUTLOOK_USERNAME (or --mailbox) "
    'is right, and run "{login}" again'
)
NOT_CONNECTED_HINT = (
    "Exchange signed you in but cannot open the mailbox: check OUTLOOK_USERNAME (or --mailbox), that "
    "the signed-in account has Full Access to it, and that IMAP is enabled for it (Set-CASMailbox "
    "-ImapEnabled $true)"
)


@dataclass(frozen=True)
class ReplyRule:
    """``match``: a response code (``[NONEXISTENT]``) or a phrase, looked for case-insensitively."""

    match: str
    error: type[MailbotError]
    message: str  # with {where}, {command}, {text}, {subject}
    hint: str | None = None  # with {login}


REPLY_RULES: tuple[ReplyRule, ...] = (
    ReplyRule("[AUTHENTICATIONFAILED]", SignInRequired, "{where} refused the sign-in: {text}", IMAP_AUTH_HINT),
    ReplyRule("[AUTHORIZATIONFAILED]", SignInRequired, "{where} refused the sign-in: {text}", IMAP_AUTH_HINT),
    ReplyRule("[NONEXISTENT]", BadInputError, "{subject} does not exist on {where}: {text}"),
    ReplyRule(
        "[TRYCREATE]",
        BadInputError,
        "{subject} does not exist on {where} ({command}): {text}",
        "create the folder first (in Outlook or your mail program)",
    ),
    ReplyRule("[UNAVAILABLE]", TemporaryFailure, "{where} cannot {command} for now: {text}"),
    ReplyRule(
        "[LIMIT]",
        TemporaryFailure,
        "{where} refused {command}: a server limit was reached: {text}",
        "too many connections or commands at once; try again later",
    ),
    ReplyRule(
        "[OVERQUOTA]",
        TemporaryFailure,
        "{where} refused {command}: the mailbox is over its quota: {text}",
        "free space in the mailbox; mailbot tries again on its next run",
    ),
    ReplyRule("[ALREADYEXISTS]", ServiceRefused, "{where} refused {command}: {subject} already exists: {text}"),
    ReplyRule(
        "AccessTokenExpired",
        TemporaryFailure,
        "{where} ended the session during {command}: the access token expired: {text}",
        "the next run signs in with a fresh token",
    ),
    ReplyRule(
        "Request is throttled",
        TemporaryFailure,
        "{where} is throttling requests ({command}): {text}",
        "Exchange asks mailbot to wait (the suggested backoff time) before trying again",
    ),
    ReplyRule(
        "User is authenticated but not connected",
        ServiceRefused,
        "{where} refused {command}: {text}",
        NOT_CONNECTED_HINT,
    ),
    # Servers that give no response code for a missing folder.
    ReplyRule("doesn't exist", BadInputError, "{subject} does not exist on {where}: {text}"),
    ReplyRule("does not exist", BadInputError, "{subject} does not exist on {where}: {text}"),
)
DEFAULT_RULES = {
    "NO": ReplyRule("", ServiceRefused, "{where} refused {command}: {text}"),
    "BAD": ReplyRule("", ServiceRefused, "{where} refused {command}: {text}"),
    "BYE": ReplyRule("", TemporaryFailure, "connection to {where} was lost during {command}: {text}"),
}


def reply_error(
    command: str, status: str, text: str, where: str, login: str = "mailbot login", subject: str | None = None
) -> MailbotError:
    """What a tagged ``NO``/``BAD`` (or a ``BYE``, or imaplib's abort) to ``command`` means.

    ``where`` names the server (``IMAP server HOST port PORT``), ``subject`` what the command
    was about (``folder 'Archive'``), ``login`` the sign-in command for hints. The first rule
    of :data:`REPLY_RULES` whose code or phrase is in the text decides; otherwise the status:
    NO and BAD are refusals (69), BYE is a lost connection (75)."""
    text = clean_line(text) or "no details"
    folded = text.casefold()
    rule = next((r for r in REPLY_RULES if r.match.casefold() in folded), None)
    rule = rule or DEFAULT_RULES.get(status.upper(), DEFAULT_RULES["NO"])
    message = rule.message.format(where=where, command=command, text=text, subject=subject or "the folder")
    hint = rule.hint.format(login=login) if rule.hint else None
    return rule.error(message, hint)
