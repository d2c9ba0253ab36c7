"""The stand-in's authorization-code (PKCE) and client-credentials grants refuse what Entra refuses."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.support.idp import IdentityStandIn

CLIENT = "5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f"
APP = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Client:
    def __init__(self, idp: IdentityStandIn, ca_pem: Path) -> None:
        self.idp = idp
        self.context = ssl.create_default_context(cafile=str(ca_pem))

        class Stay(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.context), Stay)

    def authorize(self, **params: str) -> tuple[int, dict[str, str]]:
        query = {"client_id": CLIENT, "response_type": "code", "scope": "openid offline_access", **params}
        url = f"{self.idp.authority('organizations')}/oauth2/v2.0/authorize?{urllib.parse.urlencode(query)}"
        try:
            with self.opener.open(url, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as answer:
            if answer.code == 302:
                location = urllib.parse.urlsplit(answer.headers["Location"])
                return 302, dict(urllib.parse.parse_qsl(location.query))
            return answer.code, json.loads(answer.read())

    def token(self, tenant: str = "organizations", **form: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"{self.idp.authority(tenant)}/oauth2/v2.0/token", data=urllib.parse.urlencode(form).encode()
        )
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as answer:
            return answer.code, json.loads(answer.read())


@pytest.fixture
def client(idp: IdentityStandIn, ca_pem: Path) -> Client:
    return Client(idp, ca_pem)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def code_for(client: Client, challenge: str, redirect: str = "http://localhost:8765") -> str:
    status, answer = client.authorize(
        redirect_uri=redirect,
        code_challenge=challenge,
        code_challenge_method="S256",
        state="s1",
        login_hint="u@example.com",
    )
    assert status == 302 and answer["state"] == "s1", answer
    return answer["code"]


def redeem(
    client: Client, code: str, verifier: str, redirect: str = "http://localhost:8765"
) -> tuple[int, dict[str, Any]]:
    return client.token(
        grant_type="authorization_code", client_id=CLIENT, code=code, code_verifier=verifier, redirect_uri=redirect
    )


def test_code_with_pkce_wrong_verifier_reused_expired(client: Client, idp: IdentityStandIn) -> None:
    verifier, challenge = pkce()
    code = code_for(client, challenge)
    status, body = redeem(client, code, "x" * 43)
    assert (status, body["error"], body["error_codes"]) == (400, "invalid_grant", [501481])
    status, body = redeem(client, code, verifier, redirect="http://localhost:9999")
    assert (status, body["error_codes"]) == (400, [500117])
    status, body = redeem(client, code, verifier)
    assert status == 200 and body["refresh_token"] and body["access_token"]
    status, body = redeem(client, code, verifier)
    assert (status, body["error_codes"]) == (400, [54005])
    idp.code_lifetime = 0
    verifier, challenge = pkce()
    code = code_for(client, challenge)
    time.sleep(0.01)
    status, body = redeem(client, code, verifier)
    assert (status, body["error_codes"]) == (400, [70008])
    assert body["error_description"].startswith("AADSTS70008: The provided authorization code")


def test_authorize_checks_redirect_uri_and_pkce(client: Client, idp: IdentityStandIn) -> None:
    _, challenge = pkce()
    status, body = client.authorize(
        redirect_uri="https://evil.example/cb", code_challenge=challenge, code_challenge_method="S256"
    )
    assert (status, body["error_codes"]) == (400, [50011])  # no redirect to an unregistered URI
    status, answer = client.authorize(redirect_uri="http://localhost", login_hint="u@example.com", state="s")
    assert status == 302 and answer["error"] == "invalid_request" and "PKCE" not in answer.get("code", "")
    assert "Proof Key for Code Exchange" in answer["error_description"]
    status, answer = client.authorize(
        redirect_uri="http://localhost",
        code_challenge=challenge,
        code_challenge_method="plain",
        login_hint="u@example.com",
    )
    assert status == 302 and answer["error"] == "invalid_request"


def _assertion(key: Any, header: dict[str, Any], claims: dict[str, Any], alg: str = "PS256") -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}".encode()
    if alg == "PS256":
        signature = key.sign(
            signing_input, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
        )
    else:
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64url(signature)}"


def test_client_assertion_signature_thumbprint_audience(client: Client, idp: IdentityStandIn) -> None:
    leaf = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("app.test", key_type=trustme.KeyType.RSA)
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    idp.register_app(APP, certificate_pem=leaf.cert_chain_pems[0].bytes())
    tenant = idp.tenant_id
    endpoint = f"{idp.authority(tenant)}/oauth2/v2.0/token"
    now = int(time.time())
    claims = {"aud": endpoint, "iss": APP, "sub": APP, "exp": now + 600, "nbf": now, "jti": "1"}
    s256 = {"alg": "PS256", "typ": "JWT", "x5t#S256": b64url(cert.fingerprint(hashes.SHA256()))}
    sha1 = {"alg": "RS256", "typ": "JWT", "x5t": b64url(cert.fingerprint(hashes.SHA1()))}  # noqa: S303

    def request(assertion: str) -> tuple[int, dict[str, Any]]:
        return client.token(
            tenant,
            grant_type="client_credentials",
            client_id=APP,
            scope="https://outlook.office365.com/.default",
            client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            client_assertion=assertion,
        )

    status, body = request(_assertion(key, s256, claims))
    assert status == 200 and body["token_type"] == "Bearer" and "refresh_token" not in body
    token_claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert token_claims["roles"] == ["IMAP.AccessAsApp", "SMTP.SendAsApp"] and token_claims["appid"] == APP
    assert not {"email", "upn", "preferred_username", "scp", "name"} & token_claims.keys()
    assert request(_assertion(key, sha1, claims, "RS256"))[0] == 200

    good = _assertion(key, s256, claims)
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    status, body = request(forged)
    assert (status, body["error"], body["error_codes"]) == (401, "invalid_client", [700027])
    assert "signature validation" in body["error_description"]
    status, body = request(_assertion(key, s256, {**claims, "aud": "https://elsewhere/token"}))
    assert status == 401 and "audience" in body["error_description"]
    status, body = request(_assertion(key, {**s256, "x5t#S256": b64url(b"\0" * 32)}, claims))
    assert status == 401 and "Thumbprint of key used by client" in body["error_description"]
    status, body = client.token(
        tenant, grant_type="client_credentials", client_id=APP, scope="https://outlook.office365.com/.default"
    )
    assert (status, body["error_codes"]) == (401, [7000218])
    status, body = client.token(
        tenant,
        grant_type="client_credentials",
        client_id=APP,
        scope="https://outlook.office365.com/IMAP.AccessAsApp",
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        client_assertion=_assertion(key, s256, claims),
    )
    assert (status, body["error_codes"]) == (400, [1002012])
