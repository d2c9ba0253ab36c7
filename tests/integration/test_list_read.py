"""``list`` and ``read`` against real Dovecot: order, filters, flags left alone, odd mail, failures."""

from __future__ import annotations

import json
import re
import secrets
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from tests.conftest import Account, Result
from tests.support.corpus import malformed_corpus
from tests.support.mailservers import MailServers

BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

KEYS = {"uid", "date", "from", "from_address", "to", "subject", "size", "flags", "seen", "message_id"}


def message(n: int, subject: str | None = None, sender: str | None = None, extra: bytes = b"") -> bytes:
    subject_line = f"Subject: {subject if subject is not None else f'message {n}'}\r\n".encode()
    return (
        f"From: {sender or f'Sender {n} <s{n}@example.org>'}\r\nTo: t@example.com\r\n".encode()
        + subject_line
        + f"Message-ID: <m{n}@example.org>\r\nDate: Fri, 27 Nov 2026 10:{n % 60:02d}:00 +0000\r\n".encode()
        + extra
        + f"\r\nbody {n}\r\n".encode()
    )


def listing(account: Account, *args: str, env: dict[str, str] | None = None) -> list[dict]:
    result = account.run("list", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def disk_flags(servers: MailServers, address: str, folder: str = "INBOX") -> list[str]:
    """Maildir flags (after ``:2,``) of each message file, in seeding order."""
    return [p.name.split(":2,", 1)[1] for p in servers.messages(address, folder)]


def imap_at(host: str, port: int, **extra: str) -> dict[str, str]:
    """Environment overrides that point the CLI's IMAP side somewhere else."""
    return {"OUTLOOK_IMAP_SERVER": host, "OUTLOOK_IMAP_PORT": str(port), **extra}


def error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith(("error:", "hint:"))]


def assert_clean_failure(result: Result, code: int) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    assert result.stdout == ""


def assert_schema(entry: dict) -> None:
    assert set(entry) == KEYS
    assert type(entry["uid"]) is int and entry["uid"] > 0
    assert entry["date"] is None or datetime.fromisoformat(entry["date"]).tzinfo is not None
    for key in ("from", "to", "subject"):
        assert type(entry[key]) is str
    assert type(entry["size"]) is int and entry["size"] > 0
    assert type(entry["flags"]) is list and all(type(f) is str for f in entry["flags"])
    assert type(entry["seen"]) is bool and entry["seen"] == ("\\Seen" in entry["flags"])
    assert entry["message_id"] is None or type(entry["message_id"]) is str
    assert entry["from_address"] is None or "@" in entry["from_address"]


# ---------------------------------------------------------------------------- listing


def test_lists_the_newest_n_newest_first_with_content(signed_in: Account) -> None:
    raws = [message(n) for n in range(12)]
    for raw in raws:
        signed_in.seed(raw)
    entries = listing(signed_in, "-n", "3")
    assert [e["uid"] for e in entries] == [12, 11, 10]
    assert [e["subject"] for e in entries] == ["message 11", "message 10", "message 9"]
    first = entries[0]
    assert first["from"] == "Sender 11" and first["to"] == "t@example.com"
    assert first["date"] == "2026-11-27T10:11:00+00:00"
    assert first["size"] == len(raws[11])
    assert first["message_id"] == "<m11@example.org>"
    assert first["seen"] is False and "\\Seen" not in first["flags"]
    # the default is 10; no command at all means "list"
    assert [e["uid"] for e in listing(signed_in)] == list(range(12, 2, -1))
    bare, explicit = signed_in.run(), signed_in.run("list")
    assert bare.returncode == explicit.returncode == 0, bare.stderr
    assert bare.stdout == explicit.stdout
    lines = bare.stdout.splitlines()
    assert len(lines) == 10
    assert re.match(r"\* +12 2026-11-\d\d \d\d:\d\d  Sender 11 +message 11$", lines[0])
    assert "message 2" in lines[-1]


