"""Sign-in for your own scripts, from a clone: reuse mailbot's tokens, keep your own IMAP/SMTP code.

    import imaplib, ssl
    import auth

    imap = imaplib.IMAP4_SSL("outlook.office365.com", ssl_context=ssl.create_default_context())
    imap.authenticate("XOAUTH2", lambda _: auth.xoauth2_string())

Both functions refresh silently with the token cache ``python mailbot.py login`` filled
(0 requests while the cached access token is valid); with app-only settings
(OUTLOOK_CLIENT_SECRET_FILE or OUTLOOK_CLIENT_CERTIFICATE) they get the app's token instead.
They are what ``python mailbot.py token`` (and ``token --xoauth2``, base64 of the same) print.
When a person must sign in again they raise ``mailbotcore.errors.SignInRequired``, whose
``hint`` says what to run. Not installed by pip: installed code uses ``mailbotcore.signin``.
"""

from __future__ import annotations

import config
from mailbotcore.errors import SignInRequired
from mailbotcore.signin.app_only import AppOnlyAuthenticator
from mailbotcore.signin.authenticator import Authenticator
from mailbotcore.wire.sasl import TokenProvider, xoauth2_initial_response

__all__ = ["SignInRequired", "access_token", "token_provider", "xoauth2_string"]


def _authenticator(settings: config.Settings) -> Authenticator:
    if settings.app_only:
        return AppOnlyAuthenticator(settings)
    return Authenticator(settings, interactive=False)


def token_provider(env_file: str | None = None, account: str | None = None) -> TokenProvider:
    """A callable ``provider(force_refresh=False) -> str`` for the configured account (no prompts)."""
    settings = config.load_settings(env_file, account)
    return _authenticator(settings).provider


def access_token(env_file: str | None = None, account: str | None = None, force_refresh: bool = False) -> str:
    """A valid access token for IMAP and SMTP of the configured mailbox."""
    settings = config.load_settings(env_file, account)
    return _authenticator(settings).provider(force_refresh=force_refresh, min_validity=300)


def xoauth2_string(env_file: str | None = None, account: str | None = None) -> bytes:
    """The SASL XOAUTH2 client response (before base64), as imaplib's ``authenticate`` wants it."""
    settings = config.load_settings(env_file, account)
    token = _authenticator(settings).provider(min_validity=300)
    return xoauth2_initial_response(settings.mailbox_user, token).encode()
