"""TLS contexts and network-error classification shared by the IMAP and SMTP helpers."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from mailbotcore.errors import MailbotError, ServiceRefused, TemporaryFailure

CA_HINT = (
    "the server's certificate is not trusted; if a corporate proxy or your own server uses a "
    "private CA, set MAILBOT_CA_BUNDLE to its CA certificate (PEM)"
)


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """A verifying TLS context (hostname + chain). imaplib and smtplib do not verify by default."""
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def network_error(exc: BaseException, service: str, host: str, port: int, timeout: float) -> MailbotError:
    """Classify a connection failure: certificate problems are permanent (69), the rest retryable (75)."""
    where = f"{service} server {host} port {port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ServiceRefused(f"TLS certificate of {where} could not be verified: {exc.verify_message}", CA_HINT)
    if isinstance(exc, ssl.SSLEOFError):
        # The connection dropped mid-handshake: a network problem, not a TLS policy one.
        return TemporaryFailure(f"connection to {where} was lost during the TLS handshake")
    if isinstance(exc, ssl.SSLError):
        return ServiceRefused(f"TLS handshake with {where} failed: {exc.reason or exc}")
    if isinstance(exc, socket.gaierror):
        return TemporaryFailure(f"cannot resolve {host} ({exc.strerror}); check the network or the host name")
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return TemporaryFailure(f"{where} did not answer within {timeout:g} s")
    if isinstance(exc, ConnectionRefusedError):
        return TemporaryFailure(f"{where} refused the connection")
    if isinstance(exc, (ConnectionError, EOFError)):
        return TemporaryFailure(f"connection to {where} was lost: {exc or type(exc).__name__}")
    return TemporaryFailure(f"network error with {where}: {exc or type(exc).__name__}")
