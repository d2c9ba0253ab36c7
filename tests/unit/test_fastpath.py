"""The token-cache fast path (mailbotcore/signin/fastpath.py) picks what MSAL picks, or declines.

Cache states are written by MSAL itself (``msal.TokenCache.add`` with the events its token
responses produce: device-code sign-ins with client_info and an ID token, and client-credentials
responses without an account), saved the way mailbot saves them, then read by both: the fast path
from the file, and real MSAL (``PublicClientApplication.get_accounts`` + ``acquire_token_silent_with_error``
exactly as ``Authenticator._silent`` calls it, or ``ConfidentialClientApplication.acquire_token_for_client``
for app-only tokens). MSAL's HTTP goes to a small in-process HTTP stand-in (MSAL's documented
``http_client`` parameter) that serves discovery documents and refuses every token request, and
counts them: a token MSAL returns with ``token_source == "cache"`` and no token request is MSAL's
cache pick. The fast path must return that same token or decline; when MSAL needed the network, it
must decline.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any

import msal
import pytest

from mailbotcore.signin import fastpath
from mailbotcore.signin.authenticator import SCOPES

IMAP, SMTP = SCOPES
ENVIRONMENTS = ["login.microsoftonline.com", "login.windows.net"]
ALIASES = ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"]
TENANT_A = "11111111-2222-3333-4444-555555555555"
TENANT_B = "99999999-8888-7777-6666-555555555555"
REALMS = ["organizations", "common", "consumers", TENANT_A, TENANT_B]
CLIENTS = ["5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f", "0f0e0d0c-0b0a-0908-0706-050403020100"]
USERS = ["ada@example.com", "Bob@Example.com", "carol@example.com"]
SCOPE_SETS = [
    [IMAP, SMTP],
    [IMAP],
    [SMTP],
    [IMAP, SMTP, "https://outlook.office.com/POP.AccessAsUser.All"],
    ["https://outlook.office.com/imap.accessasuser.all", "https://outlook.office.com/smtp.send"],
    ["https://outlook.office365.com/.default"],
]
# Where the fast path declines although MSAL would still use its cached token: within our slack
# of the 5-minute margin, several accounts for one username (MSAL takes the first), accounts only
# in an alias environment, and an entry that matches the scopes only case-insensitively.
CAUTIOUS = (
    "the access token expires within minutes",
    "the access token is due for refresh (refresh_on)",
    "scopes match an access token only case-insensitively",
    "0 cached accounts for the user in ",
    "2 cached accounts for the user in ",
    "3 cached accounts for the user in ",
)
LIFETIMES = [-600, 60, 290, 310, 320, 400, 3600, 7200]


class _Response:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status_code = status
        self.text = json.dumps(body)
        self.headers: dict[str, str] = {}

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


class StandIn:
    """Discovery documents for any host and tenant; every token request refused (and counted)."""

    def __init__(self) -> None:
        self.token_requests = 0

    def get(self, url: str, params: Any = None, headers: Any = None, **kwargs: Any) -> _Response:
        if "/discovery/instance" in url:
            return _Response(
                200,
                {
                    "tenant_discovery_endpoint": "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": "login.microsoftonline.com",
                            "preferred_cache": "login.windows.net",
                            "aliases": ALIASES,
                        }
                    ],
                },
            )
        if url.endswith("/v2.0/.well-known/openid-configuration"):
            base = url[: -len("/v2.0/.well-known/openid-configuration")]
            return _Response(
                200,
                {
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    "issuer": f"{base}/v2.0",
                },
            )
        return _Response(404, {"error": "not_found"})

    def post(self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kwargs: Any) -> _Response:
        self.token_requests += 1
        return _Response(400, {"error": "invalid_grant", "error_description": "AADSTS70000: stand-in refuses"})

    def close(self) -> None:
        pass


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _sign_in_event(rng: random.Random, n: int, now: int) -> dict[str, Any]:
    """What MSAL's cache receives from a device-code sign-in or refresh (see TokenCache.__add)."""
    user = rng.choice(USERS)
    environment, realm, client = rng.choice(ENVIRONMENTS), rng.choice(REALMS), rng.choice(CLIENTS)
    uid = f"uid-{rng.randrange(3)}-{user.split('@')[0].lower()}"
    utid = rng.choice([TENANT_A, TENANT_B])
    claims = {"preferred_username": user, "oid": uid, "sub": uid, "tid": utid}
    response: dict[str, Any] = {
        "access_token": f"at-{n}",
        "token_type": "Bearer",
        "expires_in": rng.choice(LIFETIMES) if rng.random() < 0.95 else 3600,
        "refresh_token": f"rt-{n}",
        "client_info": _b64({"uid": uid, "utid": utid}),
        "id_token": f"{_b64({'alg': 'none'})}.{_b64(claims)}.",
    }
    if rng.random() < 0.25:
        response["refresh_in"] = rng.choice([-60, 10, 200, 1800])
    return {
        "client_id": client,
        "scope": rng.choice(SCOPE_SETS),
        "token_endpoint": f"https://{environment}/{realm}/oauth2/v2.0/token",
        "environment": environment,
        "response": response,
        "grant_type": "device_code" if rng.random() < 0.7 else "refresh_token",
    }


