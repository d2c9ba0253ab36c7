"""Unit tests for mail/compose.py: addresses, header values, building outgoing mail, envelopes."""

from __future__ import annotations

import email.policy
import os
import random
import re
from datetime import datetime, timedelta, timezone
from email.parser import BytesParser

import pytest

from mailbotcore import errors
from mailbotcore.mail import compose, readable

UTC = timezone.utc
PARSER = BytesParser(policy=email.policy.default)


# ---------------------------------------------------------------------------
# Addresses and header values
# ---------------------------------------------------------------------------


def test_parse_addresses_forms():
    values = [
        "a@example.com",
        "Bob Smith <bob@example.org>",
        '"Doe, John" <j@x.org>, c@example.net; d@example.net',
        '"Quote \\" inside" <q@x.org>',
        "<bare@x.org>",
        "Jürgen <j@bücher.example>",
        "user@localhost",
    ]
    assert compose.parse_addresses(values, "--to") == [
        ("", "a@example.com"),
        ("Bob Smith", "bob@example.org"),
        ("Doe, John", "j@x.org"),
        ("", "c@example.net"),
        ("", "d@example.net"),
        ('Quote " inside', "q@x.org"),
        ("", "bare@x.org"),
        ("Jürgen", "j@xn--bcher-kva.example"),
        ("", "user@localhost"),
    ]
    assert compose.parse_addresses(["a@x.org, "], "--to") == [("", "a@x.org")]
    assert compose.parse_addresses([], "--cc") == []


@pytest.mark.parametrize(
    "bad",
    [
        "user@",
        "@x.org",
        "a b@c.d",
        "a@@b.c",
        "a@b@c.d",
        "a@b..c",
        "a@-b.c",
        "a@b.c.",
        ".a@b.c",
        "a..b@c.d",
        "nobody",
        "Name <>",
        "Name <a@b.c",
        "ü@x.org",
        '"unterminated <a@b.c>',
        "",
        " , ",
    ],
)
def test_parse_addresses_rejects(bad):
    with pytest.raises(errors.BadInputError) as info:
        compose.parse_addresses([bad], "--to")
    assert "--to" in info.value.message
    if bad.strip(" ,"):
        assert bad in info.value.message or repr(bad)[1:-1] in info.value.message


@pytest.mark.parametrize("value", ["a@x.org\r\nBcc: evil@x.org", "a@x.org\nX: y", "Evil\r <a@x.org>"])
def test_parse_addresses_refuses_line_breaks(value):
    with pytest.raises(errors.BadInputError, match="line break"):
        compose.parse_addresses([value], "--cc")


def test_check_header_value():
    assert compose.check_header_value("Grüße\tok", "--subject") == "Grüße\tok"
    for bad in ("a\rb", "a\nb", "a\r\nBcc: x@y.z"):
        with pytest.raises(errors.BadInputError, match=r"--subject.*line break"):
            compose.check_header_value(bad, "--subject")
    for bad in ("a\u2028b", "a\x00b", "a\x1bb", "a\x85b"):
        with pytest.raises(errors.BadInputError, match="control character"):
            compose.check_header_value(bad, "--subject")


# ---------------------------------------------------------------------------
# build_message
# ---------------------------------------------------------------------------

SENDER = ("Älice Ünicode", "alice@example.com")


def _build(**overrides):
    kwargs = dict(
        sender=SENDER,
        to=[("Bob", "bob@example.org")],
        cc=[],
        bcc=[],
        subject="Hello",
        text="Body",
        html=None,
        attachments=[],
    )
    kwargs.update(overrides)
    return compose.build_message(**kwargs)


def _wire(msg) -> bytes:
    return msg.as_bytes(policy=email.policy.SMTP)


def _text(part) -> str:
    # Parsed 7bit/QP text keeps the wire's CRLF; compare with plain newlines.
    return part.get_content().replace("\r\n", "\n")


