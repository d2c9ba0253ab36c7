# ruff: noqa: E501  (data: long header templates and word lists)
"""Realistic mail for the benchmark: Exchange-Online-shaped messages of realistic sizes.

Each message carries the transport headers Outlook adds (Received chain, ARC, DKIM,
anti-spam reports: 4-8 KB, as on real Microsoft 365 mail), the fields a mail list shows
(Date, From, To, Cc for about a third, Subject with some RFC 2047 words, Message-ID) and a
body drawn from pools:

=====================  =======  ==================================================
kind                   share    size (whole message)
=====================  =======  ==================================================
plain text              65 %    ~6-15 KB
text + HTML             25 %    ~15-75 KB
small attachment         8.5 %  ~50-260 KB (base64 of random bytes)
large attachment         1.5 %  ~0.4-1.5 MB
=====================  =======  ==================================================

Mean about 50 KB. Deterministic for a given seed; bodies come from pre-built pools so that
100,000 messages are generated in a few seconds.
"""

from __future__ import annotations

import base64
import random
import textwrap
from datetime import datetime, timezone
from email.utils import format_datetime

FIRST = [
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Lukas",
    "Mia",
    "Noah",
    "Olga",
    "Pedro",
    "Qi",
    "Rosa",
    "Sven",
    "Tara",
    "Uwe",
    "Vera",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
]
LAST = [
    "Schmidt",
    "Müller",
    "Garcia",
    "Rossi",
    "Dubois",
    "Nowak",
    "Kim",
    "Tanaka",
    "Silva",
    "Jensen",
    "Novak",
    "Papadopoulos",
    "Ivanova",
    "O'Brien",
    "Haddad",
    "Larsen",
    "Moreau",
    "Costa",
    "Weber",
    "Fischer",
]
DOMAINS = ("contoso.com", "fabrikam.org", "northwind.example", "tailspin.example", "adatum.net")
WORDS = [
    "the",
    "project",
    "meeting",
    "report",
    "budget",
    "review",
    "quarterly",
    "update",
    "please",
    "find",
    "attached",
    "draft",
    "final",
    "customer",
    "invoice",
    "schedule",
    "deadline",
    "team",
    "lead",
    "proposal",
    "contract",
    "delivery",
    "status",
    "issue",
    "server",
    "release",
    "notes",
    "agenda",
    "minutes",
    "follow",
    "up",
    "action",
    "items",
    "thanks",
    "regards",
    "question",
    "answer",
    "plan",
    "design",
    "document",
    "feedback",
    "approval",
    "request",
    "change",
    "order",
    "shipment",
    "warehouse",
    "analytics",
    "data",
    "migration",
    "cloud",
    "security",
    "audit",
    "compliance",
    "training",
    "onboarding",
    "holiday",
    "travel",
    "expense",
]
SUBJECTS = (
    "Re: {a} {b} for {c}",
    "FW: {a} {b} {c}",
    "{A} {b}: {c} {d}",
    "[{A}] {b} {c} – week {n}",
    "Invitation: {A} {b} @ {day} {n}:00",
    "Your {a} {b} #{n}{n}",
)
NON_ASCII_SUBJECTS = (
    "Grüße aus Köln – {a} {b}",
    "Réunion {a}: ordre du jour",
    "Отчёт {a} {n}",
    "会議の議事録 {a}",
    "🎉 {A} {b} done",
)
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri")
_DATE = "@@DATE@@"


def _b64_block(rng: random.Random, nbytes: int, width: int = 76) -> str:
    data = base64.b64encode(rng.randbytes(nbytes)).decode("ascii")
    return "\r\n".join(data[i : i + width] for i in range(0, len(data), width))


def _folded(name: str, value: str) -> str:
    """A long header folded at ~76 columns (continuation lines start with a tab)."""
    first, rest = value[: 76 - len(name) - 2], value[76 - len(name) - 2 :]
    lines = [f"{name}: {first}"] + ["\t" + rest[i : i + 75] for i in range(0, len(rest), 75)]
    return "\r\n".join(lines)


