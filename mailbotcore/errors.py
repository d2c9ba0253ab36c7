"""mailbot's exceptions: one base class, one subclass per failure a user can act on.

Library modules raise these (``raise X(...) from exc``, naming host and port where
there is one); only ``mailbotcore.cli`` turns them into an ``error:`` line, an optional
``hint:`` line, and the sysexits code in ``exit_code``.

None of them has ``OSError`` (or ``ConnectionError``) ancestry: protocol code raises them
inside ``except OSError`` blocks, where such an error would be caught and wrapped again.
"""

from __future__ import annotations

# sysexits.h
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
EX_INTERRUPTED = 130


class MailbotError(Exception):
    """Base class for every failure mailbot reports to the user."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(MailbotError):
    """Raised when the command line is incomplete or contradictory (e.g. no recipients)."""

    exit_code = EX_USAGE


class BadInputError(MailbotError):
    """Raised when user-supplied data is invalid: a bad address, a header with CR/LF, an unknown UID."""

    exit_code = EX_DATAERR


class InputFileError(MailbotError):
    """Raised when a file named on the command line is missing or unreadable."""

    exit_code = EX_NOINPUT


class OutputError(MailbotError):
    """Raised when a file mailbot must write (an attachment, a Maildir, a queue entry) cannot be created."""

    exit_code = EX_CANTCREAT


class ConfigError(MailbotError):
    """Raised when a setting is missing or malformed; the message names the variable."""

    exit_code = EX_CONFIG


class SignInRequired(MailbotError):
    """Raised when there is no usable sign-in: not signed in, token refused, cache unreadable."""

    exit_code = EX_NOPERM


class ServiceRefused(MailbotError):
    """Raised when a server permanently refuses: 5xx, certificate failure, feature switched off."""

    exit_code = EX_UNAVAILABLE


class SmtpAuthDisabled(ServiceRefused):
    """Raised when Exchange says SMTP AUTH is switched off (535 5.7.139, 550 5.7.30): nothing was
    sent, and Microsoft Graph may still send it (OUTLOOK_SEND_VIA=auto)."""


class OutcomeUnknown(ServiceRefused):
    """Raised when the connection broke after the request was written and the server could not
    say whether the message arrived: never sent again automatically."""


class RecipientsRefused(ServiceRefused):
    """Raised when the server permanently refused some recipients; ``accepted`` got the message,
    ``deferred`` were refused only for now (worth another try)."""

    def __init__(self, message: str, accepted: list[str], deferred: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.accepted = accepted
        self.deferred = deferred


class TemporaryFailure(MailbotError):
    """Raised for failures worth retrying later: network, timeouts, 4xx replies, identity platform 5xx."""

    exit_code = EX_TEMPFAIL


class RecipientsDeferred(TemporaryFailure):
    """Raised when the server took the message for ``accepted`` but refused ``deferred`` only for now."""

    def __init__(self, message: str, accepted: list[str], deferred: list[str]) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.deferred = deferred


class Busy(TemporaryFailure):
    """Raised when another run holds the lock for the same job."""
