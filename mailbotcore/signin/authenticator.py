"""Sign-in with Microsoft (MSAL device-code flow) and the file-backed token cache.

The rest of mailbot only sees a *token provider*: ``provider(force_refresh=False) -> str``.
Everything here is about getting that token without surprises:

* silent first, from the cache, with zero requests while the access token is valid
  (MSAL's ``http_cache`` is persisted too, so not even tenant discovery is fetched again);
* the cache is saved after every change (refresh tokens rotate), atomically, mode 0600,
  under a cross-process lock with a re-read, so concurrent cron jobs never lose a token;
* a device-code sign-in only when a person is at a terminal; a cron job fails at once.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mailbotcore import logs
from mailbotcore.config import Settings
from mailbotcore.errors import ConfigError, MailbotError, ServiceRefused, SignInRequired, TemporaryFailure
from mailbotcore.net.http import http_session as _http_session
from mailbotcore.results import SignInStatus
from mailbotcore.signin.cache import TokenCacheFile, http_cache_to_json, merge_account, remove_account
from mailbotcore.signin.encryption import COMMAND_TIMEOUT, KeySource
from mailbotcore.signin.entra import SIGN_IN_AGAIN, aadsts_code, describe_error
from mailbotcore.store.files import Reservation
from mailbotcore.wire import graph as graphwire
from mailbotcore.wire.sasl import TokenProvider

if TYPE_CHECKING:
    import msal

SCOPES = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
]
# Microsoft Graph, for sending when SMTP AUTH is off. Spelled without the resource prefix on
# purpose: Entra answers Graph scopes as "Mail.Send Mail.ReadWrite", MSAL stores the access token
# under the answer, and a later silent call only finds it when it asks with the same spelling (a
# bare scope means Graph to Entra). With "https://graph.microsoft.com/Mail.Send" every run would
# refresh (tests/integration/test_graph.py::test_graph_scope_spelling_that_hits_the_cache).
GRAPH_SCOPES = graphwire.SCOPES
GRAPH_APP_SCOPES = ["https://graph.microsoft.com/.default"]  # app-only (client credentials)
GRAPH_CONSENT_HINT = (
    "add the Microsoft Graph delegated permissions Mail.Send and Mail.ReadWrite to the app registration "
    "(Entra admin center > App registrations > API permissions > Add a permission > Microsoft Graph > "
    'Delegated), grant consent, then run "{login}"'
)
MICROSOFT_HOSTS = {"login.microsoftonline.com", "login.microsoft.com", "login.windows.net"}
log = logging.getLogger("mailbot.auth")
# Before a long operation the access token must outlast it (Exchange ends a session whose token expires).
LONG_OPERATION_SECONDS = 1200.0


def person_present() -> bool:
    """A device-code sign-in needs someone to read the code and type it: both ends are terminals."""
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Authenticator:
    """Acquires access tokens for the configured mailbox; ``provider`` is what IMAP/SMTP get."""

    def __init__(self, settings: Settings, interactive: bool, out: Any = None) -> None:
        self.settings = settings
        self.username = settings.require_username()
        self.interactive = interactive
        self.out = out or sys.stderr
        keys = KeySource(settings.cache_key_file, settings.cache_key_command, min(settings.timeout, COMMAND_TIMEOUT))
        self.store = TokenCacheFile(
            settings.token_cache, max(settings.timeout * 2, 10.0), settings.command("logout"), key_source=keys
        )
        self._token: str | None = None
        self._tokens: dict[tuple[str, ...], str] = {}
        self._expires_at = float("inf")  # of _token, when known

    # -- the token provider --------------------------------------------------------------

    app_only = False

    def lasting_provider(self, seconds: float = LONG_OPERATION_SECONDS) -> TokenProvider:
        """The token provider for a long operation (fetch, outbox): its first token is good for at
        least ``seconds`` more, so Exchange does not end the session mid-run (AccessTokenExpired)."""
        first = [True]

        def provide(force_refresh: bool = False) -> str:
            if first[0] and not force_refresh:
                first[0] = False
                return self.provider(min_validity=seconds)
            return self.provider(force_refresh=force_refresh)

        return provide

    def provider(self, force_refresh: bool = False, min_validity: float = 0) -> str:
        """Return an access token, refreshing when ``force_refresh`` (the server refused the last)
        or when it expires within ``min_validity`` seconds (before a long operation)."""
        if self._token and not force_refresh and self._expires_at - time.time() >= min_validity:
            return self._token
        token = None if force_refresh else self._cached(min_validity)
        if token is None:
            token = self._silent(force_refresh)
        if token is not None and not force_refresh and self._expires_at - time.time() < min_validity:
            log.info("access token expires in less than %d s: refreshing it first", min_validity)
            token = self._silent(True)
        if token is None:
            if not self.interactive:
                raise SignInRequired(
                    f"sign-in required for {self.username}",
                    hint=f'run "{self.settings.command("login")}" in a terminal',
                )
            token = self._device_flow()
        self._token = token
        logs.register_secret(token)
        return token

    def provider_for(self, scopes: list[str]) -> Callable[..., str]:
        """A token provider for another resource (Microsoft Graph), silently from the same sign-in.

        One refresh token serves every resource, but one token request may name only one
        resource: this asks separately. No device-code flow here: a missing consent is an
        error naming the permission (``login`` asks for it)."""
        key = tuple(scopes)

        def provide(force_refresh: bool = False) -> str:
            if key in self._tokens and not force_refresh:
                return self._tokens[key]
            token = self._silent(force_refresh, scopes)
            if token is None:
                raise SignInRequired(
                    f"sign-in required for {self.username}",
                    hint=f'run "{self.settings.command("login")}" in a terminal',
                )
            self._tokens[key] = token
            logs.register_secret(token)
            return token

        return provide

    def graph_provider(self) -> Callable[..., str]:
        """The token provider for Microsoft Graph's mail API (delegated Mail.Send + Mail.ReadWrite)."""
        return self.provider_for(GRAPH_SCOPES)

    def _cached(self, min_validity: float = 0) -> str | None:
        """A valid cached access token read without MSAL (signin/fastpath.py), or None: ask MSAL.

        None too when it expires within ``min_validity`` seconds (a long operation needs more)."""
        from mailbotcore.signin import fastpath

        if not self.settings.client_id:
            return None
        outcome = fastpath.cached_token(
            self.settings.token_cache,
            client_id=self.settings.client_id,
            authority=self.settings.authority,
            scopes=SCOPES,
            username=self.username,
        )
        if not outcome.token:
            log.info("cache fast path declined (%s): asking MSAL", outcome.reason)
            return None
        if outcome.expires_on is not None and outcome.expires_on - time.time() < min_validity:
            log.info("the cached access token expires in less than %d s: asking MSAL", min_validity)
            return None
        log.info("access token from cache")
        self._expires_at = float(outcome.expires_on) if outcome.expires_on is not None else self._expires_at
        return outcome.token

    def _silent(self, force_refresh: bool, scopes: list[str] | None = None) -> str | None:
        self.settings.require_client_id()
        with self.store.lock():
            state = self.store.read_state()
            if not self.store.accounts(state, self.username):
                log.info("no cached sign-in for %s", self.username)
                return None
            cache = self.store.to_cache(state)
            http_cache = self.store.load_http_cache()
            before = http_cache_to_json(http_cache)
            # A full disk stops here, before a refresh token is spent (not when the cached token serves).
            reservation = self.store.reserve() if self.store.may_refresh(state, self.username, force_refresh) else None
            try:
                app = self._app(cache, http_cache)
                accounts = app.get_accounts(username=self.username)
                if not accounts:
                    return None
                wanted = scopes or SCOPES
                result = self._call(
                    lambda: app.acquire_token_silent_with_error(wanted, accounts[0], force_refresh=force_refresh)
                )
            finally:
                try:
                    self.store.save(cache, reservation)
                finally:
                    if reservation is not None:
                        reservation.discard()
                self.store.save_http_cache(http_cache, before)
        if result and "access_token" in result:
            log.info("access token from %s", "cache" if result.get("token_source") == "cache" else "refresh")
            if scopes is None:  # the mail token's life (Graph tokens are kept apart)
                self._expires_at = time.time() + float(result.get("expires_in") or 0)
            return str(result["access_token"])
        if result is None:
            log.info("no usable token in the cache for %s", self.username)
            return None
        message, hint = describe_error(result, self.settings.command("login"))
        code = aadsts_code(result)
        if scopes is not None and code == 65001:
            raise SignInRequired(
                f"Microsoft Graph refused a token for {self.username}: {_permissions(scopes)} not granted "
                "(AADSTS65001)",
                hint=GRAPH_CONSENT_HINT.format(login=self.settings.command("login")),
            )
        if result.get("error") in ("invalid_grant", "interaction_required") or code in SIGN_IN_AGAIN:
            log.info("refresh refused: %s", message)
            if not self.interactive:
                raise SignInRequired(
                    f"sign-in required for {self.username}: {message}",
                    hint=f'run "{self.settings.command("login")}" in a terminal',
                )
            return None
        raise SignInRequired(f"token refresh for {self.username} refused: {message}", hint=hint)

    def _app(self, cache: msal.SerializableTokenCache, http_cache: dict[Any, Any]) -> msal.PublicClientApplication:
        import msal

        authority = self.settings.authority
        host = urlparse(authority).hostname or ""
        return self._call(
            lambda: msal.PublicClientApplication(
                self.settings.require_client_id(),
                authority=authority,
                token_cache=cache,
                http_cache=http_cache,
                http_client=_http_session(self.settings.ca_bundle, self.settings.timeout),
                # Instance discovery asks login.microsoftonline.com about the host: only for Microsoft's own.
                instance_discovery=host in MICROSOFT_HOSTS,
            )
        )

    def _call(self, action: Callable[[], Any]) -> Any:
        """Run an MSAL call, turning network trouble into errors a cron job can act on."""
        import requests
        from msal.exceptions import MsalServiceError

        host = urlparse(self.settings.authority).netloc
        try:
            return action()
        except MsalServiceError as exc:
            # MSAL raises this for HTTP 5xx from the token endpoint.
            raise TemporaryFailure(f"identity platform {host} answered {exc}; try again later") from exc
        except requests.exceptions.SSLError as exc:
            raise ServiceRefused(
                f"TLS certificate of {host} could not be verified: {_reason(exc)}",
                hint="if a corporate proxy intercepts TLS, set MAILBOT_CA_BUNDLE to its CA certificate (PEM)",
            ) from exc
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise TemporaryFailure(f"identity platform {host} answered HTTP {status}; try again later") from exc
        except requests.exceptions.Timeout as exc:
            raise TemporaryFailure(
                f"identity platform {host} did not answer within {self.settings.timeout:g} s"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise TemporaryFailure(f"cannot reach identity platform {host}: {_reason(exc)}") from exc
        except ValueError as exc:
            # MSAL raises ValueError for an authority it cannot use (bad discovery document etc.).
            if "authority" in str(exc).lower() or "tenant" in str(exc).lower():
                raise ConfigError(f"OUTLOOK_AUTHORITY {self.settings.authority} is not usable: {exc}") from exc
            raise

    # -- interactive sign-in -------------------------------------------------------------

    def login(self) -> None:
        """Run the device-code flow now, whatever the cache holds; then make sure Microsoft Graph
        may be used when OUTLOOK_SEND_VIA allows it (graph: a second code if consent is missing;
        auto: a note, since Graph is only needed once SMTP AUTH turns out to be off)."""
        self._token = self._device_flow()
        if self.settings.send_via != "smtp":
            self._graph_consent()

    def _graph_consent(self) -> None:
        # Entra issues a token for one resource per request, so Graph cannot share the first code's
        # token request; a silent request with the new refresh token works when consent is there
        # (admin-granted, or granted before).
        try:
            self.graph_provider()(force_refresh=True)
            return
        except MailbotError as exc:
            if self.settings.send_via == "auto":
                # auto needs Graph only once SMTP AUTH turns out to be off: say so, do not fail the sign-in.
                print(f"note: {exc.message}; sending through Graph needs it", file=self.out, flush=True)
                if exc.hint:
                    print(f"hint: {exc.hint}", file=self.out, flush=True)
                return
            if "AADSTS65001" not in exc.message:
                raise
        print("Microsoft Graph (OUTLOOK_SEND_VIA=graph) needs your consent to Mail.Send:", file=self.out, flush=True)
        self._tokens[tuple(GRAPH_SCOPES)] = self._device_flow(GRAPH_SCOPES)

    def _device_flow(self, scopes: list[str] | None = None) -> str:
        # The flow can take 15 minutes: run it on a snapshot, then merge under the lock,
        # so cron jobs using other accounts in the same cache are not blocked meanwhile.
        with self.store.lock():
            cache = self.store.to_cache(self.store.read_state())
            http_cache = self.store.load_http_cache()
        before = http_cache_to_json(http_cache)
        # Room for the new tokens, taken before the sign-in: a full disk must not cost a sign-in.
        reservation = self.store.reserve()
        try:
            return self._device_flow_into(reservation, cache, http_cache, before, scopes or SCOPES)
        finally:
            if reservation is not None:
                reservation.discard()

    def _device_flow_into(
        self,
        reservation: Reservation | None,
        cache: msal.SerializableTokenCache,
        http_cache: dict[Any, Any],
        before: bytes,
        scopes: list[str],
    ) -> str:
        app = self._app(cache, http_cache)
        flow = self._call(lambda: app.initiate_device_flow(scopes=scopes))
        if "user_code" not in flow:
            message, hint = describe_error(flow, self.settings.command("login"))
            raise SignInRequired(f"sign-in for {self.username} could not start: {message}", hint=hint)
        minutes = max(1, round((float(flow.get("expires_at", time.time())) - time.time()) / 60))
        print(
            f"To sign in as {self.username}, open {flow.get('verification_uri')} in any browser "
            f"and enter the code {flow['user_code']} (it expires in {minutes} minutes).",
            file=self.out,
            flush=True,
        )
        print("Waiting for you to finish signing in... (Ctrl-C to cancel)", file=self.out, flush=True)
        result = self._call(lambda: app.acquire_token_by_device_flow(flow))
        if "access_token" not in result:
            message, hint = describe_error(result, self.settings.command("login"))
            error = result.get("error")
            if error == "expired_token":
                login = self.settings.command("login")
                hint = hint or f'run "{login}" again and enter the code within the time shown'
            elif error in ("authorization_declined", "access_denied"):
                hint = hint or "the sign-in was declined in the browser; run login again to retry"
            raise SignInRequired(f"sign-in for {self.username} failed: {message}", hint=hint)
        return self._save_sign_in(result, cache, http_cache, before, reservation, mail_token=scopes == SCOPES)

    def _save_sign_in(
        self,
        result: dict[str, Any],
        cache: msal.SerializableTokenCache,
        http_cache: dict[Any, Any],
        before: bytes,
        reservation: Reservation | None = None,
        mail_token: bool = True,
    ) -> str:
        """Check who signed in, then merge the account into the cache on disk (any sign-in method)."""
        signed_in = str(result.get("id_token_claims", {}).get("preferred_username", ""))
        if signed_in and signed_in.lower() != self.username.lower():
            raise SignInRequired(
                f"you signed in as {signed_in}, but OUTLOOK_USERNAME is {self.username}; nothing was saved",
                hint=f"sign in as {self.username}, or set OUTLOOK_USERNAME={signed_in}",
            )
        home_account_id = self._home_account_id(cache)
        with self.store.lock():
            disk = self.store.read_state()
            self.store.write_state(merge_account(disk, json.loads(cache.serialize()), home_account_id), reservation)
            self.store.save_http_cache(http_cache, before)
        if mail_token:
            self._expires_at = time.time() + float(result.get("expires_in") or 0)
        return str(result["access_token"])

    def login_with(
        self, method: str, timeout: float = 300, redirect_url: str | None = None, stdin: Any = None
    ) -> str | None:
        """Sign in with the authorization code flow (``browser``, ``paste``, ``print-url``,
        ``redirect-url``); returns the sign-in address for ``print-url``, else None."""
        from mailbotcore.signin.flows import CodeFlow

        flow = CodeFlow(self, self.out)
        if method == "print-url":
            return flow.print_url()
        if method == "browser":
            self._token = flow.browser(timeout)
        elif method == "paste":
            self._token = flow.paste(stdin or sys.stdin)
        elif method == "redirect-url":
            self._token = flow.redeem(redirect_url or "")
        else:
            raise ValueError(f"unknown sign-in method {method}")
        return None

    def _home_account_id(self, cache: msal.SerializableTokenCache) -> str:
        for account in json.loads(cache.serialize()).get("Account", {}).values():
            if str(account.get("username", "")).lower() == self.username.lower():
                return str(account["home_account_id"])
        raise SignInRequired(f"the identity platform returned no account for {self.username}")

    # -- no-network views of the cache ---------------------------------------------------

    def status(self) -> SignInStatus:
        """What ``whoami`` shows: who is signed in and until when, from the cache alone."""
        state = self.store.read_state()
        accounts = self.store.accounts(state, self.username)
        if not accounts:
            raise SignInRequired(
                f"not signed in as {self.username}",
                hint=f'run "{self.settings.command("login")}" in a terminal',
            )
        home = accounts[0]["home_account_id"]
        expiries = [
            int(entry.get("expires_on", 0))
            for entry in state.get("AccessToken", {}).values()
            if entry.get("home_account_id") == home
        ]
        refresh = [e for e in state.get("RefreshToken", {}).values() if e.get("home_account_id") == home]
        last_used = [
            float(e["last_modification_time"]) for e in refresh if str(e.get("last_modification_time", "")).isdigit()
        ]
        return SignInStatus(
            username=str(accounts[0].get("username", self.username)),
            authority=self.settings.authority,
            access_token_expires=max(expiries) if expiries else None,
            refresh_token=bool(refresh),
            token_cache=str(self.store.path),
            client_id=self.settings.client_id,
            mailbox=self.settings.mailbox_user,
            cache_encrypted=self.store.encrypted_on_disk(),
            refresh_token_last_used=max(last_used) if last_used else None,
        )

    def expires_at(self) -> float | None:
        """When this account's newest cached access token expires (epoch seconds), from the
        cache alone; None when unknown. ``watch`` replaces its session before then."""
        try:
            return self.status().access_token_expires
        except SignInRequired:
            return None

    def logout(self) -> tuple[bool, Path | None]:
        """Remove this account's tokens (others stay): (removed, None). A corrupt cache is moved
        aside instead: (True, where it went)."""
        with self.store.lock():
            try:
                state = self.store.read_state()
            except SignInRequired:
                if not self.store.path.exists():
                    raise
                aside = self.store.path.with_name(f"{self.store.path.name}.corrupt-{time.strftime('%Y%m%d%H%M%S')}")
                os.replace(self.store.path, aside)
                return True, aside
            homes = {a["home_account_id"] for a in self.store.accounts(state, self.username)}
            for home in homes:
                state = remove_account(state, home)
            if homes:
                self.store.write_state(state)
            return bool(homes), None


def _permissions(scopes: list[str]) -> str:
    """ "the permission X was" / "the permissions X and Y were", for one error line."""
    if len(scopes) == 1:
        return f"the permission {scopes[0]} was"
    return f"the permissions {', '.join(scopes[:-1])} and {scopes[-1]} were"


def _reason(exc: BaseException) -> str:
    """The innermost cause's text: requests wraps urllib3 wraps socket errors."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
