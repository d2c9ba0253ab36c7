"""The network checks ``doctor`` runs one at a time: resolve, TCP connect, a verified TLS handshake.

Each raises the same MailbotError the real commands would (see :func:`mailbotcore.net.tls.network_error`)
and returns a short description of what it saw.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from mailbotcore.net.tls import network_error, tls_context


def resolve(host: str, port: int, timeout: float) -> str:
    """The addresses ``host`` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise network_error(exc, "", host, port, timeout) from exc
    return ", ".join(sorted({str(info[4][0]) for info in infos}))


def tcp_connect(service: str, host: str, port: int, timeout: float) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise network_error(exc, service, host, port, timeout) from exc


def tls_handshake(service: str, host: str, port: int, timeout: float, ca_bundle: Path | None) -> str:
    """An implicit-TLS handshake with certificate and host name verified; the TLS version."""
    context = tls_context(ca_bundle)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return f"{tls.version()}, verified for {host}"
    except (OSError, ssl.SSLError) as exc:
        raise network_error(exc, service, host, port, timeout) from exc
