"""``python mailbot.py send`` against the real test bed: Postfix submission (587-style STARTTLS
and 465-style implicit TLS) with XOAUTH2 through Dovecot, delivery into Maildirs.

Every assertion is on something observable from outside the process: what arrived in a
Maildir (parsed back with the email package), exit codes, ``error:``/``hint:`` lines,
stdout bytes, Postfix's log, the identity stand-in's request counts, or connections to a
socket the test owns. Nothing in mailbot is mocked.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import random
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.conftest import MAILBOT, Account

# ---------------------------------------------------------------------------------- helpers


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "hint:"))]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def header_section(raw: bytes) -> bytes:
    end = raw.find(b"\n\n")
    crlf_end = raw.find(b"\r\n\r\n")
    ends = [e for e in (end, crlf_end) if e >= 0]
    return raw[: min(ends)] if ends else raw


def delivered(account: Account, address: str | None = None, count: int = 1) -> list[bytes]:
    """Wait until ``address`` (default: the account) holds ``count`` messages; their bytes."""
    servers = account.servers
    address = address or account.address
    paths = servers.wait_for(
        lambda: (found := servers.messages(address)) and len(found) >= count and found,
        what=f"{count} message(s) for {address}",
    )
    return [p.read_bytes() for p in paths]


def postfix_log(account: Account) -> str:
    return (account.servers.dir / "logs" / "postfix.log").read_text("utf-8", "replace")


def submissions_by(account: Account) -> list[str]:
    """Postfix log lines of messages accepted from this account's SASL login (one per message)."""
    accepted = re.compile(rf"\]: [0-9A-F]+: client=.*, sasl_username={re.escape(account.address)}$")
    return [line for line in postfix_log(account).splitlines() if accepted.search(line)]


def send_ok(account: Account, *args: str, **kwargs) -> str:
    result = account.run("send", *args, **kwargs)
    assert result.returncode == 0, result.stderr
    message_id = result.stdout.strip()
    assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", message_id), result.stdout
    return message_id


