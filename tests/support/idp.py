"""A local HTTPS stand-in for the Microsoft identity platform (Entra ID), for MSAL Python.

Microsoft cannot be reached from the test machine, so the CLI under test (a subprocess,
real MSAL) signs in against this server instead. It implements exactly what MSAL's
device-code flow and silent refresh use, with Entra-shaped bodies and errors, plus
in-process controls so tests can steer and inspect it.

Endpoints (``{t}`` = any tenant: ``organizations``, ``common``, ``consumers``, a GUID...)::

    GET  /{t}/v2.0/.well-known/openid-configuration   tenant discovery
    POST /{t}/oauth2/v2.0/devicecode                   device authorization
    POST /{t}/oauth2/v2.0/token                        device_code and refresh_token grants

Usage::

    idp = IdentityStandIn(ca, jwt_key)          # ca: trustme.CA shared with the mail servers
    app = msal.PublicClientApplication(CLIENT_ID, authority=idp.authority("organizations"),
                                       instance_discovery=False, http_client=session)
    idp.auto_approve("alice@example.test", after_polls=2)
    ...
    idp.stop()                                   # or use it as a context manager

Clients reach it as ``https://localhost:{port}`` (``idp.base_url``); the certificate covers
``localhost`` and ``127.0.0.1``. MSAL records the cache ``environment`` as plain
``localhost`` (the port is dropped), so a token cache survives a stand-in restart.

Construction and lifecycle
    ``IdentityStandIn(ca, jwt_key, *, host="localhost", workdir=None)`` starts serving at once.
    ``base_url``, ``port``, ``authority(tenant="organizations")``, ``ca_pem`` (Path of the CA
    PEM, written into ``workdir`` or a private temp dir), ``tenant_id`` (the directory GUID
    used as ``tid`` for non-consumer tenants), ``stop()``; ``with IdentityStandIn(...)``.

Settable attributes (plain attributes; read on every request)
    ``interval`` (int s, default 1; 0 is accepted by MSAL and makes it poll without sleeping
    -- but then MSAL never checks its own expiry, only the server's ``expired_token`` stops it),
    ``device_code_lifetime`` (s, default 900), ``access_token_lifetime`` (s, default 3600;
    MSAL treats < 300 s left as expired, so e.g. 120 forces a refresh on the next silent call
    while Dovecot still accepts the JWT), ``pending_delay`` (s the server waits before each
    ``authorization_pending`` answer, default 0.02, keeps interval=0 polling from spinning),
    ``reject_reused_refresh_tokens`` (default True), ``verification_uri``,
    ``allowed_client_ids`` (None = any client id; else others get AADSTS700016).

Device-code controls (``user_code=None`` means the newest pending code)
    ``wait_for_device_code(timeout=10.0) -> DeviceCodeInfo`` newest pending code (waits for one).
    ``approve(username, user_code=None)``, ``deny(user_code=None)``, ``expire(user_code=None)``.
    ``auto_approve(username, after_polls=0, times=1)``, ``auto_deny(after_polls=0, times=1)``,
    ``auto_expire(after_polls=0, times=1)``: queued rules, each taken by the next device
    code(s) *issued after the call* (set them before starting the CLI; for a code that is
    already pending use ``wait_for_device_code`` + ``approve``); ``times=None`` = every
    future code. The code is resolved on the first poll after ``after_polls``
    ``authorization_pending`` answers. ``clear_rules()``.
    ``slow_down_next(n)``: the next n device_code polls answer ``slow_down`` (they do not
    count as pending polls). MSAL then adds 5 s to its interval -- a real 5 s wait.

Refresh-token controls
    ``revoke(username, aadsts=50173)``: the user's live refresh tokens now fail with
    invalid_grant AADSTS50173 (or 700082, inactivity). New sign-ins work again.
    ``refresh_tokens`` list of ``IssuedRefreshToken`` (token, username, client_id, state
    "current"/"rotated"/"revoked"...), ``current_refresh_token(username) -> str | None``.

Access-token controls
    ``poison_next_access_tokens(n)``: next n access tokens are signed with a wrong key;
    ``clear_poison()`` forgets what is left.
    ``delegate(username, mailbox)`` / ``delegate(username, None)``: the user's access tokens
    carry ``mailbox=<mailbox>``. ``access_tokens``: list of ``IssuedAccessToken``.

Resources (``resource_of``)
    Like Entra: tokens are for ONE resource per request (mixed: AADSTS28000); bare scopes
    ("Mail.Send") mean Microsoft Graph, whose tokens carry ``aud=https://graph.microsoft.com``
    and ``scp`` of the bare names, and whose scopes are answered without the Graph prefix.
    ``withhold_consent(username, resource=GRAPH)``: AADSTS65001 for that resource until a
    device-code sign-in for it is approved.

Fault injection (``endpoint``: "discovery", "devicecode", "token", "token:device_code",
"token:refresh_token"; faults are queued and each matching request consumes one)
    ``fail_next(endpoint, count=1, status=500, retry_after=None, json_body=True)``
    ``hang_next(endpoint, seconds, count=1, then_process=False)``: wait ``seconds`` (cut short
    by ``stop()``), then drop the connection, or with ``then_process`` answer normally
    (state changes such as refresh-token rotation then happen though the client gave up).
    ``error_next(endpoint, aadsts, count=1, error=None, description=None, status=None,
    suberror=None, retry_after=None)``: an Entra error; known codes in ``AADSTS_ERRORS``.
    ``clear_faults()``.
    NOTE: MSAL's http cache replays 5xx/429 token-endpoint answers for 60 s (public
    clients) unless they carry ``Retry-After``, and plain HTTP 400 answers (except
    device_code polls) for 60 s, keyed on URL + form body: an identical retry does not
    reach the server. Pass ``retry_after=0`` to switch that off for a test.

Inspection
    ``counts() -> dict`` keys "total", "discovery", "devicecode", "token",
    "token:device_code", "token:refresh_token", "other"; ``reset_counts()`` (also clears
    ``requests``); ``requests``: list of ``RecordedRequest`` (endpoint, tenant, form, ...).

All state is guarded by one lock; handlers run in server threads.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import trustme

from tests.support import jwt_hs256

Endpoint = Literal["discovery", "devicecode", "token", "token:device_code", "token:refresh_token"]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MSA_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"  # Entra's fixed tid for personal accounts
_NS = uuid.UUID("6f0f5a3e-2b55-4a53-9c1e-6d1c2a0b7e11")  # stable oids/tids across runs

# code -> (error, description template, HTTP status, suberror). Templates may use
# {client_id} {tenant} {username} {issued} {now}. Texts follow Entra's wording.
AADSTS_ERRORS: dict[int, tuple[str, str, int, str | None]] = {
    50076: (
        "invalid_grant",
        "Due to a configuration change made by your administrator, or "
        "because you moved to a new location, you must use multi-factor authentication "
        "to access 'https://outlook.office.com'.",
        400,
        "basic_action",
    ),
    50173: (
        "invalid_grant",
        "The provided grant has expired due to it being revoked, a fresh "
        "auth token is needed. The user might have changed or reset their password. The "
        "grant was issued on '{issued}' and the TokensValidFrom date (before which tokens "
        "are not valid) for this user is '{now}'.",
        400,
        None,
    ),
    53003: (
        "invalid_grant",
        "Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.",
        400,
        "message_only",
    ),
    65001: (
        "invalid_grant",
        "The user or administrator has not consented to use the "
        "application with ID '{client_id}' named 'mailbot'. Send an interactive "
        "authorization request for this user and resource.",
        400,
        "consent_required",
    ),
    28000: (
        "invalid_request",
        "Provided value for the input parameter scope is not valid because it contains more than one resource.",
        400,
        None,
    ),
    70000: ("invalid_grant", "Provided grant is invalid or malformed.", 400, None),
    70011: ("invalid_scope", "The provided value for the input parameter 'scope' is not valid.", 400, None),
    90002: (
        "invalid_tenant",
        "Tenant '{tenant}' not found. Check to make sure you have the "
        "correct tenant ID and are signing into the correct cloud.",
        400,
        None,
    ),
    90033: ("temporarily_unavailable", "A transient error has occurred. Please try again.", 503, None),
    700016: (
        "unauthorized_client",
        "Application with identifier '{client_id}' was not found "
        "in the directory '{tenant}'. This can happen if the application has not been "
        "installed by the administrator of the tenant or consented to by any user in the "
        "tenant.",
        400,
        None,
    ),
    700082: (
        "invalid_grant",
        "The refresh token has expired due to inactivity. The token was "
        "issued on {issued} and was inactive for 90.00:00:00.",
        400,
        None,
    ),
    7000218: (
        "invalid_client",
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        401,
        None,
    ),
    9002313: ("invalid_request", "Invalid request. Request is malformed or invalid.", 400, None),
    # --- app-only (client credentials) and authorization code (issue 12) ---
    7000215: (
        "invalid_client",
        "Invalid client secret provided. Ensure the secret being sent in the request is the "
        "client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
        401,
        None,
    ),
    7000222: (
        "invalid_client",
        "The provided client secret keys for app '{client_id}' are expired. Visit the Azure "
        "portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider "
        "using certificate credentials for added security: https://aka.ms/certCreds.",
        401,
        None,
    ),
    700027: (
        "invalid_client",
        "The certificate with identifier used to sign the client assertion is not registered "
        "on application. [Reason - The key was not found., Thumbprint of key used by client: "
        "'{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph "
        "to see configured keys for app Id '{client_id}'.]",
        401,
        None,
    ),
    1002012: (
        "invalid_scope",
        "The provided value for scope {scope} is not valid. Client credential flows must have "
        "a scope value with /.default suffixed to the resource identifier (application ID URI).",
        400,
        None,
    ),
    50011: (
        "invalid_request",
        "The redirect URI '{redirect_uri}' specified in the request does not match the redirect "
        "URIs configured for the application '{client_id}'.",
        400,
        None,
    ),
    50148: (
        "invalid_grant",
        "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
        400,
        None,
    ),
    54005: (
        "invalid_grant",
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        400,
        None,
    ),
    70008: (
        "invalid_grant",
        "The provided authorization code or refresh token has expired due to inactivity. Send a "
        "new interactive authorization request for this user and resource.",
        400,
        None,
    ),
    530033: (
        "invalid_grant",
        "Access has been blocked by conditional access token protection policy.",
        400,
        "message_only",
    ),
    50199: (
        "invalid_grant",
        "For security reasons, user confirmation is required for this request. Please repeat the request allowing user interaction.",
        400,
        None,
    ),
    9002331: (
        "invalid_request",
        "Application '{client_id}'(mailbot) is configured for use by "
        "Microsoft Account users only. Please use the /consumers endpoint to serve this "
        "request.",
        400,
        None,
    ),
}


@dataclass(frozen=True)
class DeviceCodeInfo:
    user_code: str
    device_code: str
    tenant: str
    client_id: str
    scope: str


@dataclass
class IssuedRefreshToken:
    token: str
    username: str
    client_id: str
    scope: str
    issued_at: float
    state: Literal["current", "rotated", "revoked"] = "current"
    revoked_code: int = 0


@dataclass(frozen=True)
class IssuedAccessToken:
    token: str
    username: str
    expires_at: int
    poisoned: bool
    grant: str


APP_ROLES = ("IMAP.AccessAsApp", "SMTP.SendAsApp")


@dataclass(frozen=True)
class RegisteredApp:
    client_id: str
    object_id: str  # the Enterprise application's (service principal's) object id
    secret: str | None
    secret_expired: bool
    certificate_pem: bytes | None
    roles: tuple[str, ...]


@dataclass(frozen=True)
class IssuedAppToken:
    token: str
    client_id: str
    object_id: str
    expires_at: int
    credential: str  # "secret" or "certificate"


@dataclass
class IssuedCode:
    code: str
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str
    username: str
    nonce: str
    issued_at: float
    redeemed: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    endpoint: str  # counter key, e.g. "token:refresh_token"
    method: str
    path: str
    tenant: str
    form: dict[str, str]
    at: float


@dataclass
class _Rule:
    action: Literal["approve", "deny", "expire"]
    username: str
    after_polls: int
    times: int | None


@dataclass
class _DeviceCode:
    info: DeviceCodeInfo
    issued_at: float
    expires_at: float
    state: Literal["pending", "approved", "denied", "expired", "redeemed"] = "pending"
    username: str = ""
    pending_polls: int = 0
    rule: _Rule | None = None


@dataclass
class _Fault:
    endpoint: str
    kind: Literal["fail", "hang", "error"]
    remaining: int
    status: int = 500
    retry_after: int | None = None
    json_body: bool = True
    seconds: float = 0.0
    then_process: bool = False
    aadsts: int = 0
    error: str | None = None
    description: str | None = None
    suberror: str | None = None


class _Reply(Exception):
    """Raised inside request handling to send an (error) answer immediately."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class _Drop(Exception):
    """Close the connection without answering (a hang the client has given up on)."""


