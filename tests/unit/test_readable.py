"""Unit tests for mail/readable.py: HTML to text, one message for reading, attachment names and saving."""

from __future__ import annotations

import email.policy
import stat
from email.parser import BytesParser

import pytest

from mailbotcore.mail import readable

PARSER = BytesParser(policy=email.policy.default)


# ---------------------------------------------------------------------------
# html_to_text
# ---------------------------------------------------------------------------


def test_html_to_text_structure():
    html = (
        "<html><head><title>Title</title><style>p {color: red}</style></head><body>"
        "<h1>Hi &amp; bye</h1><p>Para  one\n text <a href='https://x.org/a'>link</a> "
        "<a href='https://y.org/'>y.org</a></p>"
        "<ul><li>one<li>two<ul><li>inner</li></ul></ul>"
        "line<br>break<br/>again<script>alert(1)</script>"
        "<div>block</div><table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table>"
        "&lt;tag&gt; &eacute;&#233;&#x20ac;&nbsp;end</body></html>"
    )
    assert readable.html_to_text(html) == (
        "Hi & bye\n\n"
        "Para one text link (https://x.org/a) y.org\n\n"
        "- one\n- two\n  - inner\n\n"
        "line\nbreak\nagain\nblock\n\n"
        "a  b\nc  d\n\n"
        "<tag> éé€ end"
    )


def test_html_to_text_links():
    assert readable.html_to_text('<a href="mailto:a@b.c">a@b.c</a>') == "a@b.c"
    assert readable.html_to_text('<a href="#top">top</a>') == "top"
    assert readable.html_to_text('<a href="javascript:x()">click</a>') == "click"
    assert readable.html_to_text('<a href="https://x.org"><img src="i.png"></a>') == "https://x.org"
    assert readable.html_to_text('<a href="https://x.org"><img alt="Logo"></a>') == "Logo (https://x.org)"


def test_html_to_text_pre_and_unclosed_tags():
    assert readable.html_to_text("<pre>a  b\n  c</pre>after") == "a  b\n  c\n\nafter"
    assert readable.html_to_text("<head><title>x</title><body>shown") == "shown"
    assert readable.html_to_text("<script>never closed") == ""
    assert readable.html_to_text("<p>unclosed <b>bold") == "unclosed bold"
    assert readable.html_to_text("<!-- comment -->text<![CDATA[x]]>") == "text"
    assert readable.html_to_text("") == ""


# ---------------------------------------------------------------------------
# parse_for_reading / format_readable
# ---------------------------------------------------------------------------

ALTERNATIVE = (
    b"Date: Fri, 27 Nov 2026 10:01:02 +0000\r\n"
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: =?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <m1@example.com>\r\n"
    b"X-Other: ignored\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
    b"--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=E9 plain\r\n"
    b"--alt\r\n"
    b'Content-Type: multipart/related; boundary="rel"\r\n\r\n'
    b"--rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML version</p>\r\n"
    b"--rel\r\nContent-Type: image/png\r\nContent-ID: <img1>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"iVBORw0KGgo=\r\n"
    b"--rel--\r\n"
    b"--alt--\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; name=notes.txt\r\nContent-Disposition: inline; filename=notes.txt\r\n\r\n"
    b"inline named text\r\n"
    b"--outer\r\n"
    b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n"
    b" filename*=utf-8''%E2%82%AC%20rates.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"JVBERi0xLjQK\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n\r\n"
    b"From: inner@example.com\r\nSubject: Inner =?utf-8?Q?n=C3=B8te?=\r\n\r\nInner body.\r\n"
    b"--outer--\r\n"
)


def test_parse_for_reading_structure():
    msg = readable.parse_for_reading(ALTERNATIVE)
    assert msg.headers == [
        ("Date", "Fri, 27 Nov 2026 10:01:02 +0000"),
        ("From", "Alice <alice@example.com>"),
        ("To", "bob@example.org"),
        ("Subject", "Grüße"),
        ("Message-ID", "<m1@example.com>"),
    ]
    assert msg.body == "Café plain"
    summary = [(a.filename, a.content_type, a.size) for a in msg.attachments]
    assert summary == [
        ("part-1.png", "image/png", 8),
        ("notes.txt", "text/plain", 17),
        ("€ rates.pdf", "application/pdf", 9),
        ("Inner nøte.eml", "message/rfc822", len(msg.attachments[3].payload)),
    ]
    assert msg.attachments[0].payload == b"\x89PNG\r\n\x1a\n"
    assert msg.attachments[2].payload == b"%PDF-1.4\n"
    inner = PARSER.parsebytes(msg.attachments[3].payload)
    assert inner["From"] == "inner@example.com"
    assert inner.get_content() == "Inner body."  # the CRLF before the boundary belongs to the boundary
    assert msg.attachments[3].payload.startswith(b"From: inner@example.com\r\nSubject: Inner =?utf-8?Q?n=C3=B8te?=\r\n")


def test_parse_for_reading_html_only_and_empty():
    raw = b"Subject: h\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>there</b></p><p>Two</p>\r\n"
    assert readable.parse_for_reading(raw).body == "Hello there\n\nTwo"
    image_only = b"Content-Type: image/gif\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n"
    msg = readable.parse_for_reading(image_only)
    assert msg.body == ""
    assert [(a.filename, a.payload) for a in msg.attachments] == [("part-1.gif", b"GIF89a")]


