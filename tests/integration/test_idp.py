"""The identity stand-in, exercised with real MSAL Python the way the mailbot CLI uses it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import msal
import msal.oauth2cli.oauth2
import pytest
import requests
import trustme

from tests.support.idp import IdentityStandIn

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SCOPES = ["https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send"]
USER = "alice@example.test"
KEY = b"0123456789abcdef0123456789abcdef"


class CASession(requests.Session):
    """requests.Session that really uses its own CA bundle and a default timeout.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace ``session.verify`` whenever
    the call itself passes no ``verify`` -- and MSAL never passes one. MSAL also ignores its
    own ``timeout=`` once you hand it an ``http_client``, so the session applies it.
    """

    def __init__(self, ca_bundle: str, timeout: float | None = 10.0) -> None:
        super().__init__()
        self.verify = ca_bundle
        self.default_timeout = timeout

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        return super().merge_environment_settings(url, proxies, stream, self.verify if verify is None else verify, cert)

    def request(self, method: Any, url: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, **kwargs)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def idp(ca: trustme.CA) -> Iterator[IdentityStandIn]:
    with IdentityStandIn(ca, KEY) as stand_in:
        stand_in.interval = 0  # MSAL accepts 0: it polls again without sleeping
        stand_in.device_code_lifetime = 10  # a forgotten approval must not spin for 15 min
        yield stand_in


def make_app(
    idp: IdentityStandIn, *, timeout: float = 10.0, tenant: str = "organizations", **kwargs: Any
) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        CLIENT_ID,
        authority=idp.authority(tenant),
        instance_discovery=False,
        http_client=CASession(str(idp.ca_pem), timeout),
        **kwargs,
    )


def sign_in(
    app: msal.PublicClientApplication, idp: IdentityStandIn, user: str = USER, after_polls: int = 0
) -> dict[str, Any]:
    idp.auto_approve(user, after_polls=after_polls)
    flow = app.initiate_device_flow(scopes=SCOPES)
    assert "user_code" in flow, flow
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    return result


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def signed_with(jwt: str, key: bytes) -> bool:
    signing_input, _, signature = jwt.rpartition(".")
    expected = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.urlsafe_b64encode(expected).rstrip(b"=").decode(), signature)


def account(app: msal.PublicClientApplication) -> dict[str, Any]:
    (only,) = app.get_accounts()
    return only


# --------------------------------------------------------------------------------------


def test_device_flow_sign_in_then_silent_from_cache(idp: IdentityStandIn) -> None:
    app = make_app(idp)
    result = sign_in(app, idp, after_polls=2)
    counts = idp.counts()
    assert counts == {"total": 5, "discovery": 1, "devicecode": 1, "token": 3, "token:device_code": 3}
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3600
    assert signed_with(result["access_token"], KEY)
    at = claims(result["access_token"])
    assert at["email"] == USER and at["aud"] == "https://outlook.office.com"
    assert None not in at.values()
    assert result["id_token_claims"]["preferred_username"] == USER
    assert result["id_token_claims"]["aud"] == CLIENT_ID
    assert not signed_with(result["id_token"], KEY)  # Dovecot must not accept an id_token
    acct = account(app)
    tid, oid = result["id_token_claims"]["tid"], result["id_token_claims"]["oid"]
    assert acct["username"] == USER
    assert acct["home_account_id"] == f"{oid}.{tid}" and tid == idp.tenant_id
    assert acct["environment"] == "localhost"  # MSAL drops the port
    assert idp.current_refresh_token(USER) is not None

    idp.reset_counts()
    silent = app.acquire_token_silent(SCOPES, account=acct)
    assert silent["access_token"] == result["access_token"]
    assert silent["token_source"] == "cache"
    assert idp.counts() == {}


def test_consumers_tenant_uses_msa_tid(idp: IdentityStandIn) -> None:
    app = make_app(idp, tenant="consumers")
    result = sign_in(app, idp)
    assert result["id_token_claims"]["tid"] == "9188040d-6c67-4c5b-b112-36a304b66dad"
    assert account(app)["realm"] == "consumers"


def test_short_lived_access_token_is_refreshed_and_refresh_token_rotates(idp: IdentityStandIn) -> None:
    idp.access_token_lifetime = 120  # < MSAL's 5-minute margin: "expired" for MSAL
    app = make_app(idp, token_cache=msal.SerializableTokenCache())
    first = sign_in(app, idp)
    first_rt = first["refresh_token"]
    idp.reset_counts()

    second = app.acquire_token_silent(SCOPES, account=account(app))
    assert idp.counts() == {"total": 1, "token": 1, "token:refresh_token": 1}
    assert second["token_source"] == "identity_provider"
    assert second["access_token"] != first["access_token"]
    assert 0 < claims(second["access_token"])["exp"] - time.time() <= 120
    cached_rt = next(iter(app.token_cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN)))["secret"]
    assert cached_rt == idp.current_refresh_token(USER) != first_rt
    assert [rt.state for rt in idp.refresh_tokens] == ["rotated", "current"]

    app.acquire_token_silent(SCOPES, account=account(app))  # refreshes with the rotated RT
    assert idp.counts()["token:refresh_token"] == 2


def test_reuse_of_rotated_refresh_token(idp: IdentityStandIn) -> None:
    idp.access_token_lifetime = 120
    app = make_app(idp)
    old_rt = sign_in(app, idp)["refresh_token"]
    app.acquire_token_silent(SCOPES, account=account(app))  # rotates

    replay = make_app(idp)
    rejected = replay.acquire_token_by_refresh_token(old_rt, SCOPES)
    assert rejected["error"] == "invalid_grant"
    assert rejected["error_description"].startswith("AADSTS70000: ")
    assert rejected["error_codes"] == [70000]
    assert {"timestamp", "trace_id", "correlation_id"} <= rejected.keys()

    idp.reject_reused_refresh_tokens = False
    assert "access_token" in make_app(idp).acquire_token_by_refresh_token(old_rt, SCOPES)


@pytest.mark.parametrize("code", [50173, 700082])
def test_revoked_refresh_token_makes_silent_fail(idp: IdentityStandIn, code: int) -> None:
    idp.access_token_lifetime = 120
    app = make_app(idp)
    sign_in(app, idp)
    idp.revoke(USER, aadsts=code)
    result = app.acquire_token_silent_with_error(SCOPES, account=account(app))
    assert result is not None and result["error"] == "invalid_grant"
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    assert app.acquire_token_silent(SCOPES, account=account(app)) is None  # same, as None
    assert idp.current_refresh_token(USER) is None
    sign_in(app, idp)  # a new sign-in works again
    assert idp.current_refresh_token(USER) is not None


def test_denied_and_expired_device_codes(idp: IdentityStandIn) -> None:
    app = make_app(idp)
    idp.auto_deny(after_polls=1)
    denied = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    assert denied["error"] == "authorization_declined"
    assert idp.counts()["token:device_code"] == 2

    idp.auto_expire(after_polls=1)
    expired = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    assert expired["error"] == "expired_token"
    assert expired["error_description"].startswith("AADSTS70019: ")

    idp.device_code_lifetime = 1  # real expiry; MSAL only stops on the server's answer
    idp.pending_delay = 0.05
    started = time.monotonic()
    timed_out = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    assert timed_out["error"] == "expired_token"
    assert 1 <= time.monotonic() - started < 3
    assert app.get_accounts() == []


@pytest.mark.filterwarnings("ignore:Attempted too soon")  # our fake sleep does not wait
def test_slow_down_adds_five_seconds(idp: IdentityStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []  # MSAL's polling loop sleeps in 1 s steps; record, don't wait
    monkeypatch.setattr(msal.oauth2cli.oauth2, "time", types.SimpleNamespace(time=time.time, sleep=slept.append))
    app = make_app(idp)
    idp.slow_down_next(1)
    sign_in(app, idp)
    assert sum(slept) == 5  # interval 0 + 5 after slow_down
    assert idp.counts()["token:device_code"] == 2


def test_manual_approval_from_another_thread(idp: IdentityStandIn) -> None:
    idp.interval = 1  # MSAL really sleeps 1 s between polls
    app = make_app(idp)
    results: list[dict[str, Any]] = []
    flow = app.initiate_device_flow(scopes=SCOPES)
    worker = threading.Thread(target=lambda: results.append(app.acquire_token_by_device_flow(flow)))
    worker.start()
    info = idp.wait_for_device_code(timeout=5)
    assert info.user_code == flow["user_code"] and info.user_code in flow["message"]
    assert info.client_id == CLIENT_ID and "offline_access" in info.scope.split()
    idp.approve("bob@example.test", info.user_code)
    worker.join(timeout=5)
    assert results[0]["id_token_claims"]["preferred_username"] == "bob@example.test"
    assert account(app)["username"] == "bob@example.test"


def test_concurrent_sign_ins(idp: IdentityStandIn) -> None:
    idp.auto_approve("carol@example.test", after_polls=1, times=None)
    apps = [make_app(idp) for _ in range(4)]
    results: list[dict[str, Any]] = []
    threads = [
        threading.Thread(
            target=lambda a=a: results.append(a.acquire_token_by_device_flow(a.initiate_device_flow(scopes=SCOPES)))
        )
        for a in apps
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 4 and all("access_token" in r for r in results)
    assert len({r["refresh_token"] for r in results}) == 4
    assert idp.counts()["token:device_code"] == 8


def test_injected_500_and_msal_http_throttling(idp: IdentityStandIn) -> None:
    idp.access_token_lifetime = 120
    app = make_app(idp)
    sign_in(app, idp)
    idp.reset_counts()
    idp.fail_next("token:refresh_token", count=5)
    with pytest.raises(msal.exceptions.MsalServiceError, match="HTTP Error: 500"):
        app.acquire_token_silent(SCOPES, account=account(app))
    # MSAL keeps the 5xx for 60 s (no Retry-After): the retry never reaches the server.
    with pytest.raises(msal.exceptions.MsalServiceError):
        app.acquire_token_silent(SCOPES, account=account(app))
    assert idp.counts()["token:refresh_token"] == 1
    idp.clear_faults()

    fresh = make_app(idp)  # Retry-After: 0 -> MSAL does not cache the failure
    sign_in(fresh, idp)
    idp.reset_counts()
    idp.fail_next("token", count=1, status=503, retry_after=0)
    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        fresh.acquire_token_silent(SCOPES, account=account(fresh))
    assert "access_token" in fresh.acquire_token_silent(SCOPES, account=account(fresh))
    assert idp.counts()["token:refresh_token"] == 2

    idp.fail_next("devicecode")  # MSAL does not check the status here: JSON error dict
    flow = make_app(idp).initiate_device_flow(scopes=SCOPES)
    assert "user_code" not in flow and flow["error"] == "temporarily_unavailable"


def test_hang_with_timeouts(idp: IdentityStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    idp.access_token_lifetime = 120
    app = make_app(idp, timeout=0.5)
    sign_in(app, idp)
    rt_before = idp.current_refresh_token(USER)
    idp.hang_next("token:refresh_token", seconds=5)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        app.acquire_token_silent(SCOPES, account=account(app))
    assert time.monotonic() - started < 2
    assert idp.current_refresh_token(USER) == rt_before  # dropped, nothing rotated
    assert "access_token" in app.acquire_token_silent(SCOPES, account=account(app))

    # MSAL's own session (no http_client): its timeout= applies, verify= only works
    # without REQUESTS_CA_BUNDLE, and its HTTPAdapter(max_retries=1) retries a timed-out GET.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    idp.reset_counts()
    idp.hang_next("discovery", seconds=5, count=1)
    msal.PublicClientApplication(
        CLIENT_ID, authority=idp.authority(), instance_discovery=False, verify=str(idp.ca_pem), timeout=0.5
    )
    assert idp.counts()["discovery"] == 2
    idp.hang_next("discovery", seconds=5, count=2)
    with pytest.raises(requests.exceptions.ConnectionError):  # urllib3 MaxRetryError wrapper
        msal.PublicClientApplication(
            CLIENT_ID,
            authority=idp.authority(),
            instance_discovery=False,
            verify=str(idp.ca_pem),
            timeout=0.5,
        )


def test_injected_aadsts_errors(idp: IdentityStandIn) -> None:
    app = make_app(idp)
    idp.auto_approve(USER)
    idp.error_next("token:device_code", 65001)
    result = app.acquire_token_by_device_flow(app.initiate_device_flow(scopes=SCOPES))
    assert result["error"] == "invalid_grant" and result["suberror"] == "consent_required"
    assert result["error_description"].startswith(
        f"AADSTS65001: The user or administrator has not consented to use the application with ID '{CLIENT_ID}'"
    )
    assert result["error_codes"] == [65001]

    idp.clear_rules()
    idp.error_next("devicecode", 9002331)
    flow = app.initiate_device_flow(scopes=SCOPES)
    assert flow["error"] == "invalid_request" and "AADSTS9002331" in flow["error_description"]

    idp.reset_counts()  # MSAL replays an HTTP 400 for 60 s from its http cache
    assert app.initiate_device_flow(scopes=SCOPES)["error_codes"] == [9002331]
    assert idp.counts() == {}

    app = make_app(idp)
    idp.error_next("token", 7000218)
    flow = app.initiate_device_flow(scopes=SCOPES)
    assert app.acquire_token_by_device_flow(flow)["error"] == "invalid_client"

    idp.error_next("discovery", 90002)
    with pytest.raises(ValueError, match="Unable to get authority configuration") as failed:
        make_app(idp, tenant="nosuchtenant")
    assert "AADSTS90002" in str(failed.value.__context__)  # MSAL hides the body there

    idp.access_token_lifetime = 120
    sign_in(app, idp)
    idp.error_next("token:refresh_token", 53003, retry_after=0)
    blocked = app.acquire_token_silent_with_error(SCOPES, account=account(app))
    assert blocked is not None and blocked["error_codes"] == [53003]


def test_poisoned_and_delegated_access_tokens(idp: IdentityStandIn) -> None:
    idp.access_token_lifetime = 120
    idp.poison_next_access_tokens(1)
    idp.delegate(USER, "shared@example.test")
    app = make_app(idp)
    first = sign_in(app, idp)
    assert not signed_with(first["access_token"], KEY)
    assert idp.access_tokens[-1].poisoned
    second = app.acquire_token_silent(SCOPES, account=account(app), force_refresh=True)
    assert signed_with(second["access_token"], KEY)
    assert claims(second["access_token"])["mailbox"] == "shared@example.test"
    idp.delegate(USER, None)
    third = app.acquire_token_silent(SCOPES, account=account(app))
    assert "mailbox" not in claims(third["access_token"])


def test_persisted_http_cache_gives_zero_requests(idp: IdentityStandIn) -> None:
    http_cache: dict[str, Any] = {}
    first = make_app(idp, http_cache=http_cache, token_cache=msal.SerializableTokenCache())
    sign_in(first, idp)
    saved_http, saved_tokens = pickle.dumps(http_cache), first.token_cache.serialize()

    idp.reset_counts()  # Without a shared http_cache every new app re-fetches discovery
    make_app(idp, token_cache=msal.SerializableTokenCache())
    assert idp.counts() == {"total": 1, "discovery": 1}

    idp.reset_counts()  # "next CLI run": both caches loaded from disk
    tokens = msal.SerializableTokenCache()
    tokens.deserialize(saved_tokens)
    second = make_app(idp, http_cache=pickle.loads(saved_http), token_cache=tokens)
    result = second.acquire_token_silent(SCOPES, account=account(second))
    assert result["token_source"] == "cache"
    assert idp.counts() == {}


def test_environment_ca_bundle_overrides_plain_session_verify(
    idp: IdentityStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = idp.authority() + "/v2.0/.well-known/openid-configuration"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    plain = requests.Session()
    plain.verify = str(idp.ca_pem)
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(url)
    assert CASession(str(idp.ca_pem)).get(url).status_code == 200
    ip_url = url.replace("localhost", "127.0.0.1")  # the certificate covers the IP, too
    assert CASession(str(idp.ca_pem)).get(ip_url).status_code == 200
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert plain.get(url).status_code == 200
