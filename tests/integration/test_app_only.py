"""App-only access (client credentials) to a service mailbox: real MSAL, the identity
stand-in's client-credentials grant, and a test bed that, like Exchange, opens a service
mailbox only for an app an admin granted it to."""

from __future__ import annotations

import base64
import imaplib
import json
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.conftest import Account, bed_env
from tests.support.idp import IdentityStandIn
from tests.support.mailservers import MailServers

MESSAGE = b"From: a@example.com\r\nSubject: for the service\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
APP_ID = "9a7c3e11-2b4d-4f6a-8c0e-1d2e3f4a5b6c"
SECRET = "Xy8Q~app-secret-value-0123456789abcdefghij"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "hint:"))]


def exchange_hint(mailbox: str, smtp: bool = False) -> str:
    hint = (
        f"hint: the mailbox {mailbox} has not granted app {APP_ID} access: in Exchange Online PowerShell run "
        f"New-ServicePrincipal -AppId {APP_ID} -ObjectId <object id of the Enterprise application> and "
        f'Add-MailboxPermission -Identity "{mailbox}" -User <that object id> -AccessRights FullAccess'
    )
    if smtp:
        hint += (
            f'; for SMTP also Set-CASMailbox -Identity "{mailbox}" -SmtpClientAuthenticationDisabled $false '
            f'and Add-RecipientPermission -Identity "{mailbox}" -Trustee <that object id> -AccessRights SendAs'
        )
    return hint + " (README: App-only access)"


_count = iter(range(10**6))


@pytest.fixture
def service(servers: MailServers, idp: IdentityStandIn, ca_pem: Path, tmp_path: Path) -> Account:
    """A service mailbox granted to app APP_ID, configured for app-only access with a secret file."""
    address = f"svc{os.getpid()}x{next(_count)}@example.com"
    servers.add_user(address)
    app = idp.register_app(APP_ID, secret=SECRET)
    servers.grant_app(address, app.object_id)
    home = tmp_path / "home"
    home.mkdir()
    secret_file = home / "client-secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    env = bed_env(home, servers, ca_pem) | {
        "OUTLOOK_USERNAME": address,
        "OUTLOOK_CLIENT_ID": APP_ID,
        "OUTLOOK_CLIENT_SECRET_FILE": str(secret_file),
        "OUTLOOK_AUTHORITY": idp.authority(idp.tenant_id),
    }
    account = Account(address, home, env, servers, idp)
    account.extra["object_id"] = app.object_id
    return account