def _app_only_event(rng: random.Random, n: int) -> dict[str, Any]:
    """What ConfidentialClientApplication.acquire_token_for_client puts in the cache: no account."""
    environment, realm = rng.choice(ENVIRONMENTS), rng.choice([TENANT_A, TENANT_B])
    response: dict[str, Any] = {
        "access_token": f"app-{n}",
        "token_type": "Bearer",
        "expires_in": rng.choice(LIFETIMES),
    }
    if rng.random() < 0.25:
        response["refresh_in"] = rng.choice([-60, 200, 1800])
    return {
        "client_id": rng.choice(CLIENTS),
        "scope": rng.choice([["https://outlook.office365.com/.default"], [IMAP]]),
        "token_endpoint": f"https://{environment}/{realm}/oauth2/v2.0/token",
        "environment": environment,
        "response": response,
        "grant_type": "client_credentials",
    }


def _state(rng: random.Random, now: int) -> str:
    cache = msal.TokenCache()
    for n in range(rng.randint(1, 9)):
        event = _app_only_event(rng, n) if rng.random() < 0.25 else _sign_in_event(rng, n, now)
        cache.add(event, now=now)
    # Saved as mailbot's TokenCacheFile saves it.
    return json.dumps(json.loads(json.dumps(cache._cache)), indent=1, sort_keys=True)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "token_cache.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def _msal_user(text: str, client: str, authority: str, username: str, scopes: list[str]) -> tuple[str | None, int]:
    """Authenticator._silent's MSAL calls; (token MSAL took from the cache without network, requests)."""
    stand_in = StandIn()
    cache = msal.SerializableTokenCache()
    cache.deserialize(text)
    host = authority.split("/")[2]
    app = msal.PublicClientApplication(
        client,
        authority=authority,
        token_cache=cache,
        http_client=stand_in,
        instance_discovery=host in ALIASES,
    )
    accounts = app.get_accounts(username=username)
    if not accounts:
        return None, stand_in.token_requests
    result = app.acquire_token_silent_with_error(scopes, accounts[0])
    if result and result.get("token_source") == "cache" and stand_in.token_requests == 0:
        return str(result["access_token"]), 0
    return None, stand_in.token_requests


