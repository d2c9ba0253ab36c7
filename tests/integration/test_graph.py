"""Sending through Microsoft Graph (OUTLOOK_SEND_VIA): the real CLI against the Graph stand-in,
which delivers what it accepts over LMTP into the test bed's Dovecot, so every test looks at
the messages that arrived. Tokens come from the identity stand-in through real MSAL.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import os
import random
import re
import stat
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from tests.conftest import Account
from tests.integration.test_idp import claims, make_app, sign_in
from tests.integration.test_send import at, delivered, error_lines, parse
from tests.support.graph import GraphStandIn
from tests.support.hostile import ScriptedSmtp
from tests.support.idp import IdentityStandIn
from tests.support.mailservers import MailServers

CHALLENGE = "334 eyJzdGF0dXMiOiI1MzUifQ=="
AUTH_OFF = "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."


@pytest.fixture(scope="session")
def graph_session(ca: trustme.CA, jwt_key: bytes, servers: MailServers) -> Iterator[GraphStandIn]:
    stand_in = GraphStandIn(ca, jwt_key, servers.lmtp_port)
    yield stand_in
    stand_in.stop()


@pytest.fixture
def graph(graph_session: GraphStandIn) -> Iterator[GraphStandIn]:
    graph_session.clear()
    yield graph_session
    graph_session.clear()


@pytest.fixture
def via_graph(account: Account, graph: GraphStandIn) -> Account:
    """Signed in with OUTLOOK_SEND_VIA=graph (login then also caches a Graph token)."""
    account.env |= {"OUTLOOK_GRAPH_URL": graph.base_url, "OUTLOOK_SEND_VIA": "graph"}
    account.login()
    account.idp.reset_counts()
    return account


@pytest.fixture
def auto(account: Account, graph: GraphStandIn) -> Account:
    """Signed in with the default OUTLOOK_SEND_VIA=auto."""
    account.env.pop("OUTLOOK_SEND_VIA")
    account.env |= {"OUTLOOK_GRAPH_URL": graph.base_url}
    account.login()
    account.idp.reset_counts()
    return account


@pytest.fixture
def scripted_peer(ca: trustme.CA) -> Iterator[list[ScriptedSmtp]]:
    peers: list[ScriptedSmtp] = []
    yield peers
    for peer in peers:
        peer.close()


TRACE = (b"Return-Path:", b"Delivered-To:", b"Received:")


def unfolded_without_trace(raw: bytes) -> bytes:
    """The delivered file minus the fields LMTP delivery puts on top (Return-Path, Delivered-To,
    Received, with their continuation lines), with LF line ends."""
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(TRACE):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\n".join(lines[i:])


def send(account: Account, *args: str, env: dict[str, str] | None = None) -> str:
    result = account.run("send", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# ------------------------------------------------------------------------------ sendMail


def test_small_message_is_one_sendmail_and_arrives_byte_identical(
    via_graph: Account, graph: GraphStandIn, tmp_path: Path
) -> None:
    binary = bytes(random.Random(7).randrange(256) for _ in range(50_000))
    (tmp_path / "données.bin").write_bytes(binary)
    (tmp_path / "notes.txt").write_text("zeile ä\nline 2\n", encoding="utf-8")
    subject = "Grüße aus Köln – 東京 ✓"
    message_id = send(
        via_graph,
        "--to", f"Jürgen Müller <{via_graph.address}>",
        "--subject", subject,
        "--body", "Hallo ä ö ü ß\n",
        "--attach", str(tmp_path / "données.bin"),
        "--attach", str(tmp_path / "notes.txt"),
    )  # fmt: skip
    assert graph.counts() == {"sendMail": 1}
    assert via_graph.idp.counts().get("total", 0) == 0  # the Graph token login cached is used
    (raw,) = delivered(via_graph)
    (sent_mime,) = graph.received_mime
    # What arrived is exactly what mailbot handed to Graph (Dovecot adds its trace headers on top).
    assert unfolded_without_trace(raw) == sent_mime.replace(b"\r\n", b"\n")
    msg = parse(raw)
    assert msg["Message-ID"] == message_id
    assert msg["Subject"] == subject
    assert "Jürgen Müller" in str(msg["To"])
    files = {part.get_filename(): part.get_payload(decode=True) for part in msg.iter_attachments()}
    assert files["données.bin"] == binary
    assert files["notes.txt"] == "zeile ä\nline 2\n".encode()
    # The same bytes mailbot would hand to SMTP: --dry-run builds them with the same code.
    dry = via_graph.run("send", "--dry-run", "--to", via_graph.address, "--subject", subject, "--body", "x")
    assert dry.returncode == 0
    assert "transport: graph (OUTLOOK_SEND_VIA=graph)" in dry.stderr.splitlines()


def test_graph_token_is_for_graph_and_a_second_run_needs_no_identity_request(
    via_graph: Account, graph: GraphStandIn
) -> None:
    send(via_graph, "--to", via_graph.address, "--body", "one")
    send(via_graph, "--to", via_graph.address, "--body", "two")
    assert via_graph.idp.counts().get("total", 0) == 0
    graph_tokens = [t for t in via_graph.idp.access_tokens if claims(t.token)["aud"] == "https://graph.microsoft.com"]
    assert graph_tokens, "login asked for a Graph token"
    assert set(claims(graph_tokens[-1].token)["scp"].split()) == {"Mail.Send", "Mail.ReadWrite"}
    assert len(delivered(via_graph, count=2)) == 2


@pytest.mark.parametrize(
    ("scopes", "refreshes_on_second_call"),
    [
        (["Mail.Send", "Mail.ReadWrite"], 0),  # what mailbot asks for
        (["https://graph.microsoft.com/Mail.Send", "https://graph.microsoft.com/Mail.ReadWrite"], 1),
    ],
    ids=["bare-hits-the-cache", "prefixed-misses-it"],
)
def test_graph_scope_spelling_that_hits_the_cache(
    idp: IdentityStandIn, scopes: list[str], refreshes_on_second_call: int
) -> None:
    """Entra answers Graph scopes without the prefix; MSAL files the token under the answer."""
    app = make_app(idp)
    sign_in(app, idp, user="spelling@example.test")
    (acct,) = app.get_accounts()
    first = app.acquire_token_silent(scopes, account=acct)
    assert claims(first["access_token"])["aud"] == "https://graph.microsoft.com"
    idp.reset_counts()
    second = app.acquire_token_silent(scopes, account=acct)
    assert second is not None and "access_token" in second
    assert idp.counts().get("token:refresh_token", 0) == refreshes_on_second_call


def test_one_token_request_never_mixes_resources(idp: IdentityStandIn) -> None:
    app = make_app(idp)
    sign_in(app, idp, user="mixed@example.test")
    (acct,) = app.get_accounts()
    result = app.acquire_token_silent_with_error(
        ["https://outlook.office.com/SMTP.Send", "Mail.Send"], account=acct, force_refresh=True
    )
    assert result is not None and "AADSTS28000" in result.get("error_description", "")


def test_missing_graph_consent_names_the_permission_then_login_asks_for_it(
    account: Account, graph: GraphStandIn
) -> None:
    account.env |= {"OUTLOOK_GRAPH_URL": graph.base_url, "OUTLOOK_SEND_VIA": "auto"}
    account.idp.withhold_consent(account.address)
    login = account.login()  # auto: a note, login itself succeeds
    assert "note: Microsoft Graph refused a token" in login.stderr
    account.env["OUTLOOK_SEND_VIA"] = "graph"
    result = account.run("send", "--to", account.address, "--body", "x")
    assert result.returncode == 77, result.stderr
    assert error_lines(result.stderr) == [
        f"error: Microsoft Graph refused a token for {account.address}: the permissions Mail.Send and "
        "Mail.ReadWrite were not granted (AADSTS65001)",
        "hint: add the Microsoft Graph delegated permissions Mail.Send and Mail.ReadWrite to the app registration "
        "(Entra admin center > App registrations > API permissions > Add a permission > Microsoft Graph > "
        'Delegated), grant consent, then run "python mailbot.py login"',
    ]
    assert graph.counts() == {}
    # graph: login asks for the consent with a second code, then sending works.
    account.idp.auto_approve(account.address, times=2)
    login = account.run("login")
    assert login.returncode == 0, login.stderr
    assert login.stderr.count("enter the code") == 2
    send(account, "--to", account.address, "--body", "after consent")
    assert len(delivered(account)) == 1


# ------------------------------------------------------------------------------ Bcc, large


def test_bcc_goes_through_a_draft_and_no_copy_carries_it(via_graph: Account, graph: GraphStandIn) -> None:
    servers = via_graph.servers
    hidden = f"hidden{os.getpid()}x{time.monotonic_ns()}@example.com"
    servers.add_user(hidden)
    message_id = send(via_graph, "--to", via_graph.address, "--bcc", hidden, "--subject", "with bcc", "--body", "b")
    counts = graph.counts()
    assert counts == {"createDraft": 1, "patch": 1, "send": 1}
    copies = delivered(via_graph) + delivered(via_graph, hidden)
    assert [parse(raw)["Message-ID"] for raw in copies] == [message_id, message_id]
    for raw in copies:
        assert parse(raw)["Bcc"] is None
        headers = unfolded_without_trace(raw).split(b"\n\n", 1)[0]
        assert hidden.encode() not in headers and b"\nbcc:" not in b"\n" + headers.lower()
    (patch,) = [r for r in graph.requests if r.route == "patch"]
    assert patch.status == 200


def test_the_stand_in_drops_a_bcc_header_in_mime_sendmail_like_graph(
    graph: GraphStandIn, servers: MailServers, jwt_key: bytes, ca_pem: Path
) -> None:
    """Why the draft path: a Bcc header in MIME sendMail reaches nobody."""
    import base64

    import requests

    from tests.support import jwt_hs256

    sender = f"mimebcc{os.getpid()}@example.com"
    hidden = f"mimebcchidden{os.getpid()}@example.com"
    servers.add_user(sender)
    servers.add_user(hidden)
    token = jwt_hs256.access_token(sender, jwt_key, aud="https://graph.microsoft.com", scp="Mail.Send")
    mime = f"From: {sender}\r\nTo: {sender}\r\nBcc: {hidden}\r\nSubject: x\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n"
    response = requests.post(
        graph.base_url + "/v1.0/me/sendMail",
        data=base64.b64encode(mime.encode()),
        headers={"Authorization": "Bearer " + token, "Content-Type": "text/plain"},
        verify=str(ca_pem),
        timeout=10,
    )
    assert response.status_code == 202
    servers.wait_for(lambda: servers.messages(sender), what="delivery")
    assert servers.messages(hidden) == []


def test_ten_megabyte_attachment_goes_through_an_upload_session(
    via_graph: Account, graph: GraphStandIn, tmp_path: Path
) -> None:
    big = random.Random(3).randbytes(10 * 1024 * 1024)
    small = b"small file\n" * 100
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "small.txt").write_bytes(small)
    message_id = send(
        via_graph, "--to", via_graph.address, "--subject", "Große Datei", "--body", "see attached",
        "--attach", str(tmp_path / "big.bin"), "--attach", str(tmp_path / "small.txt"),
    )  # fmt: skip
    counts = graph.counts()
    assert counts["createDraft"] == 1 and counts["createUploadSession"] == 1 and counts["send"] == 1
    assert counts["upload"] == 4  # 10 MiB in 3.2 MB chunks (multiples of 320 KiB)
    assert "sendMail" not in counts
    (raw,) = delivered(via_graph)
    msg = parse(raw)
    assert msg["Message-ID"] == message_id and msg["Subject"] == "Große Datei"
    files = {part.get_filename(): part.get_payload(decode=True) for part in msg.iter_attachments()}
    assert files["big.bin"] == big
    assert files["small.txt"] == small


# ------------------------------------------------------------------------------ auto fallback


def test_auto_falls_back_after_535_5_7_139_and_remembers_it(
    auto: Account, graph: GraphStandIn, ca: trustme.CA, scripted_peer: list[ScriptedSmtp]
) -> None:
    peer = ScriptedSmtp(ca.issue_cert("localhost", "127.0.0.1"), auth=[CHALLENGE, AUTH_OFF])
    scripted_peer.append(peer)
    env = at(peer.port) | {"OUTLOOK_GRAPH_URL": graph.base_url}
    auto.env |= env
    first = auto.run("send", "--to", auto.address, "--body", "one")
    assert first.returncode == 0, first.stderr
    assert (
        f"note: SMTP server localhost port {peer.port} (as {auto.address}) refused the sign-in: {AUTH_OFF}: "
        "SMTP AUTH is disabled; sending through Microsoft Graph, now and from now on "
        '(re-test SMTP with "python mailbot.py doctor --retest-smtp")'
    ) in first.stderr.splitlines()
    assert len([line for line in peer.lines if line.startswith("AUTH")]) == 1
    assert peer.messages == []
    assert graph.counts() == {"sendMail": 1}
    (state,) = auto.home.glob("send-via-*.json")
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert json.loads(state.read_text())["via"] == "graph"
    lines_before = len(peer.lines)

    dry = auto.run("send", "--dry-run", "--to", auto.address, "--body", "x")
    assert re.search(
        r"^transport: graph \(OUTLOOK_SEND_VIA=auto, and SMTP AUTH was refused on \d{4}-", dry.stderr, re.M
    )
    second = auto.run("send", "--to", auto.address, "--body", "two")
    assert second.returncode == 0, second.stderr
    assert len(peer.lines) == lines_before  # no SMTP connection at all
    assert graph.counts() == {"sendMail": 2}
    assert len(delivered(auto, count=2)) == 2
    assert auto.idp.counts().get("total", 0) == 0  # both tokens were cached by login

    doctor = auto.run("doctor")
    assert (
        "send transport" in doctor.stdout and "graph: OUTLOOK_SEND_VIA=auto, and SMTP AUTH was refused" in doctor.stdout
    )
    assert len(peer.lines) == lines_before  # doctor does not retry SMTP unless asked
    # SMTP works again (the real Postfix): --retest-smtp goes back to it.
    retest = auto.run(
        "doctor",
        "--retest-smtp",
        env={"OUTLOOK_SMTP_PORT": str(auto.servers.submission_port), "OUTLOOK_SMTP_TLS": "starttls"},
    )
    assert "SMTP AUTH works again: sending goes back to SMTP" in retest.stdout, retest.stdout + retest.stderr
    assert not state.exists()


def test_auto_falls_back_on_550_5_7_30_at_mail_from(
    auto: Account, graph: GraphStandIn, ca: trustme.CA, scripted_peer: list[ScriptedSmtp]
) -> None:
    reply = "550 5.7.30 Basic authentication is not supported for Client Submission."
    peer = ScriptedSmtp(ca.issue_cert("localhost", "127.0.0.1"), mail=[reply])
    scripted_peer.append(peer)
    auto.env |= at(peer.port) | {"OUTLOOK_GRAPH_URL": graph.base_url}
    result = auto.run("send", "--to", auto.address, "--body", "x")
    assert result.returncode == 0, result.stderr
    assert peer.messages == [] and graph.counts() == {"sendMail": 1}


def test_smtp_setting_never_falls_back(
    auto: Account, graph: GraphStandIn, ca: trustme.CA, scripted_peer: list[ScriptedSmtp]
) -> None:
    peer = ScriptedSmtp(ca.issue_cert("localhost", "127.0.0.1"), auth=[CHALLENGE, AUTH_OFF])
    scripted_peer.append(peer)
    auto.env |= at(peer.port) | {"OUTLOOK_GRAPH_URL": graph.base_url, "OUTLOOK_SEND_VIA": "smtp"}
    result = auto.run("send", "--to", auto.address, "--body", "x")
    assert result.returncode == 69
    assert graph.counts() == {}


# ------------------------------------------------------------------------------ replies


def test_429_retry_after_is_honoured(via_graph: Account, graph: GraphStandIn) -> None:
    graph.fail_next(
        "sendMail", 429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", retry_after="1"
    )
    started = time.monotonic()
    send(via_graph, "--to", via_graph.address, "--body", "after a wait")
    assert time.monotonic() - started >= 1.0
    sends = [r for r in graph.requests if r.route == "sendMail"]
    assert [r.status for r in sends] == [429, 202]
    assert sends[1].at - sends[0].at >= 1.0
    assert len(delivered(via_graph)) == 1


def test_429_beyond_the_time_budget_is_75_and_nothing_sent(via_graph: Account, graph: GraphStandIn) -> None:
    graph.fail_next("sendMail", 429, "ApplicationThrottled", "Too many requests.", retry_after="120")
    result = via_graph.run("send", "--to", via_graph.address, "--body", "x", env={"MAILBOT_TIMEOUT": "3"})
    assert result.returncode == 75
    assert error_lines(result.stderr) == [
        f"error: Microsoft Graph {graph.base_url} refused to sendMail: HTTP 429 ApplicationThrottled: Too many "
        "requests.; asked to wait 120 s (Retry-After), beyond the time budget (MAILBOT_TIMEOUT=3 s); nothing was sent",
        "hint: Microsoft Graph is throttling (Exchange Online accepts 30 messages a minute); try again later",
    ]
    assert graph.counts() == {"sendMail": 1}


def test_401_once_refreshes_and_sends(account: Account, graph: GraphStandIn) -> None:
    account.env |= {"OUTLOOK_GRAPH_URL": graph.base_url, "OUTLOOK_SEND_VIA": "graph"}
    account.idp.poison_next_access_tokens(2)  # both tokens login caches (Outlook, Graph) are refused
    account.login()
    account.idp.reset_counts()
    send(account, "--to", account.address, "--body", "after a refresh")
    assert account.idp.counts().get("token:refresh_token", 0) == 1
    assert [r.status for r in graph.requests] == [401, 202]
    assert len(delivered(account)) == 1


def test_401_after_the_refresh_is_77(account: Account, graph: GraphStandIn) -> None:
    account.env |= {"OUTLOOK_GRAPH_URL": graph.base_url, "OUTLOOK_SEND_VIA": "graph"}
    account.idp.poison_next_access_tokens(3)
    account.login()
    account.idp.reset_counts()
    result = account.run("send", "--to", account.address, "--body", "never")
    assert result.returncode == 77
    assert error_lines(result.stderr) == [
        f"error: Microsoft Graph {graph.base_url} refused to sendMail: HTTP 401 InvalidAuthenticationToken: "
        "Access token validation failure. Invalid signature.",
        'hint: the token for Microsoft Graph was refused: run "python mailbot.py login" again',
    ]
    assert account.idp.counts().get("token:refresh_token", 0) == 1
    assert [r.status for r in graph.requests] == [401, 401]


def test_403_access_denied_is_69_with_the_consent_hint(via_graph: Account, graph: GraphStandIn) -> None:
    graph.fail_next("sendMail", 403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
    result = via_graph.run("send", "--to", via_graph.address, "--body", "x")
    assert result.returncode == 69
    assert error_lines(result.stderr) == [
        f"error: Microsoft Graph {graph.base_url} refused to sendMail: HTTP 403 ErrorAccessDenied: Access is denied. "
        "Check credentials and try again.",
        "hint: the app may not send mail through Microsoft Graph: add the delegated permissions Mail.Send and "
        "Mail.ReadWrite (Entra admin center > App registrations > API permissions > Microsoft Graph), grant "
        'consent, then run "python mailbot.py login"',
    ]


def test_send_as_denied_from_another_mailbox_is_69(via_graph: Account, graph: GraphStandIn) -> None:
    other = f"boss{os.getpid()}x{time.monotonic_ns()}@example.com"
    result = via_graph.run("send", "--from", other, "--to", via_graph.address, "--body", "x")
    assert result.returncode == 69, result.stderr
    error, hint = error_lines(result.stderr)
    assert error.startswith(
        f"error: Microsoft Graph {graph.base_url} refused to send as {other}: HTTP 403 ErrorSendAsDenied"
    )
    assert hint.startswith("hint: you are not allowed to send as this address")
    assert [r.path for r in graph.requests] == [f"/v1.0/users/{other}/sendMail"]


def test_shared_mailbox_with_send_as_uses_users_path(via_graph: Account, graph: GraphStandIn) -> None:
    shared = f"shared{os.getpid()}x{time.monotonic_ns()}@example.com"
    via_graph.servers.add_user(shared)
    graph.allow_send_as(via_graph.address, shared)
    send(via_graph, "--from", shared, "--to", via_graph.address, "--body", "from the shared mailbox")
    assert [r.path for r in graph.requests] == [f"/v1.0/users/{shared}/sendMail"]
    assert parse(delivered(via_graph)[0])["From"] == shared


def test_400_names_the_field_and_is_65(via_graph: Account, graph: GraphStandIn) -> None:
    graph.fail_next(
        "sendMail",
        400,
        "ErrorInvalidRecipients",
        "Property toRecipients in payload has a value that does not match schema.",
    )
    result = via_graph.run("send", "--to", via_graph.address, "--body", "x")
    assert result.returncode == 65
    assert error_lines(result.stderr) == [
        f"error: Microsoft Graph {graph.base_url} refused the message (field toRecipients): HTTP 400 "
        "ErrorInvalidRecipients: Property toRecipients in payload has a value that does not match schema.",
    ]


# ------------------------------------------------------------------------------ never twice


def test_dropped_after_graph_took_it_is_sent_once(via_graph: Account, graph: GraphStandIn) -> None:
    graph.drop_next("sendMail", processed=True)
    result = via_graph.run("send", "--to", via_graph.address, "--body", "once", env={"MAILBOT_TIMEOUT": "3"})
    assert result.returncode == 0, result.stderr
    assert (
        f"WARNING: Microsoft Graph {graph.base_url} did not answer to sendMail (Remote end closed connection without "
        "response), but the message is in Sent Items: sent"
    ) in result.stderr.splitlines()
    assert graph.counts() == {"sendMail": 1, "sentitems": 1}
    assert len(delivered(via_graph)) == 1
    time.sleep(0.5)
    assert len(via_graph.servers.messages(via_graph.address)) == 1


def test_dropped_before_graph_took_it_is_75_and_stays_queued(
    via_graph: Account, graph: GraphStandIn, tmp_path: Path
) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    assert via_graph.run("send", "--queue", str(queue), "--to", via_graph.address, "--body", "q").returncode == 0
    graph.drop_next("sendMail", processed=False)
    result = via_graph.run("outbox", str(queue), env={"MAILBOT_TIMEOUT": "2"})
    assert result.returncode == 75, result.stderr
    (error,) = error_lines(result.stderr)
    assert re.fullmatch(
        rf"error: Microsoft Graph {re.escape(graph.base_url)} did not answer to sendMail \(Remote end closed connection "
        r"without response\); Sent Items has no message <[^>]+>, so it was not sent",
        error,
    ), error
    assert len(list(queue.glob("*.eml"))) == 1  # still queued
    assert graph.counts()["sentitems"] >= 1
    # The next run sends it, once.
    again = via_graph.run("outbox", str(queue))
    assert again.returncode == 0, again.stderr
    assert list(queue.glob("*.eml")) == []
    assert len(delivered(via_graph)) == 1


def test_dropped_and_sent_items_unreachable_is_unknown_and_not_resent(
    via_graph: Account, graph: GraphStandIn, tmp_path: Path
) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    assert via_graph.run("send", "--queue", str(queue), "--to", via_graph.address, "--body", "q").returncode == 0
    graph.drop_next("sendMail", processed=True)
    graph.fail_next("sentitems", 503, "ServiceUnavailable", "down", count=20)
    result = via_graph.run("outbox", str(queue), env={"MAILBOT_TIMEOUT": "2"})
    assert result.returncode == 69, result.stderr
    assert list(queue.glob("*.eml")) == []
    (note,) = (queue / "failed").glob("*.error")
    assert "whether <" in note.read_text() and "was sent is unknown" in note.read_text()
    assert len(delivered(via_graph)) == 1


# ------------------------------------------------------------------------------ outbox


def test_outbox_of_50_over_graph_paced_each_delivered_once(
    via_graph: Account, graph: GraphStandIn, tmp_path: Path
) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    ids = set()
    for n in range(50):
        msg = EmailMessage()
        msg["From"] = via_graph.address
        msg["To"] = via_graph.address
        msg["Subject"] = f"queued {n}"
        msg["Message-ID"] = f"<q{n}.{time.monotonic_ns()}@example.com>"
        msg.set_content(f"message {n}\n")
        ids.add(msg["Message-ID"])
        (queue / f"{n:04d}.eml").write_bytes(msg.as_bytes(policy=email.policy.SMTP))
    rate = 1200  # a message every 50 ms
    result = via_graph.run("outbox", "--json", str(queue), env={"MAILBOT_SEND_RATE": str(rate)}, timeout=120)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in records] == ["sent"] * 50
    sends = [r for r in graph.requests if r.route == "sendMail"]
    assert len(sends) == 50 and all(r.status == 202 for r in sends)
    gaps = [b.at - a.at for a, b in itertools.pairwise(sends)]
    # The pacer spaces the starts of the sends; the first request also paid for the TLS handshake,
    # so its gap to the second is measured from a late start: judge the others and the whole span.
    assert min(gaps[1:]) >= 60 / rate - 0.01
    assert sends[-1].at - sends[0].at >= 48 * 60 / rate
    assert graph.max_in_flight == 1  # one request per mailbox at a time (Graph allows 4)
    assert graph.connections == 1  # one kept-alive HTTPS connection for the whole run
    arrived = delivered(via_graph, count=50)
    assert sorted(str(parse(raw)["Message-ID"]) for raw in arrived) == sorted(ids)


def test_504_is_looked_up_before_the_retry_and_sent_once(via_graph: Account, graph: GraphStandIn) -> None:
    graph.fail_next("sendMail", 504, "GatewayTimeout", "The gateway did not receive a response.", retry_after="0")
    send(via_graph, "--to", via_graph.address, "--body", "504", env={"MAILBOT_TIMEOUT": "2"})
    routes = [(r.route, r.status) for r in graph.requests]
    assert routes[0] == ("sendMail", 504) and routes[-1] == ("sendMail", 202)
    assert {route for route, _ in routes[1:-1]} == {"sentitems"}  # absent, confirmed before resending
    assert len(delivered(via_graph)) == 1


def test_outbox_in_auto_mode_falls_back_for_the_whole_queue(
    auto: Account, graph: GraphStandIn, ca: trustme.CA, scripted_peer: list[ScriptedSmtp], tmp_path: Path
) -> None:
    peer = ScriptedSmtp(ca.issue_cert("localhost", "127.0.0.1"), auth=[CHALLENGE, AUTH_OFF])
    scripted_peer.append(peer)
    auto.env |= at(peer.port)
    queue = tmp_path / "queue"
    queue.mkdir()
    for n in range(3):
        assert auto.run("send", "--queue", str(queue), "--to", auto.address, "--body", f"q{n}").returncode == 0
    result = auto.run("outbox", str(queue))
    assert result.returncode == 0, result.stderr
    assert len([line for line in peer.lines if line.startswith("AUTH")]) == 1  # SMTP tried once
    assert graph.counts() == {"sendMail": 3}
    assert len(list((queue / "sent").glob("*.eml"))) == 3
    assert len(delivered(auto, count=3)) == 3


def test_doctor_in_graph_mode_checks_the_graph_token(via_graph: Account, graph: GraphStandIn) -> None:
    result = via_graph.run("doctor")
    lines = result.stdout.splitlines()
    assert (
        "SKIP SMTP STARTTLS/TLS, certificate and AUTH XOAUTH2: OUTLOOK_SEND_VIA=graph: SMTP is not used for sending"
        in lines
    )
    assert "OK   send transport: graph: OUTLOOK_SEND_VIA=graph" in lines
    assert (
        f"OK   Microsoft Graph token (Mail.Send, Mail.ReadWrite) for {graph.base_url}: a Graph access token was issued"
        in lines
    )
    assert graph.counts() == {}  # doctor sends nothing


def test_no_token_or_upload_credential_in_verbose_output(
    via_graph: Account, graph: GraphStandIn, tmp_path: Path
) -> None:
    (tmp_path / "big.bin").write_bytes(random.Random(5).randbytes(4 * 1024 * 1024))
    hidden = f"vv{os.getpid()}x{time.monotonic_ns()}@example.com"
    via_graph.servers.add_user(hidden)
    result = via_graph.run("-vv", "send", "--to", via_graph.address, "--bcc", hidden,
                           "--body", "x", "--attach", str(tmp_path / "big.bin"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "graph: draft + 1 Bcc + 1 uploaded attachment(s)" in result.stderr
    tokens = [t.token for t in via_graph.idp.access_tokens] + [t.token for t in via_graph.idp.refresh_tokens]
    for token in tokens:
        assert token not in result.stderr and token[-20:] not in result.stderr
    for key in graph.uploads:
        assert key not in result.stderr