def test_list_with_no_login_then_zero_identity_requests_then_one_after_expiry(service: Account) -> None:
    service.seed(MESSAGE)
    first = service.run("list", "--json")
    assert first.returncode == 0, first.stderr
    assert [m["subject"] for m in json.loads(first.stdout)] == ["for the service"]
    assert service.idp.counts().get("token:client_credentials") == 1
    assert service.idp.counts().get("token", 0) == 1  # no device code, no refresh token
    assert oct(service.cache.stat().st_mode & 0o777) == "0o600"
    cached = json.loads(service.cache.read_text())
    assert cached["AccessToken"] and not cached.get("RefreshToken")
    # The token the stand-in issued: the app's roles, no user claims.
    token = service.idp.app_tokens[-1].token
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["roles"] == ["IMAP.AccessAsApp", "SMTP.SendAsApp"]
    assert claims["oid"] == service.extra["object_id"] and claims["aud"] == "https://outlook.office365.com"
    assert not {"email", "upn", "preferred_username", "scp"} & claims.keys()

    service.idp.reset_counts()
    second = service.run("list", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert second.returncode == 0, second.stderr
    assert service.idp.counts().get("total", 0) == 0
    # The cached app token is read from the file (signin/fastpath.py): msal is not even imported.
    imported = {line.split("|")[-1].strip() for line in second.stderr.splitlines() if line.startswith("import time:")}
    assert imported and not {"msal", "requests", "cryptography"} & imported

    # An expired cached token costs exactly one request.
    cache = json.loads(service.cache.read_text())
    for entry in cache["AccessToken"].values():
        entry["expires_on"] = entry["refresh_on"] = str(int(entry["expires_on"]) - 7200)
    service.cache.write_text(json.dumps(cache))
    service.idp.reset_counts()
    third = service.run("list")
    assert third.returncode == 0, third.stderr
    assert service.idp.counts() == {"total": 1, "token": 1, "token:client_credentials": 1}


def test_whoami_says_app_only_which_app_which_mailbox(service: Account) -> None:
    assert service.run("list").returncode == 0
    result = service.run("whoami")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"app-only     app {APP_ID} (client secret), no person signed in"
    assert lines[1] == f"mailbox      {service.address}"
    assert SECRET not in result.stdout + result.stderr
    data = json.loads(service.run("whoami", "--json").stdout)
    assert (data["mode"], data["client_id"], data["mailbox"], data["refresh_token"]) == (
        "app-only",
        APP_ID,
        service.address,
        False,
    )
    login = service.run("login")
    assert login.returncode == 64
    assert error_lines(login.stderr)[0] == (
        f"error: app-only access for {service.address} needs no login: the app signs in by itself"
    )
    assert service.run("login", "--browser", "--timeout", "1").returncode == 64


def test_send_and_fetch_with_exec_that_sees_no_secret(service: Account, tmp_path: Path) -> None:
    sent = service.run("send", "--to", "someone@elsewhere.test", "--subject", "from the app", "--body", "hi")
    assert sent.returncode == 0, sent.stderr
    arrived = service.servers.wait_for(
        lambda: [m for m in service.servers.external_mail() if m.message["Subject"] == "from the app"],
        what="the app's message",
    )
    assert arrived[0].message["From"] == service.address
    service.idp.reset_counts()
    service.seed(MESSAGE)
    dump = tmp_path / "env.txt"
    env = {"OUTLOOK_CLIENT_SECRET": SECRET}  # the plain variable too: it must not reach the handler
    env.pop("OUTLOOK_CLIENT_SECRET_FILE", None)
    run_env = {k: v for k, v in service.env.items() if k != "OUTLOOK_CLIENT_SECRET_FILE"} | env
    service.env = run_env
    result = service.run("fetch", "--backfill", "5", "--exec", f"env > {dump}", "--json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert SECRET not in dump.read_text()
    assert "OUTLOOK_CLIENT_SECRET=" not in dump.read_text()
    assert service.idp.counts().get("total", 0) == 0  # the cached app token from send


def test_ungranted_mailbox_gets_the_exchange_steps(service: Account) -> None:
    service.servers.revoke_app(service.address, service.extra["object_id"])
    try:
        listed = service.run("list")
        assert listed.returncode == 77
        assert error_lines(listed.stderr) == [
            f"error: IMAP server localhost port {service.servers.imaps_port} refused the sign-in for {service.address}",
            exchange_hint(service.address),
        ]
        sent = service.run("send", "--to", "x@elsewhere.test", "--subject", "s", "--body", "b")
        assert sent.returncode == 77
        assert error_lines(sent.stderr)[1] == exchange_hint(service.address, smtp=True)
        assert SECRET not in listed.stderr + sent.stderr
    finally:
        service.servers.grant_app(service.address, service.extra["object_id"])


def test_another_apps_token_does_not_open_the_mailbox(service: Account, tmp_path: Path) -> None:
    other = "1b2c3d4e-0000-4f6a-8c0e-1d2e3f4a5b6c"
    service.idp.register_app(other, secret="other-secret-0123456789")
    secret_file = service.home / "other-secret"
    secret_file.write_text("other-secret-0123456789")
    secret_file.chmod(0o600)
    result = service.run("list", env={"OUTLOOK_CLIENT_ID": other, "OUTLOOK_CLIENT_SECRET_FILE": str(secret_file)})
    assert result.returncode == 77
    assert f"has not granted app {other} access" in error_lines(result.stderr)[1]


@pytest.mark.parametrize(
    ("setup", "line", "hint"),
    [
        (
            lambda idp: idp.register_app(APP_ID, secret="the-real-secret-0123456789"),
            "AADSTS7000215: Invalid client secret provided.",
            "hint: the client secret is wrong: use the secret's Value (not its Secret ID) from App registrations > "
            "Certificates & secrets, in OUTLOOK_CLIENT_SECRET_FILE",
        ),
        (
            lambda idp: idp.register_app(APP_ID, secret=SECRET, secret_expired=True),
            "AADSTS7000222: The provided client secret keys for app",
            "hint: the client secret has expired: create a new one under App registrations > Certificates & secrets "
            "and put its Value in OUTLOOK_CLIENT_SECRET_FILE",
        ),
    ],
    ids=["wrong-secret", "expired-secret"],
)
def test_secret_refused_with_hint(
    service: Account, setup: Callable[[IdentityStandIn], object], line: str, hint: str
) -> None:
    setup(service.idp)
    result = service.run("list")
    assert result.returncode == 77
    error, got_hint = error_lines(result.stderr)
    assert error.startswith(f"error: app-only token for {APP_ID} refused: {line}")
    assert got_hint == hint
    assert SECRET not in result.stderr and not service.cache.exists()


def test_multi_tenant_authority_is_a_config_error(service: Account) -> None:
    result = service.run("list", env={"OUTLOOK_AUTHORITY": service.idp.authority("organizations")})
    assert result.returncode == 78
    assert error_lines(result.stderr) == [
        "error: app-only access needs your tenant in OUTLOOK_AUTHORITY, not organizations",
        "hint: set OUTLOOK_AUTHORITY=https://login.microsoftonline.com/<Directory (tenant) ID>",
    ]


def _certificate(tmp_path: Path, name: str) -> tuple[bytes, bytes, rsa.RSAPrivateKey, x509.Certificate]:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)  # Entra app certificates are RSA
    leaf = ca.issue_cert(f"{name}.mailbot.test", key_type=trustme.KeyType.RSA)
    cert_pem = leaf.cert_chain_pems[0].bytes()
    key_pem = leaf.private_key_pem.bytes()
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return cert_pem, key_pem, key, x509.load_pem_x509_certificate(cert_pem)


def test_certificate_pem_and_pfx(service: Account, tmp_path: Path) -> None:
    cert_pem, key_pem, key, cert = _certificate(tmp_path, "app")
    service.idp.register_app(APP_ID, certificate_pem=cert_pem)
    pem = service.home / "app.pem"
    pem.write_bytes(cert_pem + key_pem)
    pem.chmod(0o600)
    env = {k: v for k, v in service.env.items() if k != "OUTLOOK_CLIENT_SECRET_FILE"}
    env["OUTLOOK_CLIENT_CERTIFICATE"] = str(pem)
    service.env = env
    result = service.run("list")
    assert result.returncode == 0, result.stderr
    assert service.idp.app_tokens[-1].credential == "certificate"
    assertion = service.idp.requests[-1].form["client_assertion"]
    header = json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "=="))
    assert header["alg"] == "PS256"
    assert base64.urlsafe_b64decode(header["x5t#S256"]) == cert.fingerprint(hashes.SHA256())
    whoami = service.run("whoami")
    assert f"app {APP_ID} (certificate)" in whoami.stdout

    # PFX with a password from a file.
    pfx = service.home / "app.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"app", key, cert, None, serialization.BestAvailableEncryption(b"pfx-password-1")
        )
    )
    pfx.chmod(0o600)
    password = service.home / "pfx-password"
    password.write_text("pfx-password-1\n")
    password.chmod(0o600)
    service.cache.unlink()
    service.idp.reset_counts()
    result = service.run(
        "list", env={"OUTLOOK_CLIENT_CERTIFICATE": str(pfx), "OUTLOOK_CLIENT_CERTIFICATE_PASSWORD_FILE": str(password)}
    )
    assert result.returncode == 0, result.stderr
    assert service.idp.counts().get("token:client_credentials") == 1

    # A certificate the app registration does not know.
    other_pem, other_key, _, other = _certificate(tmp_path, "other")
    pem.write_bytes(other_pem + other_key)
    service.cache.unlink()
    result = service.run("list")
    assert result.returncode == 77
    error, hint = error_lines(result.stderr)
    thumb = base64.urlsafe_b64encode(other.fingerprint(hashes.SHA256())).decode()
    assert error.startswith(
        f"error: app-only token for {APP_ID} refused: AADSTS700027: The certificate with identifier"
    )
    assert f"Thumbprint of key used by client: '{thumb}'" in error
    assert hint == (
        "hint: the certificate is not registered on the app: upload its public part under App registrations > "
        "Certificates & secrets > Certificates (or check OUTLOOK_CLIENT_CERTIFICATE)"
    )


