"""The sign-in commands: ``login``, ``logout`` and ``whoami``."""

from __future__ import annotations

import base64

from mailbotcore.commands.options import LoginOptions, TokenOptions
from mailbotcore.config import Settings
from mailbotcore.results import LoginResult, LogoutResult, SignInStatus, TokenResult
from mailbotcore.signin.authenticator import Authenticator
from mailbotcore.wire import sasl


def login(options: LoginOptions, settings: Settings, auth: Authenticator) -> LoginResult:
    """Always signs in now: a person asked for it, so a terminal is not required."""
    settings.require_client_id()
    if options.method == "device-code":
        auth.login()
        return LoginResult(auth.username)
    url = auth.login_with(options.method, options.timeout, options.redirect_url)
    if url is not None:
        return LoginResult(auth.username, sign_in_url=url)
    return LoginResult(auth.username)


def logout(settings: Settings, auth: Authenticator) -> LogoutResult:
    removed, aside = auth.logout()
    return LogoutResult(auth.username, removed, str(settings.token_cache), str(aside) if aside is not None else None)


def whoami(settings: Settings, auth: Authenticator) -> SignInStatus:
    return auth.status()


def token(options: TokenOptions, settings: Settings, auth: Authenticator) -> TokenResult:
    """A token valid for a few more minutes (silent refresh; exit 77 when a person must sign in)."""
    value = auth.provider(min_validity=300)
    if options.xoauth2:
        value = base64.b64encode(sasl.xoauth2_initial_response(settings.mailbox_user, value).encode()).decode()
    return TokenResult(value)