class MailFactory:
    """``message(n, when, to)`` -> RFC 822 bytes (CRLF), realistic size and headers."""

    def __init__(self, seed: int = 2026) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.texts = [self._text(rng.randint(600, 7000)).encode() for _ in range(48)]
        self.htmls = [self._html(rng.randint(8000, 60000)).encode() for _ in range(24)]
        self.small = [_b64_block(rng, rng.randint(30000, 180000)).encode() for _ in range(12)]
        self.large = [_b64_block(rng, rng.randint(300000, 1100000)).encode() for _ in range(4)]
        # Transport headers are the slow part to make: a pool of them, dated per message.
        self.transport = ["\r\n".join(self._transport_headers(_DATE, self._person()[1])) for _ in range(256)]

    # ------------------------------------------------------------------ pools

    def _words(self, count: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(count))

    def _text(self, size: int) -> str:
        paragraphs = []
        total = 0
        while total < size:
            p = self._words(self.rng.randint(20, 90)).capitalize() + "."
            paragraphs.append("\r\n".join(textwrap.wrap(p, 72)))
            total += len(p) + 4
        return "Hello,\r\n\r\n" + "\r\n\r\n".join(paragraphs) + "\r\n\r\nBest regards\r\n"

    def _html(self, size: int) -> str:
        rows = []
        total = 0
        while total < size:
            row = (
                f'<tr><td style="padding:4px;font-family:Calibri,sans-serif;font-size:11pt">'
                f"{self._words(self.rng.randint(5, 25))}</td></tr>"
            )
            rows.append(row)
            total += len(row)
        body = "<html><head><meta charset=utf-8></head><body><table>" + "".join(rows) + "</table></body></html>"
        return "\r\n".join(textwrap.wrap(body, 76, break_long_words=True, break_on_hyphens=False))

    # ------------------------------------------------------------------ one message

    def _person(self) -> tuple[str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        local = f"{first}.{last}".lower().replace("'", "").replace("ü", "ue")
        return f"{first} {last}", f"{local}@{self.rng.choice(DOMAINS)}"

    def _addr(self) -> str:
        name, address = self._person()
        return f'"{name}" <{address}>' if "'" in name else f"{name} <{address}>"

    def _subject(self) -> str:
        rng = self.rng
        fill = {
            "a": rng.choice(WORDS),
            "A": rng.choice(WORDS).capitalize(),
            "b": rng.choice(WORDS),
            "c": rng.choice(WORDS),
            "d": rng.choice(WORDS),
            "n": rng.randint(1, 52),
            "day": rng.choice(DAYS),
        }
        if rng.random() < 0.12:
            text = rng.choice(NON_ASCII_SUBJECTS).format(**fill)
            return "=?utf-8?B?" + base64.b64encode(text.encode()).decode() + "?="
        return rng.choice(SUBJECTS).format(**fill)

    def _transport_headers(self, date: str, sender_domain: str) -> list[str]:
        rng = self.rng
        hosts = [
            f"{rng.choice(('AM', 'DB', 'VI', 'PA', 'HE'))}{rng.randint(0, 9)}PR0{rng.randint(1, 9)}MB{rng.randint(1000, 9999)}"
            for _ in range(4)
        ]
        guid = "-".join(rng.randbytes(n).hex() for n in (4, 2, 2, 2, 6))
        lines = [
            f"Received: from {hosts[0]}.eurprd0{rng.randint(1, 9)}.prod.outlook.com "
            f"(2603:10a6:20b:{rng.randint(1, 999):x}::{rng.randint(1, 99)}) by {hosts[1]}.eurprd0{rng.randint(1, 9)}"
            f".prod.outlook.com with HTTPS; {date}",
            f"Received: from {hosts[2]}.namprd0{rng.randint(1, 9)}.prod.outlook.com "
            f"(2603:10b6:a03:{rng.randint(1, 999):x}::{rng.randint(1, 99)}) by {hosts[0]}.eurprd0{rng.randint(1, 9)}"
            f".prod.outlook.com (2603:10a6:20b:{rng.randint(1, 999):x}::{rng.randint(1, 99)}) with Microsoft SMTP "
            f"Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.{rng.randint(1000, 9999)}"
            f".{rng.randint(10, 99)}; {date}",
            f"Received: from mail-{rng.randint(1, 99)}.{sender_domain} ({rng.randint(1, 223)}.{rng.randint(0, 255)}."
            f"{rng.randint(0, 255)}.{rng.randint(1, 254)}) by {hosts[3]}.mail.protection.outlook.com with Microsoft "
            f"SMTP Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id 15.20.{rng.randint(1000, 9999)}.12; {date}",
            "ARC-Seal: i=1; a=rsa-sha256; s=arcselector10001; d=microsoft.com; cv=none;\r\n b="
            + _b64_block(rng, 256, 74).replace("\r\n", "\r\n "),
            "ARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed/relaxed; d=microsoft.com;\r\n"
            " s=arcselector10001;\r\n h=From:Date:Subject:Message-ID:Content-Type:MIME-Version:"
            "X-MS-Exchange-AntiSpam-MessageData-ChunkCount:X-MS-Exchange-AntiSpam-MessageData-0:"
            "X-MS-Exchange-AntiSpam-MessageData-1;\r\n bh="
            + base64.b64encode(rng.randbytes(32)).decode()
            + ";\r\n b="
            + _b64_block(rng, 256, 74).replace("\r\n", "\r\n "),
            f"ARC-Authentication-Results: i=1; mx.microsoft.com 1; spf=pass\r\n smtp.mailfrom={sender_domain}; "
            f"dmarc=pass action=none header.from={sender_domain};\r\n dkim=pass header.d={sender_domain}; arc=none",
            f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={sender_domain};\r\n s=selector1;\r\n"
            " h=From:Date:Subject:Message-ID:Content-Type:MIME-Version:X-MS-Exchange-SenderADCheck;\r\n bh="
            + base64.b64encode(rng.randbytes(32)).decode()
            + ";\r\n b="
            + _b64_block(rng, 256, 74).replace("\r\n", "\r\n "),
            f"Authentication-Results: dkim=pass (signature was verified)\r\n header.d={sender_domain};"
            f"dmarc=pass action=none header.from={sender_domain};",
            f"X-MS-Office365-Filtering-Correlation-Id: {guid}",
            "X-MS-Exchange-SenderADCheck: 1",
            "X-MS-Exchange-AntiSpam-Relay: 0",
            "X-Microsoft-Antispam: BCL:0;ARA:13230040|1800799024|366016|376014|38070700018;",
            _folded(
                "X-Microsoft-Antispam-Message-Info",
                base64.b64encode(rng.randbytes(rng.randint(600, 1600))).decode(),
            ),
            f"X-Forefront-Antispam-Report: CIP:255.255.255.255;CTRY:;LANG:en;SCL:1;SRV:;IPV:NLI;SFV:NSPM;"
            f"H:{hosts[2]}.namprd0{rng.randint(1, 9)}.prod.outlook.com;PTR:;CAT:NONE;\r\n SFS:(13230040)(1800799024)"
            "(366016)(376014)(38070700018);DIR:INB;",
            "X-MS-Exchange-AntiSpam-MessageData-ChunkCount: 1",
            _folded(
                "X-MS-Exchange-AntiSpam-MessageData-0",
                base64.b64encode(rng.randbytes(rng.randint(700, 2000))).decode(),
            ),
            "X-OriginatorOrg: " + sender_domain,
            f"X-MS-Exchange-CrossTenant-Network-Message-Id: {guid}",
            f"X-MS-Exchange-CrossTenant-OriginalArrivalTime: {date}",
            "X-MS-Exchange-CrossTenant-FromEntityHeader: Hosted",
            f"X-MS-Exchange-CrossTenant-Id: {rng.randbytes(16).hex()}",
            "X-MS-Exchange-Transport-CrossTenantHeadersStamped: " + hosts[1],
            "Content-Language: en-US",
            "X-MS-Has-Attach: ",
            "X-MS-TNEF-Correlator: ",
        ]
        return lines

    def message(self, n: int, when: float, to: str, kind: str | None = None) -> bytes:
        """Message number ``n`` (for its Message-ID), dated ``when`` (epoch), addressed to ``to``."""
        rng = self.rng
        if kind is None:
            roll = rng.random()
            kind = "text" if roll < 0.65 else "html" if roll < 0.90 else "small" if roll < 0.985 else "large"
        date = format_datetime(datetime.fromtimestamp(when, timezone.utc))
        sender_name, sender = self._person()
        subject = self._subject()
        tos = [to] + [self._addr() for _ in range(rng.choice((0, 0, 0, 1, 2)))]
        headers = [rng.choice(self.transport).replace(_DATE, date)]
        thread = base64.b64encode(rng.randbytes(22)).decode()
        headers += [
            f"From: {sender_name} <{sender}>",
            f"To: {', '.join(tos)}",
        ]
        if rng.random() < 0.33:
            headers.append("Cc: " + ",\r\n\t".join(self._addr() for _ in range(rng.randint(1, 4))))
        headers += [
            f"Subject: {subject}",
            f"Thread-Topic: {subject}",
            f"Thread-Index: {thread}",
            f"Date: {date}",
            f"Message-ID: <{rng.randbytes(12).hex().upper()}@{rng.choice(('AM', 'DB', 'VI'))}"
            f"{rng.randint(0, 9)}PR07MB{rng.randint(1000, 9999)}.eurprd07.prod.outlook.com>",
            "Accept-Language: en-US",
            "MIME-Version: 1.0",
        ]
        text = rng.choice(self.texts)
        boundary = "_000_" + rng.randbytes(12).hex()
        parts: list[bytes]
        if kind == "text":
            headers += ['Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: 8bit"]
            parts = [text]
        else:
            alt = "_alt_" + rng.randbytes(12).hex()
            alternative = [
                f'--{alt}\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\n'.encode(),
                text,
                f'\r\n--{alt}\r\nContent-Type: text/html; charset="utf-8"\r\n\r\n'.encode(),
                rng.choice(self.htmls),
                f"\r\n--{alt}--\r\n".encode(),
            ]
            if kind == "html":
                headers.append(f'Content-Type: multipart/alternative; boundary="{alt}"')
                parts = alternative
            else:
                blob = rng.choice(self.small if kind == "small" else self.large)
                name = f"{rng.choice(WORDS)}-{rng.randint(1, 999)}.{rng.choice(('pdf', 'xlsx', 'docx', 'zip'))}"
                headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
                parts = [
                    f'--{boundary}\r\nContent-Type: multipart/alternative; boundary="{alt}"\r\n\r\n'.encode(),
                    *alternative,
                    f'--{boundary}\r\nContent-Type: application/octet-stream; name="{name}"\r\n'
                    f'Content-Disposition: attachment; filename="{name}"\r\n'
                    "Content-Transfer-Encoding: base64\r\n\r\n".encode(),
                    blob,
                    f"\r\n--{boundary}--\r\n".encode(),
                ]
        return b"".join([("\r\n".join(headers) + "\r\n\r\n").encode("utf-8"), *parts])

    def big_message(self, to: str, size: int, when: float) -> bytes:
        """One message of about ``size`` bytes: a short text and one base64 attachment."""
        head = self.message(0, when, to, kind="text")
        raw_len = max(0, (size - len(head) - 600) * 3 // 4 * 76 // 78)  # base64 lines: 76 + CRLF
        blob = _b64_block(random.Random(7), raw_len)
        boundary = "_big_" + self.rng.randbytes(8).hex()
        header_end = head.index(b"\r\n\r\n")
        headers = head[:header_end].replace(
            b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit',
            f'Content-Type: multipart/mixed; boundary="{boundary}"'.encode(),
        )
        body = (
            (
                f'--{boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\nThe backup is attached.\r\n'
                f'--{boundary}\r\nContent-Type: application/octet-stream; name="backup.tar"\r\n'
                f'Content-Disposition: attachment; filename="backup.tar"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            ).encode()
            + blob.encode()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        return headers + b"\r\n\r\n" + body


def outgoing(sender: str, to: str, n: int, rng: random.Random) -> bytes:
    """A queued outgoing message (what ``send --queue`` writes): a few KB of text."""
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(150, 600)))
    body = "\r\n".join(textwrap.wrap(words.capitalize() + ".", 72))
    when = format_datetime(datetime.now(timezone.utc))
    return (
        f"From: Bench Sender <{sender}>\r\nTo: {to}\r\nSubject: queued report {n:03d}\r\n"
        f"Date: {when}\r\nMessage-ID: <bench-{n:03d}-{rng.randbytes(6).hex()}@example.com>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: 8bit\r\n'
        f"\r\nHello,\r\n\r\n{body}\r\n\r\nRegards\r\n"
    ).encode()
