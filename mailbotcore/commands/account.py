"""The sign-in commands: ``login``, ``logout`` and ``whoami``."""

from __future__ import annotations

from mailbotcore.commands.options import LoginOptions
from mailbotcore.config import Settings
from mailbotcore.results import LoginResult, LogoutResult, SignInStatus
from mailbotcore.signin.authenticator import Authenticator


def login(options: LoginOptions, settings: Settings, auth: Authenticator) -> LoginResult:
    """Always signs in now: a person asked for it, so a terminal is not required."""
    settings.require_client_id()
    auth.login()
    return LoginResult(auth.username)


def logout(settings: Settings, auth: Authenticator) -> LogoutResult:
    removed, aside = auth.logout()
    return LogoutResult(auth.username, removed, str(settings.token_cache), str(aside) if aside is not None else None)


def whoami(settings: Settings, auth: Authenticator) -> SignInStatus:
    return auth.status()