def test_token_xoauth2_is_accepted_by_imap(service: Account, ca_pem: Path) -> None:
    service.seed(MESSAGE)
    result = service.run("token", "--xoauth2")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    sasl = base64.b64decode(result.stdout.strip())
    assert sasl.startswith(f"user={service.address}\x01auth=Bearer ".encode())
    imap = imaplib.IMAP4_SSL(
        service.servers.host, service.servers.imaps_port, ssl_context=ssl.create_default_context(cafile=str(ca_pem))
    )
    try:
        typ, _ = imap.authenticate("XOAUTH2", lambda _: sasl)
        assert typ == "OK"
        typ, data = imap.select("INBOX", readonly=True)
        assert (typ, data) == ("OK", [b"1"])
    finally:
        imap.logout()


def test_doctor_app_only(service: Account) -> None:
    result = service.run("doctor")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"OK   configuration: app-only access to {service.address} as app {APP_ID} (client secret), authority "
    )
    assert lines[1].endswith("does not exist yet (app-only: the first run creates it)")
    assert (
        f"OK   app-only token (client credentials): the identity platform issued an app token for app {APP_ID}" in lines
    )
    assert any(line.startswith("OK   IMAP XOAUTH2 sign-in and LIST") for line in lines)
    assert SECRET not in result.stdout + result.stderr
    service.servers.revoke_app(service.address, service.extra["object_id"])
    try:
        refused = service.run("doctor")
        assert refused.returncode == 77
        assert f"     {exchange_hint(service.address)}" in refused.stdout.splitlines()
    finally:
        service.servers.grant_app(service.address, service.extra["object_id"])


def test_no_secret_or_token_in_verbose_logs_and_logout(service: Account) -> None:
    result = service.run("-vv", "list", "--json")
    assert result.returncode == 0, result.stderr
    tokens = [t.token for t in service.idp.app_tokens]
    assert tokens
    for secret in [SECRET, *tokens]:
        assert secret not in result.stdout + result.stderr
        assert secret[:20] not in result.stderr
    assert "client_secret=" not in result.stderr or "client_secret=***" in result.stderr
    out = service.run("logout")
    assert out.returncode == 0, out.stderr
    assert not json.loads(service.cache.read_text()).get("AccessToken")
    service.idp.reset_counts()
    assert service.run("list").returncode == 0
    assert service.idp.counts().get("token:client_credentials") == 1
