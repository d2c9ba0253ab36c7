"""App-only access (OAuth 2 client credentials) for Microsoft 365 service mailboxes.

No person signs in: the app proves itself with a client secret or a certificate and gets
a token for ``https://outlook.office365.com/.default`` that carries the app's roles
(``IMAP.AccessAsApp``, ``SMTP.SendAsApp``). Exchange then opens the mailbox named in
``OUTLOOK_USERNAME`` if an admin granted that app access to it (``New-ServicePrincipal``
and ``Add-MailboxPermission``; README: App-only access).

The app token is kept in the same token cache file as delegated sign-ins (same lock,
re-read, atomic 0600 writes), so a cron run with a valid cached token asks the identity
platform nothing, and one whose token expired asks once. There is no refresh token.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mailbotcore import logs
from mailbotcore.config import Settings
from mailbotcore.errors import ConfigError, SignInRequired, UsageError
from mailbotcore.results import SignInStatus
from mailbotcore.signin.authenticator import MICROSOFT_HOSTS, Authenticator, _http_session
from mailbotcore.signin.cache import http_cache_to_json
from mailbotcore.signin.entra import aadsts_code, describe_error
from mailbotcore.store import files as fileutil
from mailbotcore.wire import sasl

if TYPE_CHECKING:
    import msal

APP_SCOPES = ["https://outlook.office365.com/.default"]
MULTI_TENANT = {"organizations", "common", "consumers"}
log = logging.getLogger("mailbot.auth")

# Entra's answers to a client-credentials request that a person can act on.
APP_HINTS = {
    7000215: "the client secret is wrong: use the secret's Value (not its Secret ID) from App registrations > "
    "Certificates & secrets, in OUTLOOK_CLIENT_SECRET_FILE",
    7000222: "the client secret has expired: create a new one under App registrations > Certificates & secrets "
    "and put its Value in OUTLOOK_CLIENT_SECRET_FILE",
    700027: "the certificate is not registered on the app: upload its public part under App registrations > "
    "Certificates & secrets > Certificates (or check OUTLOOK_CLIENT_CERTIFICATE)",
    7000218: "the identity platform got no client secret or certificate: set OUTLOOK_CLIENT_SECRET_FILE "
    "or OUTLOOK_CLIENT_CERTIFICATE",
    700016: "OUTLOOK_CLIENT_ID is not an application in this tenant: check it and the tenant in OUTLOOK_AUTHORITY",
    90002: "the tenant in OUTLOOK_AUTHORITY does not exist: check it",
    1002012: "the scope must be https://outlook.office365.com/.default for app-only access",
}


def exchange_hint(settings: Settings, protocol: str) -> str:
    """What an Exchange admin must run when IMAP/SMTP refuses an app token for a mailbox."""
    return sasl.app_grant_hint(settings.mailbox_user, settings.client_id, protocol)


def _read_private(path: Path, what: str) -> bytes:
    data = fileutil.read_private(path, what)  # no symlink; ours, regular, not readable by others
    if data is None:
        raise ConfigError(f"cannot read the {what} {path}: it does not exist")
    return data


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.+?-----END \1-----\r?\n?", re.S)


def client_credential(settings: Settings) -> str | dict[str, Any]:
    """MSAL's ``client_credential``: the secret, or the certificate as MSAL wants it.

    With the certificate itself at hand MSAL signs the assertion with PS256 and names the
    certificate by its SHA-256 thumbprint (``x5t#S256``)."""
    if settings.client_secret_file is not None:
        secret = _read_private(settings.client_secret_file, "client secret file").decode("utf-8", "replace").strip()
        if not secret:
            raise ConfigError(f"OUTLOOK_CLIENT_SECRET_FILE {settings.client_secret_file} is empty")
        logs.register_secret(secret)
        return secret
    if settings.client_secret:
        logs.register_secret(settings.client_secret)
        return settings.client_secret
    path = settings.client_certificate
    if path is None:
        raise ConfigError("app-only access needs OUTLOOK_CLIENT_SECRET_FILE or OUTLOOK_CLIENT_CERTIFICATE")
    password = settings.client_certificate_password
    if settings.client_certificate_password_file is not None:
        password = (
            _read_private(settings.client_certificate_password_file, "certificate password file")
            .decode("utf-8", "replace")
            .strip()
        )
    if password:
        logs.register_secret(password)
    data = _read_private(path, "client certificate")
    if path.suffix.lower() in (".pfx", ".p12"):
        credential: dict[str, Any] = {"private_key_pfx_path": str(path)}
    else:
        blocks = {m.group(1).decode(): m.group(0).decode("ascii", "replace") for m in _PEM_BLOCK.finditer(data)}
        key = next((text for kind, text in blocks.items() if kind.endswith("PRIVATE KEY")), None)
        cert = blocks.get("CERTIFICATE")
        if key is None or cert is None:
            raise ConfigError(
                f"OUTLOOK_CLIENT_CERTIFICATE {path} must hold both the certificate and its private key (PEM)",
                hint="cat cert.pem key.pem > mailbot-app.pem, or use the .pfx file",
            )
        credential = {"private_key": key, "public_certificate": cert}
    if password:
        credential["passphrase"] = password
    return credential


class AppOnlyAuthenticator(Authenticator):
    """Tokens for the app itself; ``provider`` is what IMAP/SMTP get (XOAUTH2 user = the mailbox)."""

    app_only = True

    def __init__(self, settings: Settings, interactive: bool = False, out: Any = None) -> None:
        super().__init__(settings, interactive=False, out=out or sys.stderr)
        self._expires = 0.0
        tenant = urlparse(settings.authority).path.strip("/").split("/")[0].lower()
        if tenant in MULTI_TENANT:
            raise ConfigError(
                f"app-only access needs your tenant in OUTLOOK_AUTHORITY, not {tenant}",
                hint="set OUTLOOK_AUTHORITY=https://login.microsoftonline.com/<Directory (tenant) ID>",
            )

    def provider(self, force_refresh: bool = False, min_validity: float = 0) -> str:
        if self._token and not force_refresh and self._expires - time.time() >= min_validity:
            return self._token
        token = None if force_refresh else self._cached_app_token(min_validity)
        if token is None:
            token = self._app_token(force_refresh, min_validity)
        self._token = token
        logs.register_secret(token)
        return token

    def _cached_app_token(self, min_validity: float) -> str | None:
        """The cached app token read without MSAL (signin/fastpath.py), or None: ask MSAL."""
        from mailbotcore.signin import fastpath

        if not self.settings.client_id:
            return None
        outcome = fastpath.cached_token(
            self.settings.token_cache,
            client_id=self.settings.client_id,
            authority=self.settings.authority,
            scopes=APP_SCOPES,
            username=None,
        )
        if not outcome.token or outcome.expires_on is None or outcome.expires_on - time.time() < max(min_validity, 300):
            log.info("cache fast path declined (%s): asking MSAL", outcome.reason)
            return None
        log.info("app token from cache")
        self._expires = float(outcome.expires_on)
        return outcome.token

    def _app_token(self, force_refresh: bool, min_validity: float) -> str:
        client_id = self.settings.require_client_id()
        credential = client_credential(self.settings)
        with self.store.lock():
            state = self.store.read_state()
            stale = force_refresh or self._expires_in(state) < max(min_validity, 300)
            if stale:
                state = self._without_app_tokens(state)
            cache = self.store.to_cache(state)
            if stale:
                cache.has_state_changed = True  # the dropped token must not come back
            http_cache = self.store.load_http_cache()
            before = http_cache_to_json(http_cache)
            result: Any = None
            try:
                app = self._confidential_app(client_id, credential, cache, http_cache)
                result = self._call(lambda: app.acquire_token_for_client(APP_SCOPES))
            finally:
                if result_has_token(result):  # a failed refresh keeps what was there
                    self.store.save(cache)
                self.store.save_http_cache(http_cache, before)
        if result and "access_token" in result:
            log.info("app token from %s", "cache" if result.get("token_source") == "cache" else "the identity platform")
            self._expires = time.time() + float(result.get("expires_in") or 0)
            return str(result["access_token"])
        message, hint = describe_error(result or {}, self.settings.command("login"))
        code = aadsts_code(result or {})
        hint = APP_HINTS.get(code, hint) if code is not None else hint
        raise SignInRequired(f"app-only token for {client_id} refused: {message}", hint=hint)

    def _confidential_app(
        self, client_id: str, credential: str | dict[str, Any], cache: msal.SerializableTokenCache, http: dict[Any, Any]
    ) -> msal.ConfidentialClientApplication:
        import msal

        host = urlparse(self.settings.authority).hostname or ""
        try:
            return self._call(
                lambda: msal.ConfidentialClientApplication(
                    client_id,
                    client_credential=credential,
                    authority=self.settings.authority,
                    token_cache=cache,
                    http_cache=http,
                    http_client=_http_session(self.settings.ca_bundle, self.settings.timeout),
                    instance_discovery=host in MICROSOFT_HOSTS,
                )
            )
        except (ValueError, TypeError) as exc:
            # MSAL's own words about an unusable key or PFX (wrong password, no key inside).
            raise ConfigError(
                f"OUTLOOK_CLIENT_CERTIFICATE {self.settings.client_certificate} is not usable: {exc}"
            ) from exc

    def _app_entries(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        client_id = (self.settings.client_id or "").lower()
        return [
            entry
            for entry in state.get("AccessToken", {}).values()
            if not entry.get("home_account_id") and str(entry.get("client_id", "")).lower() == client_id
        ]

    def _expires_in(self, state: dict[str, Any]) -> float:
        expiries = [int(entry.get("expires_on", 0)) for entry in self._app_entries(state)]
        return (max(expiries) - time.time()) if expiries else -1.0

    def _without_app_tokens(self, state: dict[str, Any]) -> dict[str, Any]:
        client_id = (self.settings.client_id or "").lower()
        tokens = {
            key: entry
            for key, entry in state.get("AccessToken", {}).items()
            if entry.get("home_account_id") or str(entry.get("client_id", "")).lower() != client_id
        }
        return {**state, "AccessToken": tokens} if "AccessToken" in state else state

    # -- the account commands --------------------------------------------------------------

    def login(self) -> None:
        raise UsageError(
            f"app-only access for {self.username} needs no login: the app signs in by itself",
            hint=f'check it with "{self.settings.command("doctor")}"',
        )

    def login_with(
        self, method: str, timeout: float = 300, redirect_url: str | None = None, stdin: Any = None
    ) -> str | None:
        self.login()
        return None

    def status(self) -> SignInStatus:
        state = self.store.read_state()
        expiries = [int(entry.get("expires_on", 0)) for entry in self._app_entries(state)]
        credential = "certificate" if self.settings.client_certificate else "client secret"
        return SignInStatus(
            username=self.username,
            authority=self.settings.authority,
            access_token_expires=max(expiries) if expiries else None,
            refresh_token=False,
            token_cache=str(self.store.path),
            mode="app-only",
            client_id=self.settings.client_id,
            mailbox=self.settings.mailbox_user,
            credential=credential,
            cache_encrypted=self.store.encrypted_on_disk(),
        )

    def logout(self) -> tuple[bool, Path | None]:
        with self.store.lock():
            state = self.store.read_state()
            if not self._app_entries(state):
                return False, None
            self.store.write_state(self._without_app_tokens(state))
            return True, None


def result_has_token(result: Any) -> bool:
    return isinstance(result, dict) and "access_token" in result
