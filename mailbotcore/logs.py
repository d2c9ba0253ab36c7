"""Logging to stderr with secrets removed, at every verbosity.

imaplib and smtplib print the AUTHENTICATE/AUTH line (the base64 of the bearer token)
in their debug output; everything they print is routed here and redacted, as
IMAPClient's logger adapter does. Tokens are also registered as they are obtained so
that any message containing one is masked, whatever printed it.
"""

from __future__ import annotations

import logging
import re
import sys

LOGGER_NAME = "mailbot"
MASK = "[REDACTED]"

_secrets: set[str] = set()
_PATTERNS = [
    # SASL initial responses and continuation answers on the wire.
    re.compile(r"(AUTHENTICATE\s+(?:XOAUTH2|OAUTHBEARER)\s+)[^\s'\"\\]+", re.I),
    re.compile(r"(AUTH\s+(?:XOAUTH2|OAUTHBEARER)\s+)[^\s'\"\\]+", re.I),
    re.compile(r"(auth=Bearer\s+)[^\s'\"\\\x01]+", re.I),
    # Anything shaped like a JWT, and long base64 runs that start like one ("user=" / '{"' encoded).
    re.compile(r"()eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(r"()dXNlcj[A-Za-z0-9+/=]{16,}"),
]


def register_secret(secret: str) -> None:
    """Mask ``secret`` (and the base64 forms a SASL exchange would carry) in every log line."""
    if len(secret) < 8:
        return
    _secrets.add(secret)


def redact(text: str) -> str:
    """Return ``text`` with every known secret and token-shaped string masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Secrets masked, and the line made safe for a terminal (``wire.text.clean_line``): log
    lines carry server replies and message headers, which must not write escape sequences."""

    def filter(self, record: logging.LogRecord) -> bool:
        from mailbotcore.wire.text import clean_line

        record.msg = clean_line(redact(record.getMessage()))
        record.args = None
        return True


def setup(verbose: int, quiet: bool) -> logging.Logger:
    """Send mailbot's log to stderr: warnings by default, info with -v, protocol debug with -vv."""
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    logger.handlers[:] = [handler]
    logger.propagate = False
    if quiet:
        logger.setLevel(logging.ERROR)
    elif verbose >= 1:
        logger.setLevel(logging.DEBUG)
    else:
        logger.setLevel(logging.WARNING)
    # MSAL and urllib3 log request details at DEBUG; they go through the same filter.
    for name in ("msal", "urllib3"):
        other = logging.getLogger(name)
        other.handlers[:] = [handler]
        other.propagate = False
        other.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    return logger
