"""Scripted IMAP and SMTP peers on loopback, with TLS from the test CA, for replies and
misbehaviour real servers never show: Microsoft's reply texts, servers that keep talking
without ever finishing, announce absurd literals, send numbers that are not numbers, or
answer DATA with 250.

Each server runs in a daemon thread, records what the client sent, and stops by itself
(``lifetime`` seconds after it started, and every endless behaviour gives up when the client
goes away or the lifetime ends), so a broken test never leaves a thread talking forever.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trustme

LIFETIME = 30.0


class ScriptedServer:
    """A TLS listener on 127.0.0.1 that runs :meth:`session` for each connection, one at a time."""

    def __init__(self, cert: trustme.LeafCert, implicit: bool = True, lifetime: float = LIFETIME) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.implicit = implicit
        self.ends = time.monotonic() + lifetime
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self.ends

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            try:
                conn.settimeout(5)
                if self.implicit:
                    conn = self.context.wrap_socket(conn, server_side=True)
                self.session(conn)
            except (OSError, ssl.SSLError, ValueError):
                pass
            finally:
                conn.close()

    def session(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def repeat(self, conn: socket.socket, line: bytes, every: float) -> None:
        """Send ``line`` every ``every`` seconds until the client goes away or the lifetime ends."""
        while not self.stopping:
            conn.sendall(line)
            time.sleep(every)


# ------------------------------------------------------------------------------------- SMTP


class ScriptedSmtp(ScriptedServer):
    """A real SMTP peer that answers AUTH, MAIL, RCPT and DATA from a script: for replies Postfix
    and Dovecot never give, such as Microsoft's ``535 5.7.139`` or a 4xx after DATA. Records every
    command line it reads and every message body (still dot-stuffed).

    ``replies`` are queues per stage (``greeting``, ``auth``, ``mail``, ``rcpt``, ``data_command``
    (the reply to the DATA command itself), ``data`` (after the body)); ``pipelining`` advertises
    PIPELINING; ``endless_ehlo`` answers EHLO with ``250-`` lines that never end."""

    def __init__(
        self,
        cert: trustme.LeafCert,
        implicit: bool = False,
        pipelining: bool = False,
        endless_ehlo: bool = False,
        lifetime: float = LIFETIME,
        **replies: list[str],
    ) -> None:
        self.replies = {key: list(value) for key, value in replies.items()}
        self.pipelining = pipelining
        self.endless_ehlo = endless_ehlo
        self.lines: list[str] = []
        self.messages: list[bytes] = []
        super().__init__(cert, implicit, lifetime)

    def _reply(self, verb: str, default: str) -> str:
        queue = self.replies.get(verb)
        return queue.pop(0) if queue else default

    def rcpts(self) -> list[str]:
        """The RCPT TO addresses, in order, over all connections."""
        return [line.split(":", 1)[1].strip().strip("<>") for line in self.lines if line.upper().startswith("RCPT TO:")]

    def session(self, conn: socket.socket) -> None:
        tls = self.implicit
        stream = conn.makefile("rb")

        def send(text: str) -> None:
            conn.sendall(text.encode() + b"\r\n")

        send(self._reply("greeting", "220 scripted ESMTP"))
        while True:
            raw = stream.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                if self.endless_ehlo:
                    self.repeat(conn, b"250-scripted still greeting\r\n", 0.05)
                    return
                extensions = ["AUTH XOAUTH2", "8BITMIME"] if tls else ["STARTTLS"]
                if self.pipelining:
                    extensions.append("PIPELINING")
                send("\r\n".join(["250-scripted", *(f"250-{e}" for e in extensions[:-1]), f"250 {extensions[-1]}"]))
            elif verb == "STARTTLS" and not tls:
                send("220 2.0.0 go ahead")
                stream.close()
                conn = self.context.wrap_socket(conn, server_side=True)
                stream = conn.makefile("rb")
                tls = True
            elif verb == "AUTH":
                reply = self._reply("auth", "235 2.7.0 Authentication successful")
                while reply.startswith("334"):
                    send(reply)
                    self.lines.append(stream.readline().decode().rstrip("\r\n"))
                    reply = self._reply("auth", "235 2.7.0 Authentication successful")
                send(reply)
            elif verb == "MAIL":
                send(self._reply("mail", "250 2.1.0 Sender OK"))
            elif verb == "RCPT":
                send(self._reply("rcpt", "250 2.1.5 Recipient OK"))
            elif verb == "DATA":
                reply = self._reply("data_command", "354 go ahead")
                send(reply)
                if not reply.startswith("354"):
                    continue
                data = b""
                while (chunk := stream.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.messages.append(data)
                send(self._reply("data", "250 2.0.0 queued"))
            elif verb == "QUIT":
                send("221 2.0.0 bye")
                return
            else:
                send("250 2.0.0 OK")


# ------------------------------------------------------------------------------------- IMAP


@dataclass
class Message:
    uid: int
    raw: bytes
    flags: str = ""
    internaldate: str = "27-Nov-2026 10:00:00 +0000"


@dataclass
class Command:
    tag: str
    verb: str  # upper case; "UID FETCH", "UID SEARCH", "EXAMINE", ...
    args: str


@dataclass
class ImapSession:
    """What a handler gets: the connection, the command, and helpers to answer."""

    server: ScriptedImap
    conn: socket.socket
    stream: object
    command: Command
    done: bool = False

    def send(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        self.conn.sendall(data + b"\r\n")

    def ok(self, text: str = "done") -> None:
        self.send(f"{self.command.tag} OK {text}")

    def readline(self) -> bytes:
        return self.stream.readline()  # type: ignore[attr-defined,no-any-return]


Handler = Callable[[ImapSession], None]


@dataclass
class ImapScript:
    """What the scripted IMAP server offers: messages, capabilities, and handlers per verb that
    replace the default behaviour (``"EXAMINE"``, ``"AUTHENTICATE"``, ``"UID FETCH"``,
    ``"UID SEARCH"``, ``"FETCH"``, ``"greeting"``...)."""

    messages: list[Message] = field(default_factory=list)
    capabilities: str = "IMAP4rev1 SASL-IR AUTH=XOAUTH2"
    after_login: str = "IMAP4rev1 MOVE UIDPLUS"
    uidvalidity: str = "7"
    uidnext: str | None = None
    handlers: dict[str, Handler] = field(default_factory=dict)


def _uid_set(spec: str, values: list[int]) -> list[int]:
    """Members of ``values`` matched by an IMAP set (``1:3,7``, ``5:*``)."""
    chosen: set[int] = set()
    top = max(values, default=0)
    for part in spec.split(","):
        low, _, high = part.partition(":")
        a = top if low == "*" else int(low)
        b = a if not high else (top if high == "*" else int(high))
        a, b = min(a, b), max(a, b)
        chosen |= {v for v in values if a <= v <= b}
    return sorted(chosen)


class ScriptedImap(ScriptedServer):
    """An IMAP4rev1 peer good enough for mailbot's ``list``, ``read`` and ``fetch`` (implicit TLS):
    greeting with capabilities, AUTHENTICATE XOAUTH2 (SASL-IR, any token), EXAMINE/SELECT,
    FETCH, UID FETCH/SEARCH/STORE/COPY/MOVE/EXPUNGE, CAPABILITY, LOGOUT. Every command line is
    recorded in ``commands``; a handler in the script replaces the default for its verb."""

    def __init__(self, cert: trustme.LeafCert, script: ImapScript, lifetime: float = LIFETIME) -> None:
        self.script = script
        self.commands: list[Command] = []
        super().__init__(cert, True, lifetime)

    def verbs(self) -> list[str]:
        return [c.verb for c in self.commands]

    def session(self, conn: socket.socket) -> None:
        stream = conn.makefile("rb")
        greeting = ImapSession(self, conn, stream, Command("*", "GREETING", ""))
        if "greeting" in self.script.handlers:
            self.script.handlers["greeting"](greeting)
        else:
            greeting.send(f"* OK [CAPABILITY {self.script.capabilities}] scripted ready")
        while not self.stopping:
            raw = stream.readline()
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tag, _, rest = line.partition(" ")
            verb, _, args = rest.partition(" ")
            verb = verb.upper()
            if verb == "UID":
                sub, _, args = args.partition(" ")
                verb = f"UID {sub.upper()}"
            command = Command(tag, verb, args)
            self.commands.append(command)
            session = ImapSession(self, conn, stream, command)
            handler = self.script.handlers.get(verb) or getattr(self, "_" + verb.replace(" ", "_"), None)
            if handler is None:
                session.ok()
            else:
                handler(session)
            if verb == "LOGOUT":
                return

    # -- default behaviour ---------------------------------------------------------------

    def _AUTHENTICATE(self, s: ImapSession) -> None:
        s.ok(f"[CAPABILITY {self.script.after_login}] signed in")

    def _CAPABILITY(self, s: ImapSession) -> None:
        s.send(f"* CAPABILITY {self.script.after_login}")
        s.ok()

    def _EXAMINE(self, s: ImapSession) -> None:
        messages = self.script.messages
        uidnext = self.script.uidnext or str(max((m.uid for m in messages), default=0) + 1)
        s.send("* FLAGS (\\Seen \\Deleted)")
        s.send(f"* {len(messages)} EXISTS")
        s.send(f"* OK [UIDVALIDITY {self.script.uidvalidity}] ok")
        s.send(f"* OK [UIDNEXT {uidnext}] ok")
        s.ok("[READ-ONLY] done" if s.command.verb == "EXAMINE" else "[READ-WRITE] done")

    _SELECT = _EXAMINE

    def fetch_reply(self, s: ImapSession, seq: int, message: Message, items: str) -> None:
        parts = [f"UID {message.uid}"]
        if "FLAGS" in items:
            parts.append(f"FLAGS ({message.flags})")
        if "INTERNALDATE" in items:
            parts.append(f'INTERNALDATE "{message.internaldate}"')
        if "RFC822.SIZE" in items:
            parts.append(f"RFC822.SIZE {len(message.raw)}")
        head = f"* {seq} FETCH ({' '.join(parts)}"
        section = re.search(r"BODY\.PEEK\[([^\]]*)\]", items)
        if section is None:
            s.send(head + ")")
            return
        body = message.raw
        if section.group(1).startswith("HEADER"):
            end = body.find(b"\r\n\r\n")
            body = body[: end + 4] if end >= 0 else body
        s.conn.sendall(f"{head} BODY[{section.group(1)}] {{{len(body)}}}\r\n".encode() + body + b")\r\n")

    def _fetch(self, s: ImapSession, by_uid: bool) -> None:
        spec, _, items = s.command.args.partition(" ")
        messages = self.script.messages
        keys = [m.uid for m in messages] if by_uid else list(range(1, len(messages) + 1))
        for key in _uid_set(spec, keys):
            seq = keys.index(key) + 1
            self.fetch_reply(s, seq, messages[seq - 1], items)
        s.ok()

    def _UID_FETCH(self, s: ImapSession) -> None:
        self._fetch(s, by_uid=True)

    def _FETCH(self, s: ImapSession) -> None:
        self._fetch(s, by_uid=False)

    def _UID_SEARCH(self, s: ImapSession) -> None:
        uids = [m.uid for m in self.script.messages]
        match = re.fullmatch(r"UID (\S+)", s.command.args)
        if match:
            uids = _uid_set(match.group(1), uids)
        s.send("* SEARCH" + "".join(f" {u}" for u in uids))
        s.ok()

    def _LOGOUT(self, s: ImapSession) -> None:
        s.send("* BYE bye")
        s.ok()