def _msal_app_only(text: str, client: str, authority: str, scopes: list[str]) -> tuple[str | None, int]:
    stand_in = StandIn()
    cache = msal.SerializableTokenCache()
    cache.deserialize(text)
    app = msal.ConfidentialClientApplication(
        client, client_credential="stand-in-secret", authority=authority, token_cache=cache, http_client=stand_in
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        result = app.acquire_token_for_client(scopes)
    if result and result.get("token_source") == "cache" and stand_in.token_requests == 0:
        return str(result["access_token"]), 0
    return None, stand_in.token_requests


def _queries(rng: random.Random, text: str) -> list[tuple[str | None, str, str, list[str]]]:
    """Random queries, and queries aimed at entries of the state (so that many can hit)."""
    out: list[tuple[str | None, str, str, list[str]]] = []
    state = json.loads(text)
    names = {a["home_account_id"]: a["username"] for a in state.get("Account", {}).values()}
    for entry in rng.sample(list(state["AccessToken"].values()), min(4, len(state["AccessToken"]))):
        target = entry["target"].split()
        scopes = rng.sample(target, rng.randint(1, len(target)))
        home = entry["home_account_id"]
        username = None if home is None else names[home]
        if username and rng.random() < 0.3:
            username = username.swapcase()
        out.append((username, entry["client_id"], f"https://{entry['environment']}/{entry['realm']}", scopes))
    for _ in range(4):
        user = rng.choice([*USERS, "ADA@example.com", "nobody@example.com"])
        out.append((user, rng.choice(CLIENTS), f"https://{rng.choice(ENVIRONMENTS)}/{rng.choice(REALMS)}", SCOPES))
    out.append(
        (rng.choice(USERS), rng.choice(CLIENTS), f"https://login.microsoftonline.com/{rng.choice(REALMS)}", [IMAP])
    )
    out.append(
        (
            None,
            rng.choice(CLIENTS),
            f"https://{rng.choice(ENVIRONMENTS)}/{rng.choice([TENANT_A, TENANT_B])}",
            rng.choice([["https://outlook.office365.com/.default"], [IMAP]]),
        )
    )
    return out


def test_fast_path_picks_what_msal_picks_or_declines_over_many_cache_states(tmp_path: Path) -> None:
    rng = random.Random(15)
    agreed = declined_msal_cached = declined_msal_network = 0
    for i in range(250):
        now = int(time.time())
        text = _state(rng, now)
        path = _write(tmp_path, text)
        for username, client, authority, scopes in _queries(rng, text):
            ours = fastpath.cached_token(path, client_id=client, authority=authority, scopes=scopes, username=username)
            if username is None:
                theirs, _requests = _msal_app_only(text, client, authority, scopes)
            else:
                theirs, _requests = _msal_user(text, client, authority, username, scopes)
            where = f"state {i}, query {(username, client, authority, scopes)}: {ours.reason}\n{text}"
            if ours.token is not None:
                assert ours.token == theirs, where
                agreed += 1
            elif theirs is not None:
                # Declining when MSAL had a cached token costs only speed; only for these reasons.
                assert ours.reason.startswith(CAUTIOUS), where
                declined_msal_cached += 1
            else:
                declined_msal_network += 1
    # The comparison means something: the fast path decides often, and MSAL went to the network
    # (where the fast path must decline) in many states too.
    assert agreed >= 150, (agreed, declined_msal_cached, declined_msal_network)
    assert declined_msal_network >= 150


def _one_sign_in(now: int, **overrides: Any) -> str:
    event = {
        "client_id": CLIENTS[0],
        "scope": SCOPES,
        "token_endpoint": "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
        "environment": "login.microsoftonline.com",
        "response": {
            "access_token": "at-1",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt-1",
            "client_info": _b64({"uid": "u1", "utid": TENANT_A}),
            "id_token": f"{_b64({'alg': 'none'})}.{_b64({'preferred_username': USERS[0], 'sub': 'u1'})}.",
        },
        "grant_type": "device_code",
    }
    event["response"].update(overrides)
    cache = msal.TokenCache()
    cache.add(event, now=now)
    return json.dumps(cache._cache, indent=1, sort_keys=True)


def _pick(path: Path, username: str | None = USERS[0], **kw: Any) -> fastpath.Outcome:
    args: dict[str, Any] = {
        "client_id": CLIENTS[0],
        "authority": "https://login.microsoftonline.com/organizations",
        "scopes": SCOPES,
        "username": username,
    }
    args.update(kw)
    return fastpath.cached_token(path, **args)


def test_valid_token_is_returned_and_matches_msal(tmp_path: Path) -> None:
    text = _one_sign_in(int(time.time()))
    path = _write(tmp_path, text)
    assert _pick(path) == fastpath.Outcome("at-1", "valid cached access token", _pick(path).expires_on)
    assert _pick(path, username=USERS[0].upper()).token == "at-1"
    assert _msal_user(text, CLIENTS[0], "https://login.microsoftonline.com/organizations", USERS[0], SCOPES) == (
        "at-1",
        0,
    )


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"expires_in": 310}, "the access token expires within minutes"),
        ({"expires_in": 200}, "0 valid access tokens match"),
        ({"refresh_in": -5}, "the access token is due for refresh (refresh_on)"),
    ],
)
def test_near_expiry_and_refresh_on_decline(tmp_path: Path, overrides: dict[str, Any], reason: str) -> None:
    path = _write(tmp_path, _one_sign_in(int(time.time()), **overrides))
    assert _pick(path) == fastpath.Outcome(None, reason)


