"""The mail-server test bed itself works: real Dovecot + Postfix, XOAUTH2 everywhere."""

from __future__ import annotations

import imaplib
import itertools
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage

import pytest
import trustme

from tests.support.jwt_hs256 import access_token
from tests.support.mailservers import MailServers, TestbedUnavailable

KEY = b"test-bed-signing-key-0123456789abcdef"
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, ca):
    servers = MailServers(tmp_path_factory.mktemp("mail"), ca, trustme.CA(), KEY)
    try:
        servers.start()
    except TestbedUnavailable as exc:
        pytest.skip(str(exc))
    yield servers
    servers.stop()


@pytest.fixture
def ctx(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def new_user(servers: MailServers) -> str:
    address = f"t{next(_ids)}x{time.monotonic_ns() % 10**6}@example.com"
    servers.add_user(address)
    return address


def sasl(address: str, token: str) -> str:
    return f"user={address}\x01auth=Bearer {token}\x01\x01"


def imap_login(servers, ctx, address, token=None) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL(servers.host, servers.imaps_port, ssl_context=ctx, timeout=10)
    s = sasl(address, token or access_token(address, KEY))
    imap.authenticate("XOAUTH2", lambda challenge=None: "" if challenge else s)
    return imap


def smtp_login(servers, ctx, address, token=None) -> smtplib.SMTP:
    smtp = smtplib.SMTP(servers.host, servers.submission_port, timeout=10)
    smtp.starttls(context=ctx)
    s = sasl(address, token or access_token(address, KEY))
    smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge else s)
    return smtp


def message(sender: str, to: str, subject: str, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("hello\n")
    return msg


def inbox_subjects(servers, ctx, address) -> list[str]:
    imap = imap_login(servers, ctx, address)
    try:
        imap.select("INBOX")
        _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [part[1].decode().split(":", 1)[1].strip() for part in data if isinstance(part, tuple)]
    finally:
        imap.logout()


# ---------------------------------------------------------------- IMAP auth


def test_imaps_xoauth2_login(servers, ctx):
    user = new_user(servers)
    imap = imap_login(servers, ctx, user)
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()


def test_oauthbearer_login(servers, ctx):
    user = new_user(servers)
    imap = imaplib.IMAP4_SSL(servers.host, servers.imaps_port, ssl_context=ctx)
    s = f"n,a={user},\x01auth=Bearer {access_token(user, KEY)}\x01\x01"
    imap.authenticate("OAUTHBEARER", lambda challenge=None: "" if challenge else s)
    imap.logout()


@pytest.mark.parametrize("case", ["other-user", "bad-signature", "unknown-user", "expired"])
def test_imap_refuses_bad_tokens_quickly(servers, ctx, case):
    user, other = new_user(servers), new_user(servers)
    token = {
        "other-user": lambda: access_token(other, KEY),
        "bad-signature": lambda: access_token(user, b"wrong key"),
        "unknown-user": lambda: access_token("nobody@example.com", KEY),
        "expired": lambda: access_token(user, KEY, lifetime=-10),
    }[case]()
    login = "nobody@example.com" if case == "unknown-user" else user
    started = time.monotonic()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(servers, ctx, login, token)
    assert time.monotonic() - started < 2
    imap_login(servers, ctx, user).logout()  # no penalty for the next good login


def test_outlook_sized_token(servers, ctx):
    user = new_user(servers)
    token = access_token(user, KEY, padding="x" * 2500)
    assert len(token) > 3000
    imap_login(servers, ctx, user, token).logout()
    smtp_login(servers, ctx, user, token).quit()


def test_starttls_required_before_auth(servers, ctx):
    user = new_user(servers)
    s = sasl(user, access_token(user, KEY))
    imap = imaplib.IMAP4(servers.starttls_host, servers.imap_starttls_port, timeout=10)
    assert "LOGINDISABLED" in imap.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        imap.authenticate("XOAUTH2", lambda challenge=None: "" if challenge else s)
    imap.starttls(ssl_context=ctx)
    imap.authenticate("XOAUTH2", lambda challenge=None: "" if challenge else s)
    imap.logout()


def test_untrusted_certificates_fail_verification(servers, ctx):
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(servers.untrusted_host, servers.untrusted_imaps_port, ssl_context=ctx)
    smtp = smtplib.SMTP(servers.host, servers.untrusted_submission_port, timeout=10)
    with pytest.raises(ssl.SSLCertVerificationError):
        smtp.starttls(context=ctx)
    # ... but they do speak TLS.
    imaplib.IMAP4_SSL(
        servers.untrusted_host,
        servers.untrusted_imaps_port,
        ssl_context=ssl._create_unverified_context(),  # noqa: S323 - it does speak TLS
    ).logout()


# ---------------------------------------------------------------- SMTP


def test_submission_delivers_to_imap(servers, ctx):
    alice, bob = new_user(servers), new_user(servers)
    smtp = smtp_login(servers, ctx, alice)
    smtp.send_message(message(alice, bob, "via submission"))
    smtp.quit()
    servers.wait_for(lambda: servers.messages(bob), what="delivery")
    assert inbox_subjects(servers, ctx, bob) == ["via submission"]


def test_smtps_delivers(servers, ctx):
    alice = new_user(servers)
    smtp = smtplib.SMTP_SSL(servers.host, servers.smtps_port, context=ctx, timeout=10)
    s = sasl(alice, access_token(alice, KEY))
    smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge else s)
    smtp.send_message(message(alice, alice, "via smtps"))
    smtp.quit()
    servers.wait_for(lambda: servers.messages(alice), what="delivery")


