"""``doctor``: every check a user would otherwise do by hand, one line each, sending no mail.

Checks run in order; a check whose prerequisite failed is skipped. The exit code is the
one of the first failure, so a script can tell "sign in again" (77) from "network" (75).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator

from mailbotcore.commands import transport
from mailbotcore.config import Settings
from mailbotcore.errors import ConfigError, MailbotError, ServiceRefused, SignInRequired
from mailbotcore.net import imap as imap_client
from mailbotcore.net import probe
from mailbotcore.net import smtp as smtp_client
from mailbotcore.results import Check
from mailbotcore.signin.authenticator import Authenticator
from mailbotcore.store.files import check_private

REFRESH_TOKEN_WARN_DAYS = 60

# The placeholders of .env.example: a configuration that still holds them was never filled in.
PLACEHOLDERS = {
    "OUTLOOK_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
    "OUTLOOK_USERNAME": "you@outlook.com",
}


class Doctor:
    def __init__(self, settings: Settings, signin: Callable[..., Authenticator], retest_smtp: bool = False) -> None:
        self.settings = settings
        self.signin = signin
        self.retest_smtp = retest_smtp
        self.checks: list[Check] = []

    def check(self, label: str, action: Callable[[], str | None]) -> bool:
        try:
            detail = action()
        except MailbotError as exc:
            self.checks.append(Check("FAIL", label, exc.message, exc.hint, exc))
            return False
        self.checks.append(Check("OK", label, detail))
        return True

    def skip(self, label: str, reason: str) -> None:
        self.checks.append(Check("SKIP", label, reason))

    def run(self) -> Iterator[Check]:
        """Each check as it completes (a slow network shows progress line by line)."""
        for _ in self._steps():
            yield from self.checks
            self.checks.clear()
        yield from self.checks

    def _steps(self) -> Iterator[None]:
        s = self.settings
        config_ok = self.check("configuration", self.configuration)
        yield
        cache_ok = config_ok and self.check("token cache", self.token_cache)
        yield
        auth = self.signin(s, interactive=False) if config_ok else None
        if auth is not None and cache_ok and not auth.app_only:
            self.refresh_token_age(auth)
        label = "app-only token (client credentials)" if s.app_only else "signed in, token refreshable"
        signed_in = bool(auth and cache_ok) and self.check(
            label,
            lambda: self.refresh(auth),  # type: ignore[arg-type]
        )
        if not signed_in:
            self.skip("sign-in", "fix the checks above first")
        yield
        for service, host, port in (("IMAP", s.imap_host, s.imap_port), ("SMTP", s.smtp_host, s.smtp_port)):
            reachable = self.check(f"{service} {host} resolves", functools.partial(self.resolve, host, port))
            reachable = reachable and self.check(
                f"{service} {host}:{port} TCP connect", functools.partial(self.tcp, service, host, port)
            )
            yield
            if not reachable:
                continue
            if service == "IMAP":
                self.check(f"IMAP {host}:{port} TLS certificate", lambda: self.imap_tls())
            if not signed_in or auth is None:
                self.skip(f"{service} sign-in", "not signed in")
                continue
            if service == "IMAP":
                self.check("IMAP XOAUTH2 sign-in and LIST", functools.partial(self.imap_login, auth))
            else:
                self.smtp_checks(auth)
            yield
        if config_ok:
            self.graph_checks(auth if signed_in else None)
        yield

    def smtp_checks(self, auth: Authenticator) -> None:
        label = "SMTP STARTTLS/TLS, certificate and AUTH XOAUTH2"
        choice = transport.choose(self.settings)
        remembered = self.settings.send_via == "auto" and choice.via == "graph"
        if remembered and not self.retest_smtp:
            retest = self.settings.command("doctor --retest-smtp")
            self.skip(label, f'sending goes through Microsoft Graph (SMTP AUTH was refused); re-test with "{retest}"')
            return
        if self.settings.send_via == "graph":
            self.skip(label, "OUTLOOK_SEND_VIA=graph: SMTP is not used for sending")
            return
        if self.check(label, functools.partial(self.smtp_login, auth)) and remembered:
            transport.state(self.settings).forget()
            self.checks.append(Check("OK", "SMTP re-tested", "SMTP AUTH works again: sending goes back to SMTP"))

    def graph_checks(self, auth: Authenticator | None) -> None:
        choice = transport.choose(self.settings)
        self.check("send transport", lambda: f"{choice.via}: {choice.reason}")
        if choice.via != "graph":
            return
        label = f"Microsoft Graph token (Mail.Send, Mail.ReadWrite) for {self.settings.graph_url}"
        if auth is None:
            self.skip(label, "not signed in")
            return
        self.check(label, lambda: self.graph_token(auth))

    def graph_token(self, auth: Authenticator) -> str:
        auth.graph_provider()()
        return "a Graph access token was issued"

    def configuration(self) -> str:
        s = self.settings
        s.require_username()
        s.require_client_id()
        for name, value in (("OUTLOOK_CLIENT_ID", s.client_id), ("OUTLOOK_USERNAME", s.username)):
            if value is not None and value.lower() == PLACEHOLDERS[name]:
                raise ConfigError(
                    f"{name} is still the placeholder {value} from .env.example",
                    hint="put your own values in the .env (README: Register the app)",
                )
        if s.app_only:
            from mailbotcore.signin.app_only import client_credential

            credential = client_credential(s)  # readable, private, holds what it must
            kind = "client secret" if isinstance(credential, str) else "certificate"
            return f"app-only access to {s.mailbox_user} as app {s.client_id} ({kind}), authority {s.authority}" + (
                f", env file {s.env_file}" if s.env_file else ""
            )
        return f"{s.username}, authority {s.authority}" + (f", env file {s.env_file}" if s.env_file else "")

    def refresh_token_age(self, auth: Authenticator) -> None:
        """WARN when the refresh token was last used more than 60 of its 90 days ago."""
        try:
            last = auth.status().refresh_token_last_used
        except MailbotError:
            return  # the sign-in check below says what is wrong
        if last is None:
            return
        days = (time.time() - last) / 86400
        if days > REFRESH_TOKEN_WARN_DAYS:
            self.checks.append(
                Check(
                    "WARN",
                    "refresh token age",
                    f"last used {days:.0f} days ago; it expires after 90 days without use (AADSTS700082)",
                    f'any command that signs in renews it; or run "{self.settings.command("login")}" again',
                )
            )

    def token_cache(self) -> str:
        path = self.settings.token_cache
        if self.settings.app_only and not path.exists():
            return f"{path} does not exist yet (app-only: the first run creates it)"
        if not path.exists():
            raise SignInRequired(
                f"no token cache at {path}", hint=f'run "{self.settings.command("login")}" in a terminal'
            )
        check_private(path, "token cache")
        return f"{path} (mode 600)"

    def refresh(self, auth: Authenticator) -> str:
        auth.provider(force_refresh=True)
        if auth.app_only:
            return f"the identity platform issued an app token for app {self.settings.client_id}"
        return "a fresh access token was issued"

    def resolve(self, host: str, port: int) -> str:
        return probe.resolve(host, port, self.settings.timeout)

    def tcp(self, service: str, host: str, port: int) -> None:
        probe.tcp_connect(service, host, port, self.settings.timeout)

    def imap_tls(self) -> str | None:
        s = self.settings
        if s.imap_tls == "starttls":
            return "checked with STARTTLS during sign-in"
        return probe.tls_handshake("IMAP", s.imap_host, s.imap_port, s.timeout, s.ca_bundle)

    def imap_login(self, auth: Authenticator) -> str:
        with imap_client.connect(self.settings, auth.provider) as session:
            folders = session.list_folders()
        return f"{len(folders)} folders"

    def smtp_login(self, auth: Authenticator) -> str:
        with smtp_client.connect(self.settings, auth.provider) as session:
            version = session.tls_version()
            if version is None:
                raise ServiceRefused("the SMTP connection is not encrypted")
            return f"{version}, signed in as {self.settings.mailbox_user}"


def run_checks(settings: Settings, signin: Callable[..., Authenticator], retest_smtp: bool = False) -> Iterator[Check]:
    """Every check in order; ``signin(settings, interactive=False)`` builds the sign-in once.
    ``retest_smtp``: try SMTP even when ``auto`` remembered Graph, and forget Graph if it works."""
    return Doctor(settings, signin, retest_smtp).run()
