"""A cached access token without MSAL: the cheap path of a cron run.

``import msal`` costs a cron run about 80 ms of CPU and 20 MB (it pulls in requests, urllib3 and
cryptography), although a run whose cached access token is still valid needs no request to the
identity platform. :func:`cached_token` reads the token cache file — MSAL's documented cache
schema, written by MSAL — and picks the access token exactly as MSAL's
``acquire_token_silent`` (msal 1.x, ``_acquire_token_silent_from_cache_and_possibly_refresh_it``)
would, or *declines* (returns ``None`` with a reason) so that the caller asks MSAL:

* **account**: ``Account`` entries of the authority's environment whose ``authority_type`` is
  MSSTS or ADFS, grouped by ``home_account_id`` (the last entry of a group wins, as in MSAL's
  ``get_accounts``), then filtered by username, case-insensitively. Exactly one account, or decline
  (none: MSAL may look at alias environments; several: which one MSAL takes is an accident of order).
  App-only tokens (``ConfidentialClientApplication.acquire_token_for_client``) have no account:
  ``username=None`` looks for entries whose ``home_account_id`` is null.
* **client id, environment, realm**: equal, as MSAL's ``is_subdict_of`` compares them (the key must
  be present; the environment is the authority's host in lower case, without the port; the realm is
  the authority's tenant). MSAL takes the realm from the token endpoint of the discovery document;
  for a GUID and for ``organizations``/``common``/``consumers`` Entra's endpoint repeats the path's
  tenant, and for a domain-name tenant (``contoso.onmicrosoft.com``) it is the GUID, so nothing
  matches and the fast path declines — never a different pick. Alias environments
  (``login.windows.net`` for ``login.microsoftonline.com``) are only consulted by MSAL when the
  authority's own environment has nothing: the fast path then declines.
* **scopes**: the entry's ``target`` contains every requested scope (MSAL compares them exactly; an
  entry that would match only case-insensitively makes the fast path decline).
* **expiry**: MSAL treats an entry with less than 5 minutes left as expired and skips it; of the
  remaining matches there must be exactly one, with at least 5 minutes + :data:`SLACK_S` left, and
  its ``refresh_on`` (when present) not reached — MSAL refreshes then.
* anything unexpected declines: a file that is not a private regular file of this user, not plain
  JSON (e.g. an encrypted cache), malformed entries, tokens bound to a key (``key_id``) or cached
  under an extended key (``ext_cache_key``), a token type other than Bearer, a B2C/CIAM/ADFS or
  unusual authority URL, Azure Cloud Shell.

It never writes the cache: MSAL's only write on this path (dropping expired access tokens) is
harmless to skip. Only the standard library's json/os/time are used.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# MSAL: "if expires_in < 5*60: consider it expired".
MSAL_EXPIRY_MARGIN_S = 300
# Ours on top, so that the token is still valid by MSAL's own rule when it is used.
SLACK_S = 30
ACCOUNT_AUTHORITY_TYPES = ("MSSTS", "ADFS")  # msal.TokenCache.AuthorityType
MAX_CACHE_BYTES = 8 * 1024 * 1024
_B2C_HOST_SUFFIXES = ("b2clogin.com", "b2clogin.cn", "b2clogin.us", "b2clogin.de", "ciamlogin.com")


@dataclass(frozen=True)
class Outcome:
    """``token`` when the cache decides; otherwise ``None`` and why MSAL must be asked."""

    token: str | None
    reason: str
    expires_on: int | None = None


def _decline(reason: str) -> Outcome:
    return Outcome(None, reason)


def authority_parts(authority: str) -> tuple[str, str] | None:
    """(environment, realm) as MSAL derives them from an Entra authority URL; None if unusual."""
    try:
        parts = urlsplit(authority)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme != "https" or not host or parts.query or parts.fragment or parts.username:
        return None
    segments = parts.path.split("/")
    # "/tenant" only: B2C policies, CIAM and v1/v2 suffixes go to MSAL.
    if len(segments) != 2 or not segments[1]:
        return None
    tenant = segments[1]
    host = host.lower()
    if tenant.lower() == "adfs" or tenant.lower().startswith("b2c_"):
        return None
    if any(host == s or host.endswith("." + s) for s in _B2C_HOST_SUFFIXES):
        return None
    return host, tenant


def read_cache(path: Path) -> dict[str, Any] | str:
    """The cache file as a dict, or the reason it cannot be used here."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return f"cannot open the token cache ({exc.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return "the token cache is not a private regular file of this user"
        if info.st_size > MAX_CACHE_BYTES:
            return "the token cache is unusually large"
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CACHE_BYTES + 1)
    except OSError as exc:
        return f"cannot read the token cache ({exc.strerror})"
    finally:
        os.close(fd)
    try:
        state = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "the token cache is not plain JSON"
    if not isinstance(state, dict):
        return "the token cache is not a JSON object"
    return state


def _section(state: dict[str, Any], name: str) -> list[dict[str, Any]] | None:
    section = state.get(name, {})
    if not isinstance(section, dict) or not all(isinstance(v, dict) for v in section.values()):
        return None
    return list(section.values())


def _subdict(query: dict[str, Any], entry: dict[str, Any]) -> bool:
    """MSAL's ``is_subdict_of``: every key present and equal."""
    return all(key in entry and entry[key] == value for key, value in query.items())


def home_account_id(state: dict[str, Any], environment: str, username: str) -> str | Outcome:
    accounts = _section(state, "Account")
    if accounts is None:
        return _decline("malformed Account section")
    if os.environ.get("AZUREPS_HOST_ENVIRONMENT", "").startswith("cloud-shell"):
        return _decline("Azure Cloud Shell")
    grouped: dict[Any, dict[str, Any]] = {}
    for entry in accounts:
        if entry.get("environment") != environment:
            continue
        if "authority_type" not in entry:
            return _decline("an Account entry without authority_type")
        if entry["authority_type"] in ACCOUNT_AUTHORITY_TYPES:
            grouped[entry.get("home_account_id")] = entry
    wanted = username.lower()
    homes = []
    for home, entry in grouped.items():
        name = entry.get("username")
        if not isinstance(name, str):
            return _decline("an Account entry without a username")
        if name.lower() == wanted:
            homes.append(home)
    if len(homes) != 1:
        return _decline(f"{len(homes)} cached accounts for the user in {environment}")
    if not isinstance(homes[0], str) or not homes[0]:
        return _decline("an account without home_account_id")
    return homes[0]


def cached_token(
    path: Path,
    *,
    client_id: str,
    authority: str,
    scopes: list[str],
    username: str | None,
    now: float | None = None,
) -> Outcome:
    """The access token MSAL's ``acquire_token_silent`` would return from the cache without any
    request, or a declined :class:`Outcome`. ``username=None``: an app-only (client credentials)
    token of ``client_id``."""
    if not scopes or not all(isinstance(s, str) and s for s in scopes):
        return _decline("no scopes")
    parsed = authority_parts(authority)
    if parsed is None:
        return _decline(f"authority {authority} is not a plain Entra-style authority")
    environment, realm = parsed
    state = read_cache(path)
    if isinstance(state, str):
        return _decline(state)
    now = time.time() if now is None else now
    if username is None:
        home: str | None = None
    else:
        found = home_account_id(state, environment, username)
        if isinstance(found, Outcome):
            return found
        home = found
    tokens = _section(state, "AccessToken")
    if tokens is None:
        return _decline("malformed AccessToken section")
    query = {"client_id": client_id, "environment": environment, "realm": realm, "home_account_id": home}
    wanted = set(scopes)
    wanted_lower = {s.lower() for s in scopes}
    candidates = []
    for entry in tokens:
        if not _subdict(query, entry):
            continue
        target = entry.get("target", "")
        if not isinstance(target, str):
            return _decline("an access token with a malformed target")
        granted = set(target.split())
        if not wanted <= granted:
            if wanted_lower <= {s.lower() for s in granted}:
                return _decline("scopes match an access token only case-insensitively")
            continue
        if "ext_cache_key" in entry:
            continue  # MSAL: entries with an extended key never match a query without one
        if "key_id" in entry:
            return _decline("an access token bound to a key")
        try:
            expires_on = int(entry["expires_on"])
        except (KeyError, TypeError, ValueError):
            return _decline("an access token without a usable expires_on")
        if expires_on - now < MSAL_EXPIRY_MARGIN_S:
            continue  # expired by MSAL's rule: it skips it
        candidates.append((entry, expires_on))
    if len(candidates) != 1:
        return _decline(f"{len(candidates)} valid access tokens match")
    entry, expires_on = candidates[0]
    if expires_on - now < MSAL_EXPIRY_MARGIN_S + SLACK_S:
        return _decline("the access token expires within minutes")
    if "refresh_on" in entry:
        try:
            refresh_on = int(entry["refresh_on"])
        except (TypeError, ValueError):
            return _decline("an access token with a malformed refresh_on")
        if refresh_on < now + SLACK_S:
            return _decline("the access token is due for refresh (refresh_on)")
    if str(entry.get("token_type", "Bearer")).lower() != "bearer":
        return _decline("an access token that is not a Bearer token")
    secret = entry.get("secret")
    if not isinstance(secret, str) or not secret:
        return _decline("an access token without a secret")
    return Outcome(secret, "valid cached access token", expires_on)