def test_smtp_auth_failure_then_success(servers, ctx):
    alice = new_user(servers)
    smtp = smtplib.SMTP(servers.host, servers.submission_port, timeout=10)
    smtp.ehlo()
    assert not smtp.has_extn("auth")  # no AUTH before STARTTLS
    smtp.starttls(context=ctx)
    bad = sasl(alice, access_token(alice, b"wrong"))
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge else bad)
    assert err.value.smtp_code == 535
    good = sasl(alice, access_token(alice, KEY))
    smtp.auth("XOAUTH2", lambda challenge=None: "" if challenge else good)
    smtp.quit()


def test_sender_must_be_login_unless_allowed(servers, ctx):
    alice, shared = new_user(servers), new_user(servers)
    smtp = smtp_login(servers, ctx, alice)
    with pytest.raises(smtplib.SMTPSenderRefused) as err:
        smtp.send_message(message(shared, alice, "spoof"))
    assert 500 <= err.value.smtp_code < 600
    smtp.quit()
    servers.allow_send_as(alice, shared)
    smtp = smtp_login(servers, ctx, alice)
    smtp.send_message(message(shared, alice, "send as"))
    smtp.quit()
    smtp = smtp_login(servers, ctx, shared)  # the owner still can
    smtp.send_message(message(shared, alice, "own"))
    smtp.quit()
    servers.wait_for(lambda: len(servers.messages(alice)) == 2, what="delivery")


def test_external_recipients_go_to_catchall(servers, ctx):
    alice, bob = new_user(servers), new_user(servers)
    tag = f"ext{time.monotonic_ns()}"
    smtp = smtp_login(servers, ctx, alice)
    msg = message(alice, f"{tag}@other.test", tag, Cc=f"{tag}cc@other.test, {bob}")
    smtp.send_message(msg, to_addrs=[f"{tag}@other.test", f"{tag}cc@other.test", bob, f"{tag}bcc@third.test"])
    smtp.quit()

    def copies():
        got = [m for m in servers.external_mail() if m.message["Subject"] == tag]
        return got if len(got) == 3 else None

    got = servers.wait_for(copies, what="catch-all delivery")
    assert sorted(m.recipient for m in got) == sorted(
        [f"{tag}@other.test", f"{tag}cc@other.test", f"{tag}bcc@third.test"]
    )
    assert all("Bcc" not in m.message for m in got)
    servers.wait_for(lambda: servers.messages(bob), what="local copy")