def test_two_matching_tokens_decline(tmp_path: Path) -> None:
    now = int(time.time())
    state = json.loads(_one_sign_in(now))
    second = dict(next(iter(state["AccessToken"].values())), secret="at-2", target=f"{IMAP} {SMTP} openid")
    state["AccessToken"]["another-key"] = second
    path = _write(tmp_path, json.dumps(state))
    assert _pick(path) == fastpath.Outcome(None, "2 valid access tokens match")


def test_other_client_tenant_environment_or_scope_case_declines(tmp_path: Path) -> None:
    path = _write(tmp_path, _one_sign_in(int(time.time())))
    assert _pick(path, client_id=CLIENTS[1]).reason == "0 valid access tokens match"
    assert _pick(path, authority=f"https://login.microsoftonline.com/{TENANT_A}").reason == (
        "0 valid access tokens match"
    )
    assert _pick(path, authority="https://login.windows.net/organizations").reason == (
        "0 cached accounts for the user in login.windows.net"
    )
    assert _pick(path, scopes=[s.lower() for s in SCOPES]).reason == (
        "scopes match an access token only case-insensitively"
    )
    assert _pick(path, username="someone@example.com").reason == (
        "0 cached accounts for the user in login.microsoftonline.com"
    )


def test_app_only_entries_match_without_an_account(tmp_path: Path) -> None:
    cache = msal.TokenCache()
    event = _app_only_event(random.Random(1), 7)
    event.update(
        environment="login.microsoftonline.com",
        token_endpoint=f"https://login.microsoftonline.com/{TENANT_A}/oauth2/v2.0/token",
        client_id=CLIENTS[0],
        scope=["https://outlook.office365.com/.default"],
    )
    event["response"] = {"access_token": "app-7", "token_type": "Bearer", "expires_in": 3600}
    cache.add(event)
    text = json.dumps(cache._cache)
    path = _write(tmp_path, text)
    authority = f"https://login.microsoftonline.com/{TENANT_A}"
    scopes = ["https://outlook.office365.com/.default"]
    assert _pick(path, username=None, authority=authority, scopes=scopes).token == "app-7"
    assert _msal_app_only(text, CLIENTS[0], authority, scopes) == ("app-7", 0)
    # An app-only token is never a user's token, nor the other way round.
    assert _pick(path, authority=authority, scopes=scopes).token is None


@pytest.mark.parametrize(
    ("content", "mode", "reason"),
    [
        (b"gAAAAABl-encrypted-looking-bytes", 0o600, "the token cache is not plain JSON"),
        (b"\x00\x01binary", 0o600, "the token cache is not plain JSON"),
        (b"[]", 0o600, "the token cache is not a JSON object"),
        (b'{"Account": []}', 0o600, "malformed Account section"),
        (b"{}", 0o644, "the token cache is not a private regular file of this user"),
    ],
)
def test_files_that_are_not_plain_private_json_decline(tmp_path: Path, content: bytes, mode: int, reason: str) -> None:
    path = tmp_path / "token_cache.json"
    path.write_bytes(content)
    path.chmod(mode)
    assert _pick(path) == fastpath.Outcome(None, reason)


def test_missing_file_and_unusual_authorities_decline(tmp_path: Path) -> None:
    assert _pick(tmp_path / "none.json").reason == "cannot open the token cache (No such file or directory)"
    path = _write(tmp_path, _one_sign_in(int(time.time())))
    for authority in (
        "https://login.microsoftonline.com/organizations/v2.0",
        "https://contoso.b2clogin.com/contoso.onmicrosoft.com",
        "https://adfs.example.com/adfs",
        "http://login.microsoftonline.com/organizations",
    ):
        assert _pick(path, authority=authority).reason == (
            f"authority {authority} is not a plain Entra-style authority"
        ), authority