def test_build_message_headers_and_envelope():
    when = datetime(2026, 11, 27, 10, 1, 2, tzinfo=UTC)
    msg, envelope = _build(
        to=[("Bob", "bob@example.org"), ("", "Carol@Example.net")],
        cc=["Carol <carol@example.net>", "dave@example.net"],
        bcc=[("", "secret@example.net"), ("", "BOB@example.org")],
        subject="Grüße, 日本",
        reply_to=[("Replies", "replies@example.com")],
        date=when,
    )
    assert envelope == ["bob@example.org", "Carol@Example.net", "dave@example.net", "secret@example.net"]
    wire = _wire(msg)
    assert b"secret@example.net" not in wire
    assert b"\r\nBcc:" not in wire and not wire.startswith(b"Bcc:")
    assert wire.isascii()
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    assert b"=?utf-8?" in wire  # non-ASCII subject and names are RFC 2047 encoded
    back = PARSER.parsebytes(wire)
    assert back["Subject"] == "Grüße, 日本"
    assert back["From"].addresses[0].display_name == "Älice Ünicode"
    assert back["From"].addresses[0].addr_spec == "alice@example.com"
    assert [a.addr_spec for a in back["To"].addresses] == ["bob@example.org", "Carol@Example.net"]
    assert [a.addr_spec for a in back["Cc"].addresses] == ["carol@example.net", "dave@example.net"]
    assert back["Reply-To"].addresses[0].addr_spec == "replies@example.com"
    assert back["Date"].datetime == when
    assert back["Message-ID"].startswith("<") and back["Message-ID"].endswith("@example.com>")
    assert back["Bcc"] is None


def test_build_message_defaults():
    before = datetime.now(UTC)
    msg, envelope = _build(sender="alice@example.com", to=["bob@example.org"], text=None)
    back = PARSER.parsebytes(_wire(msg))
    assert envelope == ["bob@example.org"]
    assert before - timedelta(seconds=5) <= back["Date"].datetime <= datetime.now(UTC) + timedelta(seconds=5)
    assert back["Message-ID"].endswith("@example.com>")
    assert back.get_content_type() == "text/plain"
    assert back.get_content() in ("\n", "\r\n")
    msg, _ = _build(message_id_domain="mail.example.net")
    assert msg["Message-ID"].endswith("@mail.example.net>")


def test_build_message_display_name_with_comma():
    msg, _ = _build(to=[("Doe, John", "j@x.org")])
    assert b'To: "Doe, John" <j@x.org>' in _wire(msg)