def test_json_schema_exactly(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    full = message(1)
    bare = b"\r\nno headers at all\r\n"
    signed_in.seed(full, seen=True)
    arrived = datetime(2025, 6, 1, 12, 30, tzinfo=timezone.utc)
    path = signed_in.seed(bare, internaldate=arrived.timestamp())
    path.rename(path.with_name(path.name + "F"))  # \Flagged, set before Dovecot sees the file
    newest, oldest = listing(signed_in)
    for entry in (newest, oldest):
        assert_schema(entry)
    assert oldest == {
        "uid": 1,
        "date": "2026-11-27T10:01:00+00:00",
        "from": "Sender 1",
        "from_address": "s1@example.org",
        "to": "t@example.com",
        "subject": "message 1",
        "size": len(full),
        "flags": oldest["flags"],
        "seen": True,
        "message_id": "<m1@example.org>",
    }
    assert "\\Seen" in oldest["flags"]
    assert newest["from"] == newest["to"] == newest["subject"] == ""
    assert newest["message_id"] is None
    assert datetime.fromisoformat(newest["date"]) == arrived  # no Date header: the arrival time
    assert newest["seen"] is False and "\\Flagged" in newest["flags"]
    assert newest["size"] == len(bare)
    assert disk_flags(servers, address) == ["S", "F"]


def test_list_and_read_leave_flags_alone_and_mark_read_sets_seen(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    for n in range(3):
        signed_in.seed(message(n), seen=n == 1)
    assert disk_flags(servers, address) == ["", "S", ""]
    results = {
        args: signed_in.run(*args)
        for args in (("list",), ("list", "--subject", "message"), ("read", "1"), ("read", "3", "--raw"))
    }
    assert {args: r.returncode for args, r in results.items()} == dict.fromkeys(results, 0)
    assert "message 0" in results["read", "1"].stdout
    assert disk_flags(servers, address) == ["", "S", ""]
    commands = servers.imap_commands(address)
    assert not any(re.search(r"\bSTORE\b|\bSELECT\b", c) for c in commands)  # EXAMINE only
    fetches = [c for c in commands if " FETCH " in c]
    assert len(fetches) == 4 and all("BODY.PEEK[" in c and "BODY[" not in c for c in fetches)

    marked = signed_in.run("read", "3", "--mark-read")
    assert marked.returncode == 0, marked.stderr
    assert "message 2" in marked.stdout
    assert disk_flags(servers, address) == ["", "S", "S"]
    assert [e["seen"] for e in listing(signed_in)] == [True, True, False]


def test_unseen_and_since_filters(signed_in: Account) -> None:
    old = datetime(2020, 1, 1, 12, tzinfo=timezone.utc).timestamp()
    signed_in.seed(message(0), internaldate=old)  # uid 1: old, unread
    signed_in.seed(message(1), internaldate=old, seen=True)  # uid 2: old, read
    signed_in.seed(message(2))  # uid 3: new, unread
    signed_in.seed(message(3), seen=True)  # uid 4: new, read
    signed_in.seed(message(4))  # uid 5: new, unread
    assert [e["uid"] for e in listing(signed_in, "--unseen")] == [5, 3, 1]
    assert [e["uid"] for e in listing(signed_in, "--unseen", "-n", "2")] == [5, 3]
    # SINCE is about the arrival date (INTERNALDATE), not the Date header
    assert [e["uid"] for e in listing(signed_in, "--since", "2024-01-01")] == [5, 4, 3]
    assert [e["uid"] for e in listing(signed_in, "--since", "2024-01-01", "--unseen")] == [5, 3]
    bad = signed_in.run("list", "--since", "27.11.2026")
    assert bad.returncode == 64


def test_from_and_subject_filters_including_non_ascii(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    signed_in.seed(message(1, subject="=?utf-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=", sender="alice@example.org"))
    signed_in.seed(message(2, subject="Gruesse aus Koeln", sender="Bob <bob@example.org>"))
    signed_in.seed(message(3, subject="Größe", sender="=?utf-8?Q?J=C3=BCrgen?= <jm@example.de>"))
    signed_in.seed(message(4, subject='say "hi" to Alice', sender="carol@example.org"))
    assert [e["uid"] for e in listing(signed_in, "--from", "alice")] == [1]
    assert [e["uid"] for e in listing(signed_in, "--subject", "koeln")] == [2]  # case-insensitive
    assert [e["uid"] for e in listing(signed_in, "--subject", 'say "hi"')] == [4]
    assert [e["uid"] for e in listing(signed_in, "--from", "example.org", "--subject", "aus")] == [2, 1]

    servers.clear_imap_commands(address)
    found = listing(signed_in, "--subject", "Grüße")
    assert [(e["uid"], e["subject"]) for e in found] == [(1, "Grüße aus Köln")]
    commands = servers.imap_commands(address)
    search = next(i for i, c in enumerate(commands) if " SEARCH " in c)
    assert commands[search].endswith(" UID SEARCH CHARSET UTF-8 SUBJECT {7}")  # 7 UTF-8 bytes
    assert commands[search + 1] == "Grüße"
    assert [e["uid"] for e in listing(signed_in, "--from", "Jürgen")] == [3]
    assert [e["uid"] for e in listing(signed_in, "--from", "Jürgen", "--subject", "Gr")] == [3]
    both = signed_in.run("list", "--from", "Jürgen", "--subject", "Größe")
    assert both.returncode == 65 and "non-ASCII" in both.stderr


def test_folder_with_a_non_ascii_name(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    # Dovecot's default Maildir++ layout keeps the modified UTF-7 name on disk.
    path = servers.seed(address, message(7, subject="Entwurf"), folder="Entw&APw-rfe")
    assert path.parent.parent.name == ".Entw&APw-rfe"
    signed_in.seed(message(1))
    entries = listing(signed_in, "--folder", "Entwürfe")
    assert [(e["uid"], e["subject"]) for e in entries] == [(1, "Entwurf")]
    read = signed_in.run("read", "1", "--folder", "Entwürfe", "--raw")
    assert read.returncode == 0, read.stderr
    assert read.stdout_bytes == message(7, subject="Entwurf")
    assert 'EXAMINE "Entw&APw-rfe"' in "\n".join(servers.imap_commands(address))
    assert [e["subject"] for e in listing(signed_in)] == ["message 1"]  # INBOX is another folder
    servers.seed(address, message(8, subject="research"), folder="R&-D")  # "&" itself is "&-"
    assert [e["subject"] for e in listing(signed_in, "--folder", "R&D")] == ["research"]


def test_malformed_corpus_lists_and_reads(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    corpus = malformed_corpus()
    assert len(corpus) >= 30
    for _, raw in corpus:
        signed_in.seed(raw)
    entries = listing(signed_in, "-n", "100")
    assert [e["uid"] for e in entries] == list(range(len(corpus), 0, -1))
    for entry in entries:
        assert_schema(entry)
    by_name = {name: entries[len(corpus) - uid] for uid, (name, _) in enumerate(corpus, 1)}
    assert by_name["utf8_b_subject"]["subject"] == "Grüße aus Köln"
    assert by_name["koi8_r_subject"]["subject"] == "Привет мир"
    assert by_name["no_subject"]["subject"] == ""
    assert by_name["no_from"]["from"] == ""
    assert by_name["duplicate_subject_from"]["subject"] == "first"
    assert by_name["encoded_display_name"]["from"] == "Jürgen Müller"
    # Hostile charsets are unknown charsets; surrogates and bidi controls never reach the JSON.
    assert by_name["unicode_escape_charset_subject"]["subject"] == "\\ud800 x"
    assert by_name["utf7_lone_surrogate_subject"]["subject"] == "a\ufffdb"
    assert by_name["bidi_override_subject"]["subject"] == "invoicefdp.exe"
    assert by_name["bidi_display_name"]["from"] == "Bank moc.evil"
    assert by_name["bidi_display_name"]["from_address"] == "phish@example.net"
    unsafe = set(BIDI_CONTROLS) | {chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]}
    for entry in entries:
        for key in ("from", "from_address", "to", "subject", "message_id"):
            assert not set(entry[key] or "") & unsafe, (entry["uid"], key, entry[key])

    text = signed_in.run("list", "-n", "100")
    assert text.returncode == 0, text.stderr
    assert len(text.stdout.splitlines()) == len(corpus)  # CR/LF in a subject never splits a line
    assert "\x1b" not in text.stdout and "\x07" not in text.stdout and "\x9b" not in text.stdout
    assert not set(text.stdout) & set(BIDI_CONTROLS)
    text.stdout_bytes.decode("utf-8")  # strict: no surrogate was written

    def read(uid: int) -> tuple[int, Result]:
        return uid, signed_in.run("read", str(uid))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(read, range(1, len(corpus) + 1)))
    failed = [
        (uid, r.returncode, r.stderr[-300:])
        for uid, r in results
        if r.returncode != 0 or "Traceback" in r.stderr or "error:" in r.stderr
    ]
    assert failed == []
    assert all(r.stdout for _, r in results)
    for _, r in results:
        assert "\x1b" not in r.stdout and "\x9b" not in r.stdout and not set(r.stdout) & set(BIDI_CONTROLS)
    uid_of = {name: uid for uid, (name, _) in enumerate(corpus, 1)}
    by_uid = dict(results)
    assert "Subject: \\ud800 x\n" in by_uid[uid_of["unicode_escape_charset_subject"]].stdout
    assert "\n\\ud800 \\x1b[2J \\u202e body\n" in by_uid[uid_of["unicode_escape_charset_body"]].stdout
    assert "  invoicefdp.exe (2 B, application/octet-stream)\n" in by_uid[uid_of["bidi_attachment_name"]].stdout
    assert set(disk_flags(servers, address)) == {""}  # all those reads later, still all unread


def test_a_bidi_attachment_name_is_saved_as_shown(signed_in: Account) -> None:
    signed_in.seed(dict(malformed_corpus())["bidi_attachment_name"])
    target = signed_in.home / "att"
    result = signed_in.run("read", "1", "--save-attachments", str(target))
    assert result.returncode == 0, result.stderr
    assert "  invoicefdp.exe (2 B, application/octet-stream)\n" in result.stdout
    assert [p.name for p in target.iterdir()] == ["invoicefdp.exe"]
    assert f"saved {target / 'invoicefdp.exe'}" in result.stderr


def test_ten_thousand_messages_newest_20_with_one_fetch(signed_in: Account) -> None:
    servers, address = signed_in.servers, signed_in.address
    for n in range(10_000):
        servers.seed(address, b"Subject: m%d\r\n\r\nx\r\n" % n)
    servers.clear_imap_commands(address)
    started = time.monotonic()
    entries = listing(signed_in, "-n", "20")
    elapsed = time.monotonic() - started
    assert [e["uid"] for e in entries] == list(range(10_000, 9_980, -1))
    assert [e["subject"] for e in entries] == [f"m{n}" for n in range(9_999, 9_979, -1)]
    commands = servers.imap_commands(address)
    fetches = [c for c in commands if re.search(r"^\S+ (UID )?FETCH ", c)]
    assert len(fetches) == 1, commands
    assert " FETCH 9981:10000 " in fetches[0]
    assert "BODY.PEEK[" in fetches[0]
    assert "BODY[" not in fetches[0] and not re.search(r"RFC822(?!\.SIZE)", fetches[0])
    assert not any(" SEARCH" in c for c in commands)
    assert elapsed < 10


# ---------------------------------------------------------------------------- read


def test_read_raw_gives_the_exact_bytes(signed_in: Account) -> None:
    raw = (
        b"From: =?utf-8?Q?Andr=C3=A9?= <a@example.org>\r\nTo: t@example.com\r\nSubject: raw\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "Café crème\r\n".encode("latin-1")
        + b"\tspaces at the end   \r\n.\r\nFrom the start\r\n"
    )
    signed_in.seed(message(1))
    signed_in.seed(raw)
    result = signed_in.run("read", "2", "--raw")
    assert result.returncode == 0, result.stderr
    assert result.stdout_bytes == raw
    readable = signed_in.run("read", "2")
    assert readable.returncode == 0, readable.stderr
    assert "Café crème" in readable.stdout and "André" in readable.stdout


def test_read_saves_a_hostile_attachment_name_inside_dir_never_overwriting(signed_in: Account) -> None:
    corpus = dict(malformed_corpus())
    signed_in.seed(corpus["attachment_path_traversal"])
    home = signed_in.home
    target = home / "deep" / "er" / "att"  # "../../etc/passwd" from here would be home/deep/etc/passwd
    before = {p for p in home.rglob("*")}

    first = signed_in.run("read", "1", "--save-attachments", str(target))
    assert first.returncode == 0, first.stderr
    assert "see file" in first.stdout
    assert sorted(p.name for p in target.iterdir()) == ["passwd"]
    assert (target / "passwd").read_bytes() == b"root:x:0:0:"
    assert f"saved {target / 'passwd'}" in first.stderr

    (target / "passwd").write_bytes(b"mine")
    second = signed_in.run("read", "1", "--save-attachments", str(target))
    assert second.returncode == 0, second.stderr
    assert (target / "passwd").read_bytes() == b"mine"  # not overwritten
    assert sorted(p.name for p in target.iterdir()) == ["passwd", "passwd (1)"]
    assert (target / "passwd (1)").read_bytes() == b"root:x:0:0:"
    # --raw writes the exact message and still saves what was asked for
    raw = signed_in.run("read", "1", "--raw", "--save-attachments", str(target))
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout_bytes == corpus["attachment_path_traversal"]
    assert (target / "passwd (2)").read_bytes() == b"root:x:0:0:"
    created = {p for p in home.rglob("*")} - before
    saved = {target / "passwd", target / "passwd (1)", target / "passwd (2)"}
    assert created == {home / "deep", home / "deep" / "er", target, *saved}


def test_unknown_uid_unknown_folder_and_empty_folder(signed_in: Account) -> None:
    account = signed_in
    empty_text = account.run("list")
    assert empty_text.returncode == 0 and empty_text.stdout == "", empty_text.stderr
    assert listing(account) == []

    account.seed(message(1))
    missing = account.run("read", "999")
    assert_clean_failure(missing, 65)
    assert "UID 999" in error_lines(missing)[0]
    no_folder = account.run("list", "--folder", "No Such Folder")
    assert_clean_failure(no_folder, 65)
    assert "'No Such Folder'" in error_lines(no_folder)[0]
    no_folder_read = account.run("read", "1", "--folder", "Nirgendwo")
    assert_clean_failure(no_folder_read, 65)
    assert "'Nirgendwo'" in error_lines(no_folder_read)[0]


def test_piped_text_lines_are_not_cut(signed_in: Account) -> None:
    subject = "".join(f"{n:02d}-word " for n in range(40))[:299] + "Z"
    assert len(subject) == 300
    sender = "A Remarkably Long Display Name Of Someone"
    signed_in.seed(message(1, subject=subject, sender=f"{sender} <x@example.org>"))
    result = signed_in.run("list")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.endswith(subject)
    assert sender in line and "…" not in line


# ---------------------------------------------------------------------------- shared mailbox


def test_shared_mailbox_is_listed_with_a_delegated_token(account: Account) -> None:
    servers, idp = account.servers, account.idp
    shared = f"shared-{secrets.token_hex(4)}@example.com"
    servers.add_user(shared)
    servers.seed(shared, message(1, subject="for the team"))
    servers.seed(shared, message(2, subject="team again"))
    account.seed(message(3, subject="just mine"))
    account.login()
    try:
        # Signed in, but not (yet) a delegate: the token is refused for the shared mailbox.
        refused = account.run("--mailbox", shared, "list")
        assert_clean_failure(refused, 77)
        assert f"refused the sign-in for {shared}" in error_lines(refused)[0]
        # Access granted later: the refused cached token is refreshed once, the new one carries it.
        idp.delegate(account.address, shared)
        team = account.run("--mailbox", shared, "list", "--json")
        assert team.returncode == 0, team.stderr
        assert [e["subject"] for e in json.loads(team.stdout)] == ["team again", "for the team"]
        idp.reset_counts()
        after = listing(account, "--mailbox", shared)  # the option also works after the command
        assert [e["subject"] for e in after] == ["team again", "for the team"]
        raw = account.run("read", "1", "--raw", "--mailbox", shared)
        assert raw.returncode == 0 and raw.stdout_bytes == message(1, subject="for the team")
        assert idp.counts().get("total", 0) == 0  # from the cached delegated token
        assert [e["subject"] for e in listing(account)] == ["just mine"]  # own mailbox without it
        assert any("EXAMINE" in c for c in servers.imap_commands(shared))
    finally:
        idp.delegate(account.address, None)


# ---------------------------------------------------------------------------- TLS and network


def test_untrusted_certificate_is_refused_before_any_credentials(signed_in: Account) -> None:
    servers = signed_in.servers
    log = servers.dir / "logs" / "dovecot.log"
    offset = log.stat().st_size
    result = signed_in.run("list", env=imap_at(servers.untrusted_host, servers.untrusted_imaps_port))
    assert_clean_failure(result, 69)
    lines = error_lines(result)
    assert "certificate" in lines[0] and servers.untrusted_host in lines[0]
    assert lines[1].startswith("hint:") and "MAILBOT_CA_BUNDLE" in lines[1]

    def new_log() -> str:
        with log.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")

    def refused() -> list[str]:
        lip = f"lip={servers.untrusted_host},"
        return [line for line in new_log().splitlines() if lip in line and "Disconnected" in line]

    # imap-login logs the connection once the client hung up on the handshake: no auth attempt.
    (line,) = servers.wait_for(refused, what="imap-login to log the refused connection")
    assert "unknown ca" in line and "no auth attempts" in line, line
    assert signed_in.address not in new_log()
    assert servers.imap_commands(signed_in.address) == []


def test_starttls_listener(signed_in: Account) -> None:
    servers = signed_in.servers
    signed_in.seed(message(1, subject="over starttls"))
    log = servers.dir / "logs" / "dovecot.log"
    offset = log.stat().st_size
    entries = listing(
        signed_in,
        env=imap_at(servers.starttls_host, servers.imap_starttls_port, OUTLOOK_IMAP_TLS="starttls"),
    )
    assert [e["subject"] for e in entries] == ["over starttls"]

    def logins() -> list[str]:
        with log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode("utf-8", "replace").splitlines()
        return [line for line in lines if f"Login: user=<{signed_in.address}>" in line]

    (login,) = servers.wait_for(logins, what="the login to be logged")
    assert f"lip={servers.starttls_host}," in login and ", TLS," in login


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port`` that, when ``limit`` is set, closes both sides
    once ``limit`` bytes came from the server. TLS stays end to end (the certificate names 127.0.0.1)."""

    def __init__(self, target_port: int, limit: int | None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(20)  # a run that never connects must not leave the thread behind
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        self.limit = limit
        self.from_server = 0
        self.cut = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        client.settimeout(None)
        server = socket.create_connection(("127.0.0.1", self.target_port))
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [], 30)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        server.sendall(data)
                        continue
                    if self.limit is not None and self.from_server + len(data) >= self.limit:
                        client.sendall(data[: self.limit - self.from_server])
                        self.from_server, self.cut = self.limit, True
                        return
                    self.from_server += len(data)
                    client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)


def test_connection_dropped_mid_fetch_is_75(signed_in: Account) -> None:
    # 20 messages with ~8 kB of header each: the FETCH answer is ~160 kB, and everything the
    # server sends before it (TLS handshake, greeting, sign-in, EXAMINE) is well under 20 kB.
    big_to = b"Cc: " + b",\r\n ".join(b"recipient%03d@example.org" % i for i in range(300)) + b"\r\n"
    for n in range(20):
        signed_in.seed(message(n, extra=big_to))
    servers = signed_in.servers

    def through(limit: int | None) -> tuple[Result, CuttingProxy]:
        proxy = CuttingProxy(servers.imaps_port, limit)
        try:
            result = signed_in.run("list", "-n", "20", env=imap_at("127.0.0.1", proxy.port))
        finally:
            proxy.close()
        return result, proxy

    whole, proxy = through(None)
    assert whole.returncode == 0, whole.stderr  # the proxy itself is transparent
    assert len(whole.stdout.splitlines()) == 20
    assert proxy.from_server > 150_000

    cut, proxy = through(60_000)
    assert proxy.cut
    assert_clean_failure(cut, 75)
    assert "during FETCH" in error_lines(cut)[0]
    fetches = [c for c in servers.imap_commands(signed_in.address) if " FETCH " in c]
    assert len(fetches) == 2  # the cut one was sent: the drop came mid-answer

    # Dropped inside the server's first TLS flight: still a lost connection, not a TLS refusal.
    handshake, proxy = through(100)
    assert proxy.cut
    assert_clean_failure(handshake, 75)
    assert "TLS handshake" in error_lines(handshake)[0]


@contextmanager
def silent_listener() -> Iterator[int]:
    """A TCP listener that accepts connections and never says anything."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    listener.settimeout(0.05)  # close() does not wake a blocked accept(): poll a flag instead
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
        for sock in held:
            sock.close()


def test_connection_refused_is_75(signed_in: Account) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = signed_in.run("list", env=imap_at("127.0.0.1", closed_port))
    assert_clean_failure(result, 75)
    assert f"port {closed_port} refused the connection" in error_lines(result)[0]


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
def test_server_that_never_answers_times_out_with_75(signed_in: Account, tls: str) -> None:
    with silent_listener() as port:
        started = time.monotonic()
        result = signed_in.run(
            "list",
            env=imap_at("127.0.0.1", port, OUTLOOK_IMAP_TLS=tls, MAILBOT_TIMEOUT="1"),
            timeout=20,
        )
        elapsed = time.monotonic() - started
    assert_clean_failure(result, 75)
    assert error_lines(result)[0] == (
        f"error: IMAP server 127.0.0.1 port {port} did not complete the connection and greeting within 1 s"
    )
    assert elapsed < 5