def _b64url_json(obj: dict[str, Any]) -> str:
    return jwt_hs256.b64url(json.dumps(obj, separators=(",", ":")).encode())


def _entra_time(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


GRAPH = "https://graph.microsoft.com"
OUTLOOK = "https://outlook.office.com"
_RESERVED = {"offline_access", "openid", "profile", "email"}


def resource_of(scope: str) -> tuple[str | None, list[str]]:
    """Which resource a token request's ``scope`` is for, and the scopes as Entra answers them.

    Like Entra: a bare scope ("Mail.Send") means Microsoft Graph, and Graph scopes are answered
    WITHOUT the ``https://graph.microsoft.com/`` prefix (Outlook's keep theirs). More than one
    resource in one request: (None, []) -- Entra refuses it with AADSTS28000."""
    resources: set[str] = set()
    answered: list[str] = []
    for item in scope.split():
        if item in _RESERVED:
            continue
        if item.startswith(GRAPH + "/"):
            resources.add(GRAPH)
            answered.append(item[len(GRAPH) + 1 :])
        elif "://" in item:
            resources.add(item.rsplit("/", 1)[0])
            answered.append(item)
        else:
            resources.add(GRAPH)
            answered.append(item)
    if len(resources) > 1:
        return None, []
    return (resources.pop() if resources else OUTLOOK), answered


class IdentityStandIn:
    """Entra-like identity provider for MSAL Python; see the module docstring for the API."""

    def __init__(self, ca: trustme.CA, jwt_key: bytes, *, host: str = "localhost", workdir: Path | None = None) -> None:
        self.jwt_key = jwt_key
        self.host = host
        self.tenant_id = str(uuid.uuid5(_NS, "tenant:mailbot-test"))
        # Tunables (see module docstring).
        self.interval = 1
        self.device_code_lifetime = 900
        self.access_token_lifetime = 3600
        self.pending_delay = 0.02
        self.reject_reused_refresh_tokens = True
        self.verification_uri = "https://microsoft.com/devicelogin"
        self.allowed_client_ids: set[str] | None = None
        # Records, readable by tests (take ``lock`` for a consistent view while traffic runs).
        self.refresh_tokens: list[IssuedRefreshToken] = []
        self.access_tokens: list[IssuedAccessToken] = []
        self.requests: list[RecordedRequest] = []

        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._stopping = threading.Event()
        self._counts: collections.Counter[str] = collections.Counter()
        self._device_codes: dict[str, _DeviceCode] = {}
        self._rules: list[_Rule] = []
        self._rts: dict[str, IssuedRefreshToken] = {}
        self._faults: list[_Fault] = []
        self._slow_down = 0
        self._poison = 0
        self._delegations: dict[str, str] = {}
        self._withheld: set[tuple[str, str]] = set()  # (username, resource) without consent
        self._init_app_and_code_grants()

        self._own_dir = workdir is None
        self._dir = Path(tempfile.mkdtemp(prefix="idp-")) if workdir is None else workdir
        self.ca_pem = self._dir / "idp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)

        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        # Lazy handshake: it then runs in the per-connection thread, so a client that
        # connects and stalls cannot block the accept loop.
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port: int = self._server.server_address[1]
        self.base_url = f"https://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="idp-stand-in",
            daemon=True,
        )
        self._thread.start()

    # ----- lifecycle -------------------------------------------------------------------

    def authority(self, tenant: str = "organizations") -> str:
        return f"{self.base_url}/{tenant}"

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> IdentityStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- device-code controls --------------------------------------------------------

    def wait_for_device_code(self, timeout: float = 10.0) -> DeviceCodeInfo:
        """Newest pending device code, waiting up to ``timeout`` s for the CLI to ask for one."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._newest_pending() is not None, timeout):
                raise TimeoutError("no pending device code")
            found = self._newest_pending()
            assert found is not None
            return found.info

    def approve(self, username: str, user_code: str | None = None) -> None:
        with self.lock:
            code = self._find_pending(user_code)
            code.state, code.username = "approved", username

    def deny(self, user_code: str | None = None) -> None:
        with self.lock:
            self._find_pending(user_code).state = "denied"

    def expire(self, user_code: str | None = None) -> None:
        with self.lock:
            self._find_pending(user_code).state = "expired"

    def auto_approve(self, username: str, after_polls: int = 0, times: int | None = 1) -> None:
        self._add_rule(_Rule("approve", username, after_polls, times))

    def auto_deny(self, after_polls: int = 0, times: int | None = 1) -> None:
        self._add_rule(_Rule("deny", "", after_polls, times))

    def auto_expire(self, after_polls: int = 0, times: int | None = 1) -> None:
        self._add_rule(_Rule("expire", "", after_polls, times))

    def clear_rules(self) -> None:
        with self.lock:
            self._rules.clear()

    def slow_down_next(self, n: int = 1) -> None:
        with self.lock:
            self._slow_down += n

    # ----- token controls --------------------------------------------------------------

    def revoke(self, username: str, aadsts: int = 50173) -> None:
        """Make every live refresh token of ``username`` fail (50173 revoked, 700082 inactive)."""
        with self.lock:
            for rt in self.refresh_tokens:
                if rt.username.lower() == username.lower() and rt.state != "revoked":
                    rt.state, rt.revoked_code = "revoked", aadsts

    def current_refresh_token(self, username: str) -> str | None:
        with self.lock:
            for rt in reversed(self.refresh_tokens):
                if rt.username.lower() == username.lower() and rt.state == "current":
                    return rt.token
            return None

    def poison_next_access_tokens(self, n: int = 1) -> None:
        with self.lock:
            self._poison += n

    def clear_poison(self) -> None:
        """Forget poisoning a test asked for but did not use up."""
        with self.lock:
            self._poison = 0

    def delegate(self, username: str, mailbox: str | None) -> None:
        with self.lock:
            if mailbox is None:
                self._delegations.pop(username.lower(), None)
            else:
                self._delegations[username.lower()] = mailbox

    # ----- fault injection -------------------------------------------------------------

    def withhold_consent(self, username: str, resource: str = GRAPH) -> None:
        """No consent for ``resource`` yet: refresh requests for it fail with AADSTS65001 until a
        device-code sign-in for that resource's scopes is approved."""
        with self.lock:
            self._withheld.add((username.lower(), resource))

    def fail_next(
        self,
        endpoint: Endpoint,
        count: int = 1,
        status: int = 500,
        retry_after: int | None = None,
        json_body: bool = True,
    ) -> None:
        self._add_fault(_Fault(endpoint, "fail", count, status=status, retry_after=retry_after, json_body=json_body))

    def hang_next(self, endpoint: Endpoint, seconds: float, count: int = 1, then_process: bool = False) -> None:
        self._add_fault(_Fault(endpoint, "hang", count, seconds=seconds, then_process=then_process))

    def error_next(
        self,
        endpoint: Endpoint,
        aadsts: int,
        count: int = 1,
        *,
        error: str | None = None,
        description: str | None = None,
        status: int | None = None,
        suberror: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        if aadsts not in AADSTS_ERRORS and (error is None or description is None):
            raise ValueError(f"AADSTS{aadsts} is not in AADSTS_ERRORS; pass error and description")
        known = AADSTS_ERRORS.get(aadsts, ("", "", 400, None))
        self._add_fault(
            _Fault(
                endpoint,
                "error",
                count,
                aadsts=aadsts,
                error=error or known[0],
                description=description or known[1],
                status=status or known[2],
                suberror=suberror or known[3],
                retry_after=retry_after,
            )
        )

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    # ----- inspection ------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self.lock:
            self._counts.clear()
            self.requests.clear()

    # ----- app-only (client credentials) and authorization code + PKCE (issue 12) ------
    #
    # Controls:
    #   ``register_app(client_id, secret=..., certificate_pem=..., secret_expired=False,
    #   roles=APP_ROLES) -> RegisteredApp`` a confidential client; its ``object_id`` is the
    #   Enterprise application's (service principal's) object id, the app token's ``oid``.
    #   ``app_tokens``: list of ``IssuedAppToken``.
    #   ``redirect_uris``: registered "Mobile and desktop" URIs (default http://localhost;
    #   like Entra, a loopback URI matches whatever port the request uses).
    #   ``browser_user``: who signs in at /authorize (None: the login_hint);
    #   ``authorize_error``: an AADSTS code /authorize answers with (redirected, as Entra does).
    #   ``code_lifetime`` (s, default 600), ``authorization_codes``: list of ``IssuedCode``.
    # Endpoints: GET /{t}/oauth2/v2.0/authorize (counter "authorize"), grants
    # "token:client_credentials" and "token:authorization_code".

    def _init_app_and_code_grants(self) -> None:
        self._apps: dict[str, RegisteredApp] = {}
        self.app_tokens: list[IssuedAppToken] = []
        self.redirect_uris: set[str] = {"http://localhost"}
        self.browser_user: str | None = None
        self.authorize_error: int | None = None
        self.code_lifetime = 600
        self.authorization_codes: list[IssuedCode] = []
        self._codes: dict[str, IssuedCode] = {}

    def register_app(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        secret_expired: bool = False,
        roles: tuple[str, ...] = APP_ROLES,
    ) -> RegisteredApp:
        app = RegisteredApp(
            client_id,
            str(uuid.uuid5(_NS, "sp:" + client_id.lower())),
            secret,
            secret_expired,
            certificate_pem,
            roles,
        )
        with self.lock:
            self._apps[client_id] = app
        return app

    def _authorize(self, handler: BaseHTTPRequestHandler, tenant: str, query: str, ctx: dict[str, str]) -> None:
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        ctx = dict(ctx, client_id=client_id, redirect_uri=redirect_uri)
        if not self._redirect_allowed(redirect_uri):
            # Entra shows its own error page: it never redirects to an unregistered URI.
            raise self._error(50011, ctx)
        state = params.get("state", "")

        def redirect(values: dict[str, str]) -> None:
            if state:
                values["state"] = state
            target = redirect_uri + ("&" if "?" in redirect_uri else "?") + urllib.parse.urlencode(values)
            handler.send_response(302)
            handler.send_header("Location", target)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with self.lock:
            refused = self.authorize_error
            username = self.browser_user or params.get("login_hint", "")
        if refused is not None:
            body = self._error(refused, ctx).body
            redirect(
                {
                    "error": str(body["error"]),
                    "error_description": str(body["error_description"]),
                    "error_codes": str(refused),
                }
            )
            return
        if params.get("response_type") != "code" or not params.get("scope") or not username:
            redirect(
                {
                    "error": "invalid_request",
                    "error_description": "AADSTS900144: response_type, scope or the user is missing.",
                }
            )
            return
        if params.get("code_challenge_method") != "S256" or len(params.get("code_challenge", "")) < 43:
            redirect(
                {
                    "error": "invalid_request",
                    "error_description": "AADSTS9002325: Proof Key for Code Exchange is required (S256).",
                }
            )
            return
        code = IssuedCode(
            "0.AQ" + secrets.token_urlsafe(48),
            client_id,
            redirect_uri,
            params["code_challenge"],
            params["scope"],
            username,
            params.get("nonce", ""),
            time.time(),
        )
        with self.lock:
            self._codes[code.code] = code
            self.authorization_codes.append(code)
        redirect({"code": code.code, "session_state": str(uuid.uuid4())})

    def _redirect_allowed(self, uri: str) -> bool:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme == "http" and parsed.hostname in ("localhost", "127.0.0.1"):
            uri = f"http://{parsed.hostname}{parsed.path.rstrip('/')}"  # loopback: any port
        with self.lock:
            return uri in {u.rstrip("/") for u in self.redirect_uris}

    def _redeem_code(self, tenant: str, form: dict[str, str], ctx: dict[str, str]) -> dict[str, Any]:
        client_id = self._check_client(form, ctx)
        with self.lock:
            code = self._codes.get(form.get("code", ""))
            if code is None or code.client_id != client_id:
                raise self._error(70000, ctx)
            if code.redeemed:
                raise self._error(54005, ctx)
            if time.time() - code.issued_at > self.code_lifetime:
                raise self._error(70008, ctx)
            if form.get("redirect_uri", "") != code.redirect_uri:
                raise self._error(
                    500117,
                    ctx,
                    error="invalid_grant",
                    description="The reply uri specified in the token request does not match the reply uri "
                    "used in the authorization request.",
                )
            verifier = form.get("code_verifier", "")
            challenge = jwt_hs256.b64url(hashlib.sha256(verifier.encode()).digest())
            if not verifier or challenge != code.code_challenge:
                raise self._error(
                    501481,
                    ctx,
                    error="invalid_grant",
                    description="The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                )
            code.redeemed = True
            body = self._issue(code.username, client_id, tenant, form.get("scope") or code.scope, "authorization_code")
            if code.nonce:  # Entra echoes the authorize request's nonce in the id_token
                claims = json.loads(jwt_hs256.b64url_decode(body["id_token"].split(".")[1]))
                claims["nonce"] = code.nonce
                body["id_token"] = jwt_hs256.mint(claims, hashlib.sha256(b"id_token" + self.jwt_key).digest())
            return body

    def _client_credentials(self, tenant: str, form: dict[str, str], ctx: dict[str, str]) -> dict[str, Any]:
        client_id = self._check_client(form, ctx)
        with self.lock:
            app = self._apps.get(client_id)
        if app is None:
            raise self._error(700016, ctx)
        secret, assertion = form.get("client_secret"), form.get("client_assertion")
        if not secret and not assertion:
            raise self._error(7000218, ctx)
        if secret:
            if app.secret is None or not secrets.compare_digest(secret, app.secret):
                raise self._error(7000215, ctx)
            if app.secret_expired:
                raise self._error(7000222, ctx)
        else:
            self._check_assertion(app, str(assertion), form, tenant, ctx)
        scope = form.get("scope", "")
        if not scope.endswith("/.default") or len(scope.split()) != 1:
            raise self._error(1002012, dict(ctx, scope=scope))
        resource = scope[: -len("/.default")]
        now = int(time.time())
        lifetime = self.access_token_lifetime
        tid = self._tid(tenant)
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": now - 1,
            "nbf": now - 1,
            "exp": now + lifetime,
            "appid": client_id,
            "appidacr": "1" if secret else "2",
            "idtyp": "app",
            "oid": app.object_id,
            "sub": app.object_id,
            "tid": tid,
            "roles": list(app.roles),
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }
        token = jwt_hs256.mint(claims, self.jwt_key)
        with self.lock:
            self.app_tokens.append(
                IssuedAppToken(token, client_id, app.object_id, now + lifetime, "secret" if secret else "certificate")
            )
        return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}

    def _check_assertion(
        self, app: RegisteredApp, assertion: str, form: dict[str, str], tenant: str, ctx: dict[str, str]
    ) -> None:
        """A private_key_jwt client assertion: thumbprint of a registered certificate, its
        signature (RS256 with x5t, PS256 with x5t#S256), audience, issuer, subject, expiry."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def refuse(description: str) -> _Reply:
            return self._error(700027, dict(ctx), description=description)

        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            raise self._error(7000218, ctx)
        try:
            head_b64, body_b64, sig_b64 = assertion.split(".")
            header = json.loads(jwt_hs256.b64url_decode(head_b64))
            claims = json.loads(jwt_hs256.b64url_decode(body_b64))
            signature = jwt_hs256.b64url_decode(sig_b64)
        except ValueError:
            raise refuse("Client assertion is not a valid JWT.") from None
        cert = x509.load_pem_x509_certificate(app.certificate_pem) if app.certificate_pem else None
        sha1 = cert.fingerprint(hashes.SHA1()) if cert else None  # noqa: S303 - the x5t header is SHA-1
        sha256 = cert.fingerprint(hashes.SHA256()) if cert else None
        used = str(header.get("x5t#S256") or header.get("x5t") or "")
        try:
            digest = jwt_hs256.b64url_decode(used.rstrip("="))  # base64url, with or without padding
        except ValueError:
            digest = b""
        expected = sha256 if "x5t#S256" in header else sha1
        if cert is None or digest != expected:
            raise self._error(700027, dict(ctx, thumbprint=used))
        alg = header.get("alg")
        public_key: Any = cert.public_key()
        signed = f"{head_b64}.{body_b64}".encode()
        try:
            if alg == "RS256":
                public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            elif alg == "PS256":
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
                public_key.verify(signature, signed, pss, hashes.SHA256())
            else:
                raise refuse(f"Client assertion algorithm {alg} is not supported.")
        except InvalidSignature:
            raise refuse("Client assertion failed signature validation.") from None
        endpoint = f"{self.base_url}/{tenant}/oauth2/v2.0/token"
        if claims.get("aud") != endpoint:
            raise refuse(f"Client assertion audience claim does not match Realm issuer '{endpoint}'.")
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise refuse("Client assertion issuer and subject must be the client id.")
        if float(claims.get("exp", 0)) < time.time():
            raise refuse("Client assertion is not within its valid time range.")

    # ----- internals -------------------------------------------------------------------

    def _add_rule(self, rule: _Rule) -> None:
        # Rules only bind codes issued later: a code abandoned by an earlier, failed flow
        # would otherwise silently swallow the rule meant for the next sign-in.
        with self.lock:
            self._rules.append(rule)

    def _take_rule(self, code: _DeviceCode) -> None:
        if not self._rules:
            return
        rule = self._rules[0]
        code.rule = rule
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                self._rules.pop(0)

    def _add_fault(self, fault: _Fault) -> None:
        with self.lock:
            self._faults.append(fault)

    def _newest_pending(self) -> _DeviceCode | None:
        pending = [c for c in self._device_codes.values() if c.state == "pending"]
        return max(pending, key=lambda c: c.issued_at) if pending else None

    def _find_pending(self, user_code: str | None) -> _DeviceCode:
        if user_code is None:
            code = self._newest_pending()
        else:
            code = next(
                (c for c in self._device_codes.values() if c.info.user_code == user_code and c.state == "pending"),
                None,
            )
        if code is None:
            raise LookupError(f"no pending device code {user_code or ''}".strip())
        return code

    def _take_fault(self, endpoint: str) -> _Fault | None:
        for fault in self._faults:
            if fault.endpoint == endpoint or (fault.endpoint == "token" and endpoint.startswith("token:")):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _tid(self, tenant: str) -> str:
        if tenant.lower() == "consumers":
            return MSA_TENANT_ID
        try:
            return str(uuid.UUID(tenant))
        except ValueError:
            return self.tenant_id

    def _oid(self, username: str) -> str:
        return str(uuid.uuid5(_NS, "user:" + username.lower()))

    def _error(
        self,
        code: int,
        ctx: dict[str, str],
        *,
        error: str | None = None,
        description: str | None = None,
        status: int | None = None,
        suberror: str | None = None,
        retry_after: int | None = None,
    ) -> _Reply:
        known = AADSTS_ERRORS.get(code, ("invalid_request", "", 400, None))
        text = (description or known[1]).format_map(collections.defaultdict(str, ctx))
        now = time.time()
        trace_id, correlation_id = str(uuid.uuid4()), ctx.get("correlation_id") or str(uuid.uuid4())
        body: dict[str, Any] = {
            "error": error or known[0],
            # Entra appends trace lines to every description, with CRLF.
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {_entra_time(now)}",
            "error_codes": [code],
            "timestamp": _entra_time(now),
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.base_url}/error?code={code}",
        }
        if suberror or known[3]:
            body["suberror"] = suberror or known[3]
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return _Reply(status or known[2], body, headers)

    def _discovery(self, tenant: str) -> dict[str, Any]:
        base = f"{self.base_url}/{tenant}"
        # Entra advertises a literal "{tenantid}" placeholder for multi-tenant authorities.
        issuer_tid = (
            MSA_TENANT_ID
            if tenant.lower() == "consumers"
            else "{tenantid}"
            if tenant.lower() in ("common", "organizations")
            else self._tid(tenant)
        )
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base_url}/{issuer_tid}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base_url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "cloud_instance_name",
                "cloud_instance_host_name",
                "cloud_graph_host_name",
                "msgraph_host",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{base}/kerberos",
            "tenant_region_scope": "WW",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def _check_client(self, form: dict[str, str], ctx: dict[str, str]) -> str:
        client_id = form.get("client_id", "")
        if not client_id:
            raise self._error(
                900144,
                ctx,
                error="invalid_request",
                description=("The request body must contain the following parameter: 'client_id'."),
            )
        if self.allowed_client_ids is not None and client_id not in self.allowed_client_ids:
            raise self._error(700016, ctx)
        return client_id

    def _devicecode(self, tenant: str, form: dict[str, str], ctx: dict[str, str]) -> dict[str, Any]:
        client_id = self._check_client(form, ctx)
        scope = form.get("scope", "")
        if not scope:
            raise self._error(70011, ctx)
        # Entra user codes: 9 characters, no look-alikes.
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        device_code = "DAQABAAEAAAD" + secrets.token_urlsafe(96)
        now = time.time()
        with self._changed:
            code = _DeviceCode(
                DeviceCodeInfo(user_code, device_code, tenant, client_id, scope),
                now,
                now + self.device_code_lifetime,
            )
            self._device_codes[device_code] = code
            self._take_rule(code)
            self._changed.notify_all()
            lifetime, interval = self.device_code_lifetime, self.interval
        return {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": self.verification_uri,
            "expires_in": lifetime,
            "interval": interval,
            "message": f"To sign in, use a web browser to open the page {self.verification_uri} "
            f"and enter the code {user_code} to authenticate.",
        }

    def _poll(self, tenant: str, form: dict[str, str], ctx: dict[str, str]) -> dict[str, Any]:
        client_id = self._check_client(form, ctx)
        with self.lock:
            code = self._device_codes.get(form.get("device_code", ""))
            if code is None or code.info.client_id != client_id or code.state == "redeemed":
                raise self._error(70000, ctx)
            if self._slow_down > 0:
                self._slow_down -= 1
                # Entra documents no AADSTS code for slow_down; we reuse the pending one.
                raise self._error(
                    70016,
                    ctx,
                    error="slow_down",
                    description=("OAuth 2.0 device flow error. Polling too frequently; slow down."),
                )
            if code.state == "pending" and time.time() >= code.expires_at:
                code.state = "expired"
            if code.state == "pending" and code.rule and code.pending_polls >= code.rule.after_polls:
                code.state = {"approve": "approved", "deny": "denied", "expire": "expired"}[code.rule.action]
                code.username = code.rule.username
            if code.state == "expired":
                raise self._error(70019, ctx, error="expired_token", description="Verification code expired.")
            if code.state == "denied":
                raise self._error(
                    70000,
                    ctx,
                    error="authorization_declined",
                    description="The user has declined the authorization request.",
                )
            if code.state == "pending":
                code.pending_polls += 1
                pending = self._error(
                    70016,
                    ctx,
                    error="authorization_pending",
                    description=("OAuth 2.0 device flow error. Authorization is pending. Continue polling."),
                )
            else:
                code.state = "redeemed"
                resource, _ = resource_of(code.info.scope)
                if resource is None:
                    raise self._error(28000, ctx)
                self._withheld.discard((code.username.lower(), resource))
                return self._issue(code.username, client_id, tenant, code.info.scope, DEVICE_CODE_GRANT)
        time.sleep(self.pending_delay)  # outside the lock
        raise pending

    def _refresh(self, tenant: str, form: dict[str, str], ctx: dict[str, str]) -> dict[str, Any]:
        client_id = self._check_client(form, ctx)
        with self.lock:
            rt = self._rts.get(form.get("refresh_token", ""))
            if rt is None:
                raise self._error(9002313, ctx)
            ctx = dict(ctx, issued=_entra_time(rt.issued_at), username=rt.username)
            if rt.client_id != client_id:
                raise self._error(
                    70000,
                    ctx,
                    description=(
                        "Provided grant is invalid or malformed. The refresh token was issued to a different client."
                    ),
                )
            if rt.state == "revoked":
                raise self._error(rt.revoked_code, ctx)
            if rt.state == "rotated" and self.reject_reused_refresh_tokens:
                raise self._error(
                    70000,
                    ctx,
                    description=(
                        "Provided grant is invalid or malformed. The refresh token has already been redeemed."
                    ),
                )
            resource, _ = resource_of(form.get("scope") or rt.scope)
            if resource is None:
                raise self._error(28000, ctx)
            if (rt.username.lower(), resource) in self._withheld:
                raise self._error(65001, ctx)
            rt.state = "rotated"
            return self._issue(rt.username, client_id, tenant, form.get("scope") or rt.scope, "refresh_token")

    def _issue(self, username: str, client_id: str, tenant: str, scope: str, grant: str) -> dict[str, Any]:
        """Mint the token response. Caller holds the lock."""
        now = int(time.time())
        tid, oid = self._tid(tenant), self._oid(username)
        lifetime = self.access_token_lifetime
        # Entra's unique token id; also keeps two tokens minted in the same second distinct.
        extra: dict[str, Any] = {"uti": secrets.token_urlsafe(16)}
        if username.lower() in self._delegations:
            extra["mailbox"] = self._delegations[username.lower()]
        poisoned = self._poison > 0
        if poisoned:
            self._poison -= 1
        key = self.jwt_key + b"-poisoned" if poisoned else self.jwt_key
        resource, answered = resource_of(scope)
        if resource == GRAPH:  # a Graph token: its audience, and scp as Entra writes it
            extra.update(aud=GRAPH, scp=" ".join(answered))
        access_token = jwt_hs256.access_token(username, key, lifetime=lifetime, **extra)
        self.access_tokens.append(IssuedAccessToken(access_token, username, now + lifetime, poisoned, grant))
        id_claims = {
            "aud": client_id,
            "iss": f"{self.base_url}/{tid}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": username.split("@")[0],
            "oid": oid,
            "preferred_username": username,  # MSAL's account "username"
            "rh": "0.AAAA" + secrets.token_urlsafe(8),
            "sub": hashlib.sha256(f"{oid}:{client_id}".encode()).hexdigest()[:43],
            "tid": tid,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }
        # MSAL never verifies the id_token; it is signed with a key Dovecot does not know,
        # so a client that wrongly sends it to IMAP/SMTP fails like it would at Microsoft.
        id_token = jwt_hs256.mint(id_claims, hashlib.sha256(b"id_token" + self.jwt_key).digest())
        scopes = answered + [s for s in scope.split() if s in _RESERVED] if resource == GRAPH else scope.split()
        for reserved in ("offline_access", "openid", "profile"):  # Entra echoes what MSAL adds
            if reserved not in scopes:
                scopes.append(reserved)
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join(scopes),
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
            "id_token": id_token,
            # home_account_id = uid.utid
            "client_info": _b64url_json({"uid": oid, "utid": tid}),
        }
        if "offline_access" in scope.split():  # Entra only issues RTs for offline_access
            token = "1.AQ" + secrets.token_urlsafe(160)
            record = IssuedRefreshToken(token, username, client_id, " ".join(scopes), now)
            self._rts[token] = record
            self.refresh_tokens.append(record)
            body["refresh_token"] = token
        return body

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(handler.path)
        parts = [p for p in url.path.split("/") if p]
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode("utf-8", "replace") if length else ""
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw).items()}
        tenant = parts[0] if parts else ""
        endpoint = "other"
        if method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            endpoint = "discovery"
        elif method == "POST" and parts[1:] == ["oauth2", "v2.0", "devicecode"]:
            endpoint = "devicecode"
        elif method == "GET" and parts[1:] == ["oauth2", "v2.0", "authorize"]:
            endpoint = "authorize"
        elif method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            grant = form.get("grant_type", "")
            endpoint = "token:" + ("device_code" if grant == DEVICE_CODE_GRANT else grant)
        ctx = {
            "tenant": tenant,
            "client_id": form.get("client_id", ""),
            "correlation_id": handler.headers.get("client-request-id", ""),
            "now": _entra_time(time.time()),
        }
        with self.lock:
            self._counts["total"] += 1
            self._counts[endpoint] += 1
            if endpoint.startswith("token:"):
                self._counts["token"] += 1
            self.requests.append(RecordedRequest(endpoint, method, url.path, tenant, form, time.time()))
            fault = self._take_fault(endpoint)
        try:
            if fault and fault.kind == "hang":
                self._stopping.wait(fault.seconds)
                if not fault.then_process:
                    raise _Drop()
            elif fault and fault.kind == "fail":
                headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                if not fault.json_body:
                    _send(
                        handler,
                        fault.status,
                        b"<html><body>Service unavailable</body></html>",
                        "text/html",
                        headers,
                    )
                    return
                raise _Reply(fault.status, self._error(90033, ctx).body, headers)
            elif fault and fault.kind == "error":
                raise self._error(
                    fault.aadsts,
                    ctx,
                    error=fault.error,
                    description=fault.description,
                    status=fault.status,
                    suberror=fault.suberror,
                    retry_after=fault.retry_after,
                )
            if endpoint == "discovery":
                body = self._discovery(tenant)
            elif endpoint == "devicecode":
                body = self._devicecode(tenant, form, ctx)
            elif endpoint == "token:device_code":
                body = self._poll(tenant, form, ctx)
            elif endpoint == "token:refresh_token":
                body = self._refresh(tenant, form, ctx)
            elif endpoint == "token:client_credentials":
                body = self._client_credentials(tenant, form, ctx)
            elif endpoint == "token:authorization_code":
                body = self._redeem_code(tenant, form, ctx)
            elif endpoint == "authorize":
                self._authorize(handler, tenant, url.query, ctx)
                return
            elif endpoint.startswith("token:"):
                raise self._error(
                    70003,
                    ctx,
                    error="unsupported_grant_type",
                    description=(f"The app requested an unsupported grant type '{form.get('grant_type')}'."),
                )
            else:
                raise _Reply(404, {"error": "not_found", "error_description": url.path})
            _send_json(handler, 200, body, {})
        except _Reply as reply:
            _send_json(handler, reply.status, reply.body, reply.headers)


def _send(
    handler: BaseHTTPRequestHandler, status: int, payload: bytes, content_type: str, headers: dict[str, str]
) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    handler.send_header("Cache-Control", "no-store, no-cache")
    handler.send_header("Pragma", "no-cache")
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)


def _send_json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
    _send(handler, status, json.dumps(body).encode(), "application/json; charset=utf-8", headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # hanging handlers must not keep pytest alive

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out or reject the certificate are expected in tests


def _make_handler(idp: IdentityStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # a stalled client must not pin a thread forever
        server_version = "Microsoft-IIS/10.0"
        sys_version = ""

        def do_GET(self) -> None:
            self._run("GET")

        def do_POST(self) -> None:
            self._run("POST")

        def _run(self, method: str) -> None:
            try:
                idp._handle(self, method)
            except _Drop:
                self.close_connection = True
            except OSError:
                self.close_connection = True  # the client gave up (timeout tests)

        def handle(self) -> None:
            # Failed handshakes (e.g. a client not trusting the CA) are not our bug.
            with contextlib.suppress(OSError):  # SSLError, resets, timeouts are OSErrors
                super().handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # tests inspect ``requests`` instead of stderr noise

    return Handler