def test_parse_for_reading_malformed():
    assert readable.parse_for_reading(b"") == readable.ReadableMessage([], "", [])
    assert readable.parse_for_reading(b"no headers at all\r\n").body == "no headers at all"
    bad_b64 = b"Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29y!!!bGQ=\r\n***\r\n"
    assert readable.parse_for_reading(bad_b64).body == "Hello world"
    unknown = b"Content-Type: text/plain; charset=x-nope\r\n\r\nGr\xfc\xdfe\r\n"
    assert readable.parse_for_reading(unknown).body == "Grüße"
    no_boundary = b"Content-Type: multipart/mixed\r\n\r\nstill shown\r\n"
    assert "still shown" in readable.parse_for_reading(no_boundary).body


def test_parse_for_reading_body_has_no_escape_sequences():
    raw = b"Subject: x\r\n\r\nline\x1b[2J one\r\nnul\x00byte\tok\r\n"
    assert readable.parse_for_reading(raw).body == "line [2J one\nnul byte\tok"


def test_parse_for_reading_deep_nesting_does_not_recurse_forever():
    depth = 200
    body = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    raw = b"Subject: deep\r\n" + body + b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    msg = readable.parse_for_reading(raw)
    assert msg.headers == [("Subject", "deep")]
    assert msg.body == ""  # beyond the depth limit nothing is shown, and nothing raises


@pytest.mark.parametrize("kind", ["multipart", "rfc822"])
def test_parse_for_reading_nesting_beyond_the_email_package(kind):
    depth = 1100  # past the interpreter recursion limit (1000)
    if kind == "multipart":
        nest = b"".join(
            b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth)
        )
    else:
        nest = b"Content-Type: message/rfc822\r\n\r\n" * depth
    raw = b"Subject: deep\r\n" + nest + b"Subject: x\r\n\r\nhi"
    msg = readable.parse_for_reading(raw)
    assert msg.headers == [("Subject", "deep")]
    assert msg.body.endswith("hi")  # shown raw rather than raising RecursionError


def test_format_readable():
    msg = readable.ReadableMessage(
        headers=[("From", "Alice <a@x.org>"), ("Subject", "Hi\x1b[2J")],
        body="Line one\nLine two\n",
        attachments=[
            readable.Attachment("report.pdf", "application/pdf", 1536, b""),
            readable.Attachment("tiny.txt", "text/plain", 12, b""),
            readable.Attachment("big.bin", "application/octet-stream", 5 * 1024 * 1024, b""),
        ],
    )
    assert readable.format_readable(msg) == (
        "From: Alice <a@x.org>\n"
        "Subject: Hi [2J\n"
        "\n"
        "Line one\nLine two\n"
        "\n"
        "Attachments:\n"
        "  report.pdf (1.5 KB, application/pdf)\n"
        "  tiny.txt (12 B, text/plain)\n"
        "  big.bin (5.0 MB, application/octet-stream)\n"
    )


# ---------------------------------------------------------------------------
# safe_filename / save_unique
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
        ("/absolute/path.txt", "path.txt"),
        ("..", "fallback"),
        (".", "fallback"),
        ("", "fallback"),
        (None, "fallback"),
        ("   ", "fallback"),
        ("dir/", "fallback"),
        (".bashrc", "bashrc"),
        ("...hidden.txt", "hidden.txt"),
        ("nul\x00byte.txt", "nul byte.txt"),
        ("new\nline\r.txt", "new line .txt"),
        ('a<b>c:d"e|f?g*h.txt', "a_b_c_d_e_f_g_h.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("CON", "_CON"),
        ("com1.txt", "_com1.txt"),
        ("trailing. . .", "trailing"),
        ("Grüße €.pdf", "Grüße €.pdf"),
    ],
)
def test_safe_filename(name, expected):
    assert readable.safe_filename(name, "fallback") == expected


def test_safe_filename_caps_length_keeping_extension():
    name = "é" * 300 + ".pdf"
    safe = readable.safe_filename(name, "x")
    assert safe.endswith(".pdf")
    assert len(safe.encode()) <= 200
    assert safe == "é" * 98 + ".pdf"
    long_ext = readable.safe_filename("a." + "x" * 400, "x")
    assert len(long_ext.encode()) <= 200


def test_save_unique_never_overwrites(tmp_path):
    first = readable.save_unique(tmp_path, "a.txt", b"one")
    second = readable.save_unique(tmp_path, "a.txt", b"two")
    third = readable.save_unique(tmp_path, "a.txt", b"three")
    assert [p.name for p in (first, second, third)] == ["a.txt", "a (1).txt", "a (2).txt"]
    assert [p.read_bytes() for p in (first, second, third)] == [b"one", b"two", b"three"]
    noext = [readable.save_unique(tmp_path, "README", b"").name for _ in range(2)]
    assert noext == ["README", "README (1)"]


def test_save_unique_mode_and_location(tmp_path):
    path = readable.save_unique(tmp_path, "../../escape.txt", b"data")
    assert path == tmp_path / "escape.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_save_unique_refuses_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").symlink_to(outside)
    (inbox / "dangling.txt").symlink_to(tmp_path / "does-not-exist")
    path = readable.save_unique(inbox, "a.txt", b"attacker")
    assert path == inbox / "a (1).txt"
    assert outside.read_bytes() == b"precious"
    assert (inbox / "a.txt").is_symlink()
    dangling = readable.save_unique(inbox, "dangling.txt", b"x")
    assert dangling == inbox / "dangling (1).txt"
    assert not (tmp_path / "does-not-exist").exists()


def test_save_unique_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        readable.save_unique(tmp_path / "nope", "a.txt", b"")
