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
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mailbotcore import logs
from mailbotcore.config import Settings
from mailbotcore.errors import ConfigError, ServiceRefused, SignInRequired, TemporaryFailure
from mailbotcore.results import SignInStatus
from mailbotcore.signin.cache import TokenCacheFile, discovery_only, merge_account, remove_account
from mailbotcore.signin.entra import SIGN_IN_AGAIN, aadsts_code, describe_error

if TYPE_CHECKING:
    import msal

SCOPES = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
]
MICROSOFT_HOSTS = {"login.microsoftonline.com", "login.microsoft.com", "login.windows.net"}
log = logging.getLogger("mailbot.auth")


def _http_session(ca_bundle: Path | None, timeout: float) -> Any:
    import requests

    class Session(requests.Session):
        """A requests session that always applies our timeout and CA bundle.

        requests lets REQUESTS_CA_BUNDLE override a session's ``verify`` when a request
        passes none (MSAL passes none), so the bundle is re-applied after the merge."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("timeout", timeout)
            return super().request(method, url, *args, **kwargs)

        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings = super().merge_environment_settings(*args, **kwargs)
            if ca_bundle is not None:
                settings["verify"] = str(ca_bundle)
            return settings

    session = Session()
    if ca_bundle is not None:
        session.verify = str(ca_bundle)
    return session


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
        self.store = TokenCacheFile(settings.token_cache, max(settings.timeout * 2, 10.0), settings.command("logout"))
        self._token: str | None = None

    # -- the token provider --------------------------------------------------------------

    def provider(self, force_refresh: bool = False) -> str:
        """Return an access token, refreshing when ``force_refresh`` (the server refused the last)."""
        if self._token and not force_refresh:
            return self._token
        token = None if force_refresh else self._cached()
        if token is None:
            token = self._silent(force_refresh)
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

    def _cached(self) -> str | None:
        """A valid cached access token read without MSAL (signin/fastpath.py), or None: ask MSAL."""
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
        if outcome.token:
            log.info("access token from cache")
        else:
            log.info("cache fast path declined (%s): asking MSAL", outcome.reason)
        return outcome.token

    def _silent(self, force_refresh: bool) -> str | None:
        self.settings.require_client_id()
        with self.store.lock():
            state = self.store.read_state()
            if not self.store.accounts(state, self.username):
                log.info("no cached sign-in for %s", self.username)
                return None
            cache = self.store.to_cache(state)
            http_cache = self.store.load_http_cache()
            before = pickle.dumps(discovery_only(http_cache))
            try:
                app = self._app(cache, http_cache)
                accounts = app.get_accounts(username=self.username)
                if not accounts:
                    return None
                result = self._call(
                    lambda: app.acquire_token_silent_with_error(SCOPES, accounts[0], force_refresh=force_refresh)
                )
            finally:
                self.store.save(cache)
                self.store.save_http_cache(http_cache, before)
        if result and "access_token" in result:
            log.info("access token from %s", "cache" if result.get("token_source") == "cache" else "refresh")
            return str(result["access_token"])
        if result is None:
            log.info("no usable token in the cache for %s", self.username)
            return None
        message, hint = describe_error(result, self.settings.command("login"))
        code = aadsts_code(result)
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
        """Run the device-code flow now, whatever the cache holds."""
        self._token = self._device_flow()

    def _device_flow(self) -> str:
        # The flow can take 15 minutes: run it on a snapshot, then merge under the lock,
        # so cron jobs using other accounts in the same cache are not blocked meanwhile.
        with self.store.lock():
            cache = self.store.to_cache(self.store.read_state())
            http_cache = self.store.load_http_cache()
        before = pickle.dumps(discovery_only(http_cache))
        app = self._app(cache, http_cache)
        flow = self._call(lambda: app.initiate_device_flow(scopes=SCOPES))
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
        signed_in = str(result.get("id_token_claims", {}).get("preferred_username", ""))
        if signed_in and signed_in.lower() != self.username.lower():
            raise SignInRequired(
                f"you signed in as {signed_in}, but OUTLOOK_USERNAME is {self.username}; nothing was saved",
                hint=f"sign in as {self.username}, or set OUTLOOK_USERNAME={signed_in}",
            )
        home_account_id = self._home_account_id(cache)
        with self.store.lock():
            disk = self.store.read_state()
            self.store.write_state(merge_account(disk, json.loads(cache.serialize()), home_account_id))
            self.store.save_http_cache(http_cache, before)
        return str(result["access_token"])

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
        has_refresh = any(entry.get("home_account_id") == home for entry in state.get("RefreshToken", {}).values())
        return SignInStatus(
            username=str(accounts[0].get("username", self.username)),
            authority=self.settings.authority,
            access_token_expires=max(expiries) if expiries else None,
            refresh_token=has_refresh,
            token_cache=str(self.store.path),
        )

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


def _reason(exc: BaseException) -> str:
    """The innermost cause's text: requests wraps urllib3 wraps socket errors."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