# ---------------------------------------------------------------- seeding, rawlog


def test_seeded_messages_visible_and_flags_settable(servers, ctx):
    user = new_user(servers)
    for i in range(5):
        servers.seed(
            user,
            message("x@other.test", user, f"seed {i}").as_bytes(),
            seen=i == 0,
            internaldate=1_700_000_000 + i,
        )
    servers.seed(user, message("x@other.test", user, "archived").as_bytes(), folder="Archive")
    imap = imap_login(servers, ctx, user)
    imap.select("INBOX")
    _, data = imap.fetch("1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [p[1].decode().split(":", 1)[1].strip() for p in data if isinstance(p, tuple)]
    assert subjects == [f"seed {i}" for i in range(5)]
    assert b"\\Seen" in data[0][0] and b"\\Seen" not in data[2][0]
    assert b"14-Nov-2023" in data[0][0]
    assert imap.store("2", "+FLAGS", "(\\Flagged \\Seen)")[0] == "OK"
    _, listing = imap.list()
    assert any(b"Archive" in line for line in listing)
    imap.logout()
    files = servers.messages(user)
    assert files[1].name.endswith(":2,FS")


def test_imap_commands_are_recorded(servers, ctx):
    user = new_user(servers)
    servers.seed(user, message("x@other.test", user, "one").as_bytes())
    imap = imap_login(servers, ctx, user)
    imap.select("INBOX")
    imap.fetch("1", "(FLAGS)")
    imap.fetch("1", "(UID)")
    imap.logout()
    commands = servers.imap_commands(user)
    assert sum(" FETCH " in line.upper() for line in commands) == 2
    assert any(" SELECT " in line.upper() for line in commands)
    servers.clear_imap_commands(user)
    assert servers.imap_commands(user) == []


# ---------------------------------------------------------------- delegation, restart


def test_shared_mailbox_delegation(servers, ctx):
    alice, bob = new_user(servers), new_user(servers)
    shared = f"shared{next(_ids)}x{time.monotonic_ns() % 10**6}@example.com"
    servers.add_user(shared)
    token = access_token(alice, KEY, mailbox=shared)
    imap_login(servers, ctx, shared, token).logout()
    imap_login(servers, ctx, alice, token).logout()  # the delegate token still works for alice
    # (a token without the claim is an internal error in Dovecot here: UNAVAILABLE)
    with pytest.raises(imaplib.IMAP4.error, match=r"AUTHENTICATIONFAILED|UNAVAILABLE"):
        imap_login(servers, ctx, shared, access_token(bob, KEY))
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(servers, ctx, shared, access_token(bob, KEY, mailbox=alice))
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        imap_login(servers, ctx, bob, token)
    smtp = smtp_login(servers, ctx, shared, token)
    smtp.send_message(message(shared, bob, "from shared"))
    smtp.quit()
    servers.wait_for(lambda: servers.messages(bob), what="delivery")


def test_unavailable_without_root(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    servers = MailServers(tmp_path, trustme.CA(), trustme.CA(), KEY)
    with pytest.raises(TestbedUnavailable, match="apt-get install"):
        servers.start()
    servers.stop()  # harmless when never started


def test_postfix_stop_and_start(servers, ctx):
    alice = new_user(servers)
    servers.stop_postfix()
    with pytest.raises(OSError):
        socket.create_connection((servers.host, servers.submission_port), timeout=2)
    servers.start_postfix()
    smtp = smtp_login(servers, ctx, alice)
    smtp.send_message(message(alice, alice, "after restart"))
    smtp.quit()
    servers.wait_for(lambda: servers.messages(alice), what="delivery")