def assert_nothing_sent(account: Account) -> None:
    """Prove the refused send left nothing behind: send a marker message, wait for it, and check
    that it is the only message in the mailbox and the only submission Postfix logged for this
    login (Postfix logs a submission before it answers MAIL FROM, so an earlier one would be
    in the log before the marker's)."""
    marker = send_ok(account, "--to", account.address, "--subject", "marker", "--body", "marker")
    raws = delivered(account)
    assert [parse(raw)["Message-ID"] for raw in raws] == [marker]
    assert len(submissions_by(account)) == 1, submissions_by(account)


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class Listener:
    """A loopback socket that listens but never answers; counts the connections it received."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        self.sock.setblocking(False)
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.sock.close()


def at(port: int, tls: str = "starttls") -> dict[str, str]:
    return {"OUTLOOK_SMTP_PORT": str(port), "OUTLOOK_SMTP_TLS": tls}


# ---------------------------------------------------------------------------------- delivery


def test_unicode_headers_body_and_binary_attachments_arrive_intact(signed_in: Account, tmp_path: Path) -> None:
    account = signed_in
    rng = random.Random(20261127)
    binary = bytes(range(256)) * 4 + b"\r\n.\r\n\n.\nFrom x\r\r\n\x00" + rng.randbytes(1_500_000)
    text_bytes = "Zeile 1\r\n.\r\nFrom me\n\rGrüße\x00 ünd ☃\n".encode() + b"\xff\xfe latin-1: \xe9\n"
    bin_path = tmp_path / "daten.bin"
    bin_path.write_bytes(binary)
    text_path = tmp_path / "Größe-報告 (v2).txt"
    text_path.write_bytes(text_bytes)
    subject = "Grüße aus Köln — 月次レポート 📎 " + "ünïcödé " * 12  # long: must fold
    body = (
        "Hallo Zoë,\n\nanbei die Dateien. Ümlaute, 日本語, emoji 🚀.\n"
        ".\n"  # a lone dot: SMTP's end-of-data marker unless dot-stuffed
        "From the start of a line\n"
        + "x" * 1200  # longer than SMTP's 998-octet line limit
        + "\nLetzte Zeile\n"
    )
    sender = f'"Müller, Jürgen" <{account.address}>'
    to = f"Zoë Ångström <{account.address}>"

    message_id = send_ok(
        account,
        "--from", sender,
        "--to", to,
        "--reply-to", "Ærøskøbing Büro <office@example.org>",
        "--subject", subject,
        "--body", body,
        "--attach", str(bin_path),
        "--attach", str(text_path),
    )  # fmt: skip

    (raw,) = delivered(account)
    assert header_section(raw).isascii()  # encoded words / RFC 2231, never raw UTF-8 in headers
    msg = parse(raw)
    assert msg["Message-ID"] == message_id
    assert email.utils.parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert msg["Subject"] == subject
    (from_,) = msg["From"].addresses
    assert (from_.display_name, from_.addr_spec) == ("Müller, Jürgen", account.address)
    (to_,) = msg["To"].addresses
    assert (to_.display_name, to_.addr_spec) == ("Zoë Ångström", account.address)
    (reply_to,) = msg["Reply-To"].addresses
    assert (reply_to.display_name, reply_to.addr_spec) == ("Ærøskøbing Büro", "office@example.org")
    assert msg.get_body(("plain",)).get_content() == body
    attachments = {part.get_filename(): part for part in msg.iter_attachments()}
    assert set(attachments) == {"daten.bin", "Größe-報告 (v2).txt"}
    assert attachments["daten.bin"].get_content_type() == "application/octet-stream"
    assert attachments["daten.bin"].get_payload(decode=True) == binary
    assert attachments["Größe-報告 (v2).txt"].get_content_type() == "text/plain"
    assert attachments["Größe-報告 (v2).txt"].get_payload(decode=True) == text_bytes


@pytest.mark.parametrize("with_text", [True, False], ids=["html+text", "html-only"])
def test_html_goes_out_with_a_text_alternative(signed_in: Account, tmp_path: Path, with_text: bool) -> None:
    html = (
        "<!doctype html><html><head><style>p {color: red}</style><title>T</title></head><body>"
        "<h1>Bericht</h1><p>Grüße, <b>alles</b> gut.</p>"
        '<p>Details: <a href="https://example.org/r/42">hier</a></p></body></html>\n'
    )
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    args = ["--to", signed_in.address, "--subject", "html", "--html-file", str(page)]
    if with_text:
        args += ["--body", "Der Text-Teil.\n"]
    send_ok(signed_in, *args)

    (raw,) = delivered(signed_in)
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]  # best last
    assert parts[1].get_content() == html
    plain = parts[0].get_content()
    if with_text:
        assert plain == "Der Text-Teil.\n"
    else:
        assert "Bericht" in plain and "Grüße, alles gut." in plain and "https://example.org/r/42" in plain
        assert "<" not in plain and "color" not in plain


def test_body_piped_from_a_command_like_df(signed_in: Account) -> None:
    """The README's ``df -h | python mailbot.py send --to ... --subject "disk report"``, through a
    real shell pipe; ``tee`` keeps a copy of exactly what went in."""
    expected = signed_in.home / "piped.txt"
    command = 'df -h | tee "$OUT" | "$PYTHON" "$MAILBOT" send --to "$TO" --subject "disk report"'
    variables = {
        "OUT": str(expected),
        "PYTHON": sys.executable,
        "MAILBOT": str(MAILBOT),
        "TO": signed_in.address,
    }
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=signed_in.home,
        env=signed_in.env | variables,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    (raw,) = delivered(signed_in)
    msg = parse(raw)
    assert msg["Subject"] == "disk report"
    assert msg["Message-ID"] == proc.stdout.decode().strip()
    body = expected.read_text()
    assert len(body.splitlines()) >= 2  # df's header and at least one file system
    assert msg.get_body(("plain",)).get_content() == body


def test_body_from_stdin_and_from_a_file(signed_in: Account, tmp_path: Path) -> None:
    stdin_body = "über stdin\n\tmit Tab\n"
    send_ok(signed_in, "--to", signed_in.address, "--subject", "stdin", input=stdin_body.encode())
    file_body = "aus der Datei — ☃\n"
    body_file = tmp_path / "body.txt"
    body_file.write_text(file_body, encoding="utf-8")
    send_ok(signed_in, "--to", signed_in.address, "--subject", "file", "--body-file", str(body_file))
    bodies = {}
    for raw in delivered(signed_in, count=2):
        msg = parse(raw)
        bodies[msg["Subject"]] = msg.get_body(("plain",)).get_content()
    assert bodies == {"stdin": stdin_body, "file": file_body}


def test_to_cc_bcc_local_and_external_each_get_one_copy_without_bcc(signed_in: Account) -> None:
    account, servers = signed_in, signed_in.servers
    local = account.address.split("@")[0]
    cc_local, bcc_local = f"{local}.cc@example.com", f"{local}.bcc@example.com"
    for address in (cc_local, bcc_local):
        servers.add_user(address)
    to_ext, cc_ext, bcc_ext = (f"{local}.{kind}@partner.example.org" for kind in ("to", "cc", "bcc"))
    bcc_ext2 = f"{local}.bcc2@other.example.net"

    send_ok(
        account,
        "--to", f"Ich <{account.address}>, {to_ext}",  # a comma-separated list
        "--cc", cc_local,
        "--cc", f'"Partner, Extern" <{cc_ext}>',
        "--bcc", bcc_local,
        "--bcc", f"{bcc_ext}; {bcc_ext2}",
        "--subject", "verteiler",
        "--body", "one copy each",
    )  # fmt: skip

    copies: dict[str, list[bytes]] = {}
    for address in (account.address, cc_local, bcc_local):
        copies[address] = delivered(account, address)
    externals = (to_ext, cc_ext, bcc_ext, bcc_ext2)

    def external_copies() -> dict[str, list[bytes]]:
        found: dict[str, list[bytes]] = {a: [] for a in externals}
        for mail in servers.external_mail():
            if mail.recipient in found:
                found[mail.recipient].append(mail.path.read_bytes())
        return found

    copies |= servers.wait_for(lambda: (f := external_copies()) and all(f.values()) and f, what="external copies")
    assert {address: len(raws) for address, raws in copies.items()} == dict.fromkeys(copies, 1)
    blind = (bcc_local, bcc_ext, bcc_ext2)
    for address, (raw,) in copies.items():
        msg = parse(raw)
        assert msg["Bcc"] is None and b"\nbcc:" not in header_section(raw).lower()
        assert [a.addr_spec for a in msg["To"].addresses] == [account.address, to_ext]
        assert [a.addr_spec for a in msg["Cc"].addresses] == [cc_local, cc_ext]
        for hidden in blind:
            if hidden != address:  # a Bcc recipient's own copy names it in Delivered-To
                assert hidden.encode() not in raw, f"{hidden} leaked into {address}'s copy"


def test_bcc_is_in_the_envelope_only(signed_in: Account, scripted) -> None:
    """What goes over the wire, seen by an SMTP peer that keeps it (Postfix removes Bcc headers
    itself, so the copies delivered above could never show a client's mistake)."""
    peer = scripted()
    send_ok(
        signed_in,
        "--to", "to@example.net", "--cc", "cc@example.net",
        "--bcc", "Geheim <hidden@example.net>, TO@example.net", "--bcc", "hidden2@example.org",
        "--body", "x",
        env=at(peer.port),
    )  # fmt: skip
    rcpts = [line for line in peer.lines if line.upper().startswith("RCPT TO:")]
    assert [r.split(":", 1)[1].strip() for r in rcpts] == [
        "<to@example.net>", "<cc@example.net>", "<hidden@example.net>", "<hidden2@example.org>",
    ]  # fmt: skip
    (data,) = peer.messages
    assert b"\nbcc:" not in header_section(data).lower()
    assert b"hidden" not in data.lower() and b"Geheim" not in data


def test_send_as_another_address_refused_by_the_server_is_69_with_hint(signed_in: Account) -> None:
    other = "colleague-" + signed_in.address
    signed_in.servers.add_user(other)
    result = signed_in.run("send", "--from", other, "--to", signed_in.address, "--subject", "s", "--body", "b")
    assert result.returncode == 69, result.stderr
    error, hint = error_lines(result.stderr)
    assert error.startswith("error: ") and other in error and "553" in error
    assert hint.startswith("hint: ") and "Send As" in hint
    assert f"<{other}>: Sender address rejected" in postfix_log(signed_in)  # Postfix refused it
    assert result.stdout == ""


def test_send_as_an_allowed_shared_mailbox(signed_in: Account) -> None:
    shared = "shared-" + signed_in.address
    signed_in.servers.allow_send_as(signed_in.address, shared)
    send_ok(signed_in, "--from", f"Team Postfach <{shared}>", "--to", signed_in.address, "--body", "x")
    (raw,) = delivered(signed_in)
    (sender,) = parse(raw)["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Team Postfach", shared)
    assert f"from=<{shared}>" in postfix_log(signed_in)  # the envelope sender too


def test_dry_run_prints_the_message_and_connects_to_nothing(signed_in: Account, listener: Listener) -> None:
    result = signed_in.run(
        "send", "--dry-run", "--to", f"Zoë <{signed_in.address}>",
        "--subject", "Prüfung", "--body", "nur drucken",
        env=at(listener.port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert listener.connections() == 0
    assert signed_in.idp.counts().get("total", 0) == 0  # no token needed, none fetched
    raw = result.stdout_bytes
    assert header_section(raw).isascii()
    msg = parse(raw.replace(b"\r\n", b"\n"))  # printed as it would be sent: CRLF line ends
    assert msg["Subject"] == "Prüfung"
    assert msg["From"].addresses[0].addr_spec == signed_in.address  # default: OUTLOOK_USERNAME
    assert msg["To"].addresses[0].display_name == "Zoë"
    assert msg["Date"] and msg["Message-ID"]
    assert msg.get_body(("plain",)).get_content() == "nur drucken\n"


# ---------------------------------------------------------------------------------- TLS, sign-in


def test_implicit_tls_port_465_style(signed_in: Account) -> None:
    port = signed_in.servers.smtps_port
    assert port != 465  # the test bed's port is random: OUTLOOK_SMTP_TLS says what it is
    message_id = send_ok(signed_in, "--to", signed_in.address, "--body", "over smtps", env=at(port, "implicit"))
    (raw,) = delivered(signed_in)
    assert parse(raw)["Message-ID"] == message_id
    (line,) = submissions_by(signed_in)
    assert "/smtps/smtpd[" in line


def test_untrusted_certificate_is_refused_before_auth(signed_in: Account) -> None:
    servers = signed_in.servers
    log_start = len(postfix_log(signed_in))
    result = signed_in.run("send", "--to", signed_in.address, "--body", "x", env=at(servers.untrusted_submission_port))
    assert result.returncode == 69, result.stderr
    error, hint = error_lines(result.stderr)
    assert "certificate" in error and str(servers.untrusted_submission_port) in error
    assert "MAILBOT_CA_BUNDLE" in hint

    def session_summary() -> str | None:
        lines = postfix_log(signed_in)[log_start:].splitlines()
        return next((ln for ln in lines if "/untrusted/smtpd[" in ln and "disconnect from" in ln), None)

    summary = servers.wait_for(session_summary, what="the untrusted listener's session summary")
    assert "starttls=0/1" in summary and "auth=" not in summary  # TLS failed, no AUTH was sent
    assert submissions_by(signed_in) == []


def test_rejected_token_is_refreshed_once_and_the_send_succeeds(account: Account) -> None:
    account.idp.poison_next_access_tokens(1)  # the token login caches is signed with a wrong key
    account.login()
    account.idp.reset_counts()
    message_id = send_ok(account, "--to", account.address, "--body", "after a refresh")
    assert account.idp.counts().get("token:refresh_token", 0) == 1
    (raw,) = delivered(account)
    assert parse(raw)["Message-ID"] == message_id


def test_token_rejected_again_after_refresh_is_77(account: Account) -> None:
    account.idp.poison_next_access_tokens(2)
    account.login()
    account.idp.reset_counts()
    result = account.run("send", "--to", account.address, "--body", "never")
    assert result.returncode == 77, result.stderr
    error, hint = error_lines(result.stderr)
    assert "535" in error and account.address in error
    assert "login" in hint
    assert account.idp.counts().get("token:refresh_token", 0) == 1  # one retry, not a loop
    assert submissions_by(account) == []


# ---------------------------------------------------------------------------------- bad input


def _make_bad_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "big.bin").write_bytes(random.Random(1).randbytes(200_000))
    (tmp_path / "line\nbreak.txt").write_text("x")
    return {name: str(tmp_path / name) for name in ("a-dir", "big.bin", "line\nbreak.txt", "missing.bin")}


BAD_INPUT = {
    # id: (args with {me} and file placeholders, extra env, exit code, text the error line must hold)
    "CRLF-in-subject": (["--subject", "Hi\r\nBcc: victim@example.net"], {}, 65, "--subject"),
    "LF-in-subject": (["--subject", "Hi\nX-Evil: 1"], {}, 65, "line break"),
    "LF-in-to-display-name": (["--to", '"Eve\nBcc: victim@example.net" <{me}>'], {}, 65, "--to"),
    "CR-in-from-display-name": (["--from", "Boss\r <{me}>"], {}, 65, "--from"),
    "LF-in-attachment-name": (["--attach", "{line\nbreak.txt}"], {}, 65, "line break"),
    "invalid-address": (["--cc", "ok@example.com, bob(at)example.com"], {}, 65, "bob(at)example.com"),
    "address-without-domain": (["--bcc", "nobody@"], {}, 65, "nobody@"),
    "no-recipients": (["--to", None], {}, 64, "recipients"),
    "missing-attachment": (["--attach", "{missing.bin}"], {}, 66, "missing.bin"),
    "attachment-is-a-directory": (["--attach", "{a-dir}"], {}, 66, "a-dir"),
    "missing-body-file": (["--body", None, "--body-file", "{missing.bin}"], {}, 66, "missing.bin"),
    "over-size-limit": (["--attach", "{big.bin}"], {"MAILBOT_MAX_MESSAGE_MB": "0.1"}, 65, "0.1 MB"),
}


@pytest.mark.parametrize(("args", "env", "code", "needle"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_refused_and_nothing_is_sent(
    signed_in: Account, tmp_path: Path, args: list, env: dict, code: int, needle: str
) -> None:
    files = _make_bad_files(tmp_path)
    base = {"--to": signed_in.address, "--subject": "bad input", "--body": "should never arrive"}
    options = dict(zip(args[::2], args[1::2], strict=True))
    argv: list[str] = []
    for option, value in (base | options).items():
        if value is not None:
            for name, path in files.items():
                value = value.replace("{" + name + "}", path)
            argv += [option, value.replace("{me}", signed_in.address)]
    result = signed_in.run("send", *argv, env=env)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""
    error = error_lines(result.stderr)[0]
    assert error.startswith("error: ") and needle in error, error
    assert_nothing_sent(signed_in)


# ---------------------------------------------------------------------------------- refusals


def test_some_recipients_refused_names_them_and_who_got_it(signed_in: Account) -> None:
    """Postfix takes at most 1000 RCPTs per message (smtpd_recipient_limit) and answers 452 to
    the rest: the only per-recipient refusal the test bed gives at RCPT time (an unknown
    example.com user is accepted and bounced later by LMTP)."""
    local = signed_in.address.split("@")[0]
    accepted = [f"{local}+{i}@example.com" for i in range(1000)]
    refused = f"{local}+refused@example.com"
    result = signed_in.run("send", "--to", ",".join(accepted), "--cc", refused, "--body", "x")
    assert result.returncode == 75, result.stderr[:500]  # 452 is temporary: worth another try
    (error,) = error_lines(result.stderr)
    refused_part, sent_part = error.split("; the message was sent to ")
    assert f"refused {refused} (452 4.5.3" in refused_part
    assert sent_part.split(", ") == accepted
    raws = delivered(signed_in, count=1000)
    assert len(raws) == 1000
    delivered_to = {parse(raw)["Delivered-To"] for raw in raws}
    assert delivered_to == set(accepted)


@pytest.mark.parametrize("kind", ["connection-refused", "timeout", "421-greeting"])
def test_unreachable_or_busy_server_is_75(
    signed_in: Account, kind: str, refusing_port: int, listener: Listener, scripted
) -> None:
    port = {
        "connection-refused": lambda: refusing_port,
        "timeout": lambda: listener.port,
        "421-greeting": lambda: scripted(greeting=["421 4.3.2 Service not available"]).port,
    }[kind]()
    result = signed_in.run("send", "--to", signed_in.address, "--body", "x", env=at(port) | {"MAILBOT_TIMEOUT": "1"})
    assert result.returncode == 75, result.stderr
    (error,) = [line for line in error_lines(result.stderr) if line.startswith("error:")]
    assert f"port {port}" in error
    assert {"timeout": "1 s", "421-greeting": "421"}.get(kind, "refused") in error


CHALLENGE = "334 eyJzdGF0dXMiOiI1MzUifQ=="  # XOAUTH2's base64 JSON error, sent before the 535
MICROSOFT_REPLIES = {
    # id: (scripted replies, exit code, texts the error/hint lines hold, token refreshes, DATA sent)
    "535-5.7.139-smtp-auth-off": (
        {"auth": [CHALLENGE, "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication disabled"]},
        69, ["5.7.139", "Set-CASMailbox"], 0, 0,
    ),
    "535-then-ok-after-refresh": (
        {"auth": [CHALLENGE, "535 5.7.3 Authentication unsuccessful"]}, 0, [], 1, 1,
    ),
    "454-auth": ({"auth": ["454 4.7.0 Temporary authentication failure"]}, 75, ["454"], 0, 0),
    "550-5.7.60-send-as": (
        {"mail": ["550 5.7.60 SMTP; Client does not have permissions to send as this sender"]},
        69, ["5.7.60", "Send As"], 0, 0,
    ),
    "451-mail": ({"mail": ["451 4.7.500 Server busy. Please try again later."]}, 75, ["451"], 0, 0),
    "rcpt-partial-550": (
        {"rcpt": ["550 5.1.10 RESOLVER.ADR.RecipientNotFound", "250 2.1.5 OK"]},
        69, ["refused first@example.net (550 5.1.10", "sent to second@example.net"], 0, 1,
    ),
    "rcpt-all-452": ({"rcpt": ["452 4.5.3 Too many recipients"] * 2}, 75, ["452"], 0, 0),
    "554-data": ({"data": ["554 5.2.0 STOREDRV.Submission.Exception:QuotaExceeded"]}, 69, ["554"], 0, 1),
    "451-data": ({"data": ["451 4.4.0 Message failed to be made redundant"]}, 75, ["451"], 0, 1),
}  # fmt: skip


@pytest.mark.parametrize(
    ("replies", "code", "needles", "refreshes", "data_sent"),
    MICROSOFT_REPLIES.values(),
    ids=MICROSOFT_REPLIES.keys(),
)
def test_microsoft_style_replies(
    signed_in: Account, scripted, replies: dict, code: int, needles: list[str], refreshes: int, data_sent: int
) -> None:
    """Replies only Exchange Online gives, from a scripted SMTP peer (real TLS, real smtplib)."""
    peer = scripted(**replies)
    result = signed_in.run("send", "--to", "first@example.net, second@example.net", "--body", "x", env=at(peer.port))
    assert result.returncode == code, result.stderr
    text = "\n".join(error_lines(result.stderr))
    for needle in needles:
        assert needle in text
    assert signed_in.idp.counts().get("token:refresh_token", 0) == refreshes
    auths = [line for line in peer.lines if line.upper().startswith("AUTH XOAUTH2")]
    assert len(auths) == 1 + refreshes
    if replies.get("auth", [""])[0].startswith("334"):
        # The XOAUTH2 error challenge is answered with an empty response, as RFC 7628 says.
        assert peer.lines[peer.lines.index(auths[0]) + 1] == ""
    assert len(peer.messages) == data_sent  # refused before DATA: nothing half-sent
