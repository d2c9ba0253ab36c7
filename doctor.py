"""``doctor``: every check a user would otherwise do by hand, one line each, sending no mail.

Checks run in order; a check whose prerequisite failed is skipped. The exit code is the
one of the first failure, so a script can tell "sign in again" (77) from "network" (75).
"""

from __future__ import annotations

import argparse
import smtplib
import socket
import ssl
import sys
from collections.abc import Callable

import imap_client
import smtp_client
from auth import Authenticator
from config import Settings
from errors import EX_OK, MailbotError, ServiceRefused, SignInRequired
from fileutil import check_private
from netutil import network_error, tls_context


class Doctor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.first_failure: int | None = None

    def check(self, label: str, action: Callable[[], str | None]) -> bool:
        try:
            detail = action()
        except MailbotError as exc:
            print(f"FAIL {label}: {exc.message}")
            if exc.hint:
                print(f"     hint: {exc.hint}")
            if self.first_failure is None:
                self.first_failure = exc.exit_code
            return False
        print(f"OK   {label}" + (f": {detail}" if detail else ""))
        return True

    def skip(self, label: str, reason: str) -> None:
        print(f"SKIP {label}: {reason}")

    def run(self) -> int:
        s = self.settings
        config_ok = self.check("configuration", self.configuration)
        cache_ok = config_ok and self.check("token cache", self.token_cache)
        auth = Authenticator(s, interactive=False) if config_ok else None
        signed_in = bool(auth and cache_ok) and self.check(
            "signed in, token refreshable",
            lambda: self.refresh(auth),  # type: ignore[arg-type]
        )
        if not signed_in:
            self.skip("sign-in", "fix the checks above first")
        for service, host, port in (("IMAP", s.imap_host, s.imap_port), ("SMTP", s.smtp_host, s.smtp_port)):
            reachable = self.check(
                f"{service} {host} resolves", lambda h=host, p=port: self.resolve(h, p)
            ) and (
                self.check(
                    f"{service} {host}:{port} TCP connect",
                    lambda sv=service, h=host, p=port: self.tcp(sv, h, p),
                )
            )
            if not reachable:
                continue
            if service == "IMAP":
                self.check(f"IMAP {host}:{port} TLS certificate", lambda: self.imap_tls())
            if not signed_in or auth is None:
                self.skip(f"{service} sign-in", "not signed in")
                continue
            if service == "IMAP":
                self.check("IMAP XOAUTH2 sign-in and LIST", lambda: self.imap_login(auth))  # type: ignore[arg-type]
            else:
                self.check("SMTP STARTTLS/TLS, certificate and AUTH XOAUTH2", lambda: self.smtp_login(auth))  # type: ignore[arg-type]
        return self.first_failure if self.first_failure is not None else EX_OK

    def configuration(self) -> str:
        s = self.settings
        s.require_username()
        s.require_client_id()
        return f"{s.username}, authority {s.authority}" + (f", env file {s.env_file}" if s.env_file else "")

    def token_cache(self) -> str:
        path = self.settings.token_cache
        if not path.exists():
            raise SignInRequired(
                f"no token cache at {path}", hint='run "python mailbot.py login" in a terminal'
            )
        check_private(path, "token cache")
        return f"{path} (mode 600)"

    def refresh(self, auth: Authenticator) -> str:
        auth.provider(force_refresh=True)
        return "a fresh access token was issued"

    def resolve(self, host: str, port: int) -> str:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise network_error(exc, "", host, port, self.settings.timeout) from exc
        return ", ".join(sorted({str(info[4][0]) for info in infos}))

    def tcp(self, service: str, host: str, port: int) -> None:
        try:
            socket.create_connection((host, port), timeout=self.settings.timeout).close()
        except OSError as exc:
            raise network_error(exc, service, host, port, self.settings.timeout) from exc

    def imap_tls(self) -> str | None:
        s = self.settings
        if s.imap_tls == "starttls":
            return "checked with STARTTLS during sign-in"
        context = tls_context(s.ca_bundle)
        try:
            with (
                socket.create_connection((s.imap_host, s.imap_port), timeout=s.timeout) as raw,
                context.wrap_socket(raw, server_hostname=s.imap_host) as tls,
            ):
                return f"{tls.version()}, verified for {s.imap_host}"
        except (OSError, ssl.SSLError) as exc:
            raise network_error(exc, "IMAP", s.imap_host, s.imap_port, s.timeout) from exc

    def imap_login(self, auth: Authenticator) -> str:
        with imap_client.connect(self.settings, auth.provider) as session:
            folders = session.list_folders()
        return f"{len(folders)} folders"

    def smtp_login(self, auth: Authenticator) -> str:
        with smtp_client.connect(self.settings, auth.provider) as session:
            conn: smtplib.SMTP = session.conn
            if not isinstance(conn.sock, ssl.SSLSocket):
                raise ServiceRefused("the SMTP connection is not encrypted")
            return f"{conn.sock.version()}, signed in as {self.settings.mailbox_user}"


def doctor_command(args: argparse.Namespace, settings: Settings) -> int:
    status = Doctor(settings).run()
    sys.stdout.flush()
    return status
