"""Mint HS256 JWTs the way the identity stand-in does, for Dovecot's local validation.

Dovecot (oauth2 passdb, introspection_mode = local) looks the key up at
``<azp or "default">/<alg>/<kid or "default">``; our tokens carry no azp and no kid,
so the key lives at ``default/HS256/default``. Dovecot requires ``"typ": "JWT"``,
``sub`` and ``exp``, has no clock leeway, and crashes on claims whose value is null.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

AUDIENCE = "https://outlook.office.com"
SCOPES = "IMAP.AccessAsUser.All SMTP.Send"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(claims: dict[str, Any], key: bytes) -> str:
    """Return a compact HS256 JWT over ``claims`` signed with ``key``."""
    if any(value is None for value in claims.values()):
        raise ValueError("null claims crash Dovecot's auth process")
    header = {"alg": "HS256", "typ": "JWT"}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


def access_token(username: str, key: bytes, lifetime: int = 3600, **extra: Any) -> str:
    """An Outlook-shaped access token for ``username`` that the test Dovecot accepts."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": AUDIENCE,
        "iss": "https://login.test/issuer",
        "sub": hashlib.sha256(username.lower().encode()).hexdigest()[:32],
        "email": username,
        "scp": SCOPES,
        "iat": now - 1,
        "nbf": now - 1,
        "exp": now + lifetime,
    }
    claims.update(extra)
    return mint(claims, key)