def test_build_message_bodies():
    msg, _ = _build(text="plain é " + "x" * 200, html="<p>rich</p>")
    back = PARSER.parsebytes(_wire(msg))
    assert back.get_content_type() == "multipart/alternative"
    parts = list(back.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert _text(parts[0]) == "plain é " + "x" * 200 + "\n"
    assert parts[0]["Content-Transfer-Encoding"] != "8bit"
    assert _text(parts[1]) == "<p>rich</p>\n"

    msg, _ = _build(text=None, html="<h1>Title</h1><p>Para <a href='https://x.org'>x</a></p>")
    parts = list(PARSER.parsebytes(_wire(msg)).iter_parts())
    assert _text(parts[0]) == "Title\n\nPara x (https://x.org)\n"
    assert parts[1].get_content_type() == "text/html"

    msg, _ = _build(text="日本語のテキスト" * 50)
    back = PARSER.parsebytes(_wire(msg))
    assert back["Content-Transfer-Encoding"] == "base64"
    assert _text(back) == "日本語のテキスト" * 50 + "\n"


def test_build_message_binary_attachment_round_trip(tmp_path):
    data = random.Random(1234).randbytes(1024 * 1024)
    path = tmp_path / "Données été €.bin"
    path.write_bytes(data)
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n")
    tgz = tmp_path / "logs.tar.gz"
    tgz.write_bytes(b"\x1f\x8b\x08\x00")
    msg, _ = _build(text="see attached", html="<p>see attached</p>", attachments=[path, pdf, tgz])
    wire = _wire(msg)
    assert wire.isascii()
    assert b"filename*=utf-8''Donn%C3%A9es%20%C3%A9t%C3%A9%20%E2%82%AC.bin" in wire
    back = PARSER.parsebytes(wire)
    assert back.get_content_type() == "multipart/mixed"
    body, *attachments = back.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [a.get_filename() for a in attachments] == ["Données été €.bin", "report.pdf", "logs.tar.gz"]
    assert [a.get_content_type() for a in attachments] == [
        "application/octet-stream",
        "application/pdf",
        "application/gzip",
    ]
    assert all(a["Content-Transfer-Encoding"] == "base64" for a in attachments)
    assert attachments[0].get_content() == data
    assert attachments[1].get_content() == b"%PDF-1.4\n"
    # And our own reader sees the same thing.
    parsed = readable.parse_for_reading(wire)
    assert parsed.body == "see attached"
    assert [(a.filename, a.size) for a in parsed.attachments] == [
        ("Données été €.bin", len(data)),
        ("report.pdf", 9),
        ("logs.tar.gz", 4),
    ]
    assert parsed.attachments[0].payload == data


def test_build_message_missing_attachment(tmp_path):
    missing = tmp_path / "nope.pdf"
    with pytest.raises(errors.InputFileError, match=re.escape("nope.pdf")):
        _build(attachments=[missing])
    with pytest.raises(errors.InputFileError, match=re.escape(str(tmp_path))):
        _build(attachments=[tmp_path])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read anything")
def test_build_message_unreadable_attachment(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"x")
    secret.chmod(0)
    with pytest.raises(errors.InputFileError, match=re.escape("secret.txt")):
        _build(attachments=[secret])


def test_build_message_refuses_bad_input(tmp_path):
    with pytest.raises(errors.BadInputError, match="line break"):
        _build(subject="Hi\r\nBcc: evil@x.org")
    with pytest.raises(errors.BadInputError, match="line break"):
        _build(to=[("Evil\nBcc: x@y.z", "a@b.c")])
    with pytest.raises(errors.BadInputError, match="not a valid address"):
        _build(to=[("", "not-an-address")])
    with pytest.raises(errors.UsageError):
        _build(to=[], cc=[], bcc=[])
    weird = tmp_path / "new\nline.txt"
    weird.write_bytes(b"x")
    with pytest.raises(errors.BadInputError, match="line break"):
        _build(attachments=[weird])


def test_build_message_bcc_only():
    msg, envelope = _build(to=[], bcc=[("", "hidden@example.net")])
    wire = _wire(msg)
    assert envelope == ["hidden@example.net"]
    assert b"hidden@example.net" not in wire
    assert b"\r\nTo: undisclosed-recipients:;\r\n" in wire
    assert str(msg["To"]) == "undisclosed-recipients:;"


def test_message_size_and_check_size(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(random.Random(5).randbytes(300 * 1024))
    msg, _ = _build(attachments=[big])
    size = compose.message_size(msg)
    assert size == len(_wire(msg))
    assert size > 400 * 1024  # base64 grows it by a third
    assert compose.check_size(msg, 1) == size
    with pytest.raises(errors.BadInputError) as info:
        compose.check_size(msg, 0.25)
    assert str(size) in info.value.message
    assert "0.25 MB" in info.value.message


# ---------------------------------------------------------------------------
# envelope_from_raw
# ---------------------------------------------------------------------------


def test_envelope_from_raw_strips_bcc_only():
    raw = (
        b"From: Alice <alice@example.com>\r\n"
        b"To: bob@example.org, Carol <carol@example.net>\r\n"
        b"Bcc: secret@example.net,\r\n"
        b"  other@example.net\r\n"
        b"Cc: BOB@example.org\r\n"
        b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"BCC: third@example.net\r\n"
        b"X-Raw: \xff\xfe kept\r\n"
        b"\r\n"
        b"Bcc: this line is body text\r\n"
    )
    sender, recipients, data = compose.envelope_from_raw(raw)
    assert sender == "alice@example.com"
    assert recipients == [
        "bob@example.org",
        "carol@example.net",
        "secret@example.net",
        "other@example.net",
        "third@example.net",
    ]
    assert data == (
        b"From: Alice <alice@example.com>\r\n"
        b"To: bob@example.org, Carol <carol@example.net>\r\n"
        b"Cc: BOB@example.org\r\n"
        b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
        b"X-Raw: \xff\xfe kept\r\n"
        b"\r\n"
        b"Bcc: this line is body text\r\n"
    )


def test_envelope_from_raw_lf_and_no_bcc():
    raw = b"From: a@x.org\nTo: b@y.org\nSubject: s\n\nbody\n"
    assert compose.envelope_from_raw(raw) == ("a@x.org", ["b@y.org"], raw)
    assert compose.envelope_from_raw(b"Subject: only\r\n\r\n") == (None, [], b"Subject: only\r\n\r\n")
    headers_only = b"From: a@x.org\r\nBcc: z@y.org\r\n"
    assert compose.envelope_from_raw(headers_only) == ("a@x.org", ["z@y.org"], b"From: a@x.org\r\n")


def test_envelope_from_raw_round_trips_built_message():
    msg, envelope = _build(bcc=[("", "hidden@example.net")])
    wire = msg.as_bytes(policy=email.policy.SMTP)
    sender, recipients, data = compose.envelope_from_raw(wire)
    assert sender == "alice@example.com"
    assert recipients == ["bob@example.org"]  # the built message already has no Bcc
    assert data == wire
    assert envelope == ["bob@example.org", "hidden@example.net"]
