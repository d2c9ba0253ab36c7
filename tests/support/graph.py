"""A local HTTPS stand-in for Microsoft Graph's mail-sending API, delivering for real.

What it accepts is delivered over LMTP into the test bed's Dovecot, so tests look at the
messages that arrived, not at what the stand-in was told. Graph's documented request and
error shapes (v1.0)::

    POST /v1.0/{me|users/ADDR}/sendMail                 base64 MIME, Content-Type text/plain -> 202
    POST /v1.0/{me|users/ADDR}/messages                 base64 MIME -> 201 draft JSON
    PATCH /v1.0/{..}/messages/{id}                      JSON (bccRecipients, ...) -> 200
    POST /v1.0/{..}/messages/{id}/attachments           fileAttachment JSON -> 201
    POST /v1.0/{..}/messages/{id}/attachments/createUploadSession -> 201 {uploadUrl, ...}
    PUT  {uploadUrl}                                    Content-Range chunks (no Authorization!) -> 200/201
    POST /v1.0/{..}/messages/{id}/send                  -> 202
    GET  /v1.0/{..}/mailFolders/sentitems/messages?$filter=internetMessageId eq '<id>'
    DELETE /v1.0/{..}/messages/{id}                     -> 204

Errors are ``{"error": {"code": ..., "message": ...}}``. Bearer tokens are the identity
stand-in's HS256 JWTs: signature, ``exp``, ``aud == https://graph.microsoft.com`` and ``scp``
(Mail.Send to send, Mail.ReadWrite for drafts and Sent Items, the ``.Shared`` ones for another
mailbox) are checked; a wrong one is 401 InvalidAuthenticationToken or 403 ErrorAccessDenied.

As documented for Graph, the MIME form of sendMail takes its recipients from To and Cc only:
a ``Bcc:`` header in the MIME reaches nobody (Thunderbird's Graph notes). Bcc works only
through a draft's ``bccRecipients``. Sending as another From than the token's user needs
``allow_send_as`` (else 403 ErrorSendAsDenied). Request bodies over 4 MB: 413.

Controls: ``fail_next(route, status, code=..., message=..., retry_after=None, count=1)``,
``drop_next(route, processed=False)`` (close the connection without an answer, before or after
doing the work), ``allow_send_as(login, address)``, ``clear()``. Routes: "sendMail",
"createDraft", "patch", "attachments", "createUploadSession", "upload", "send", "sentitems",
"delete". Inspection: ``requests`` (route, method, path, time, user), ``counts()``,
``sent`` (internetMessageIds in Sent Items per mailbox), ``deliveries`` (recipients, bytes),
``max_in_flight``, ``connections`` (TLS connections).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import email
import email.policy
import email.utils
import hashlib
import hmac
import json
import re
import secrets
import smtplib
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import trustme

GRAPH = "https://graph.microsoft.com"
LIMIT = 4 * 1024 * 1024
UPLOAD_UNIT = 320 * 1024


@dataclass
class Recorded:
    route: str
    method: str
    path: str
    at: float
    user: str | None
    status: int = 0
    mailbox: str = ""  # set while counted as in flight


@dataclass
class Draft:
    mailbox: str
    mime: bytes
    bcc: list[str] = field(default_factory=list)
    attachments: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class Upload:
    draft_id: str
    name: str
    content_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Fault:
    route: str
    kind: str  # "status" | "drop"
    remaining: int
    status: int = 500
    code: str = ""
    message: str = ""
    retry_after: str | None = None
    processed: bool = False


class _Answer(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> _Answer:
    inner = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": secrets.token_hex(8)}
    return _Answer(status, {"error": {"code": code, "message": message, "innerError": inner}}, headers)


class GraphStandIn:
    def __init__(self, ca: trustme.CA, jwt_key: bytes, lmtp_port: int, *, host: str = "localhost") -> None:
        self.jwt_key = jwt_key
        self.lmtp_port = lmtp_port
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.sent: dict[str, list[str]] = collections.defaultdict(list)
        self.deliveries: list[tuple[list[str], bytes]] = []
        self.received_mime: list[bytes] = []
        self.drafts: dict[str, Draft] = {}
        self.uploads: dict[str, Upload] = {}
        self.max_in_flight = 0
        self.connections = 0  # TLS connections accepted
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._faults: list[_Fault] = []
        self._send_as: dict[str, set[str]] = {}
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self._server.server_address[1]
        self.base_url = f"https://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # ----- controls --------------------------------------------------------------------

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()
            self._faults.clear()
            self.deliveries.clear()
            self.received_mime.clear()
            self.max_in_flight = 0
            self.connections = 0

    def fail_next(
        self,
        route: str,
        status: int,
        code: str = "",
        message: str = "",
        retry_after: str | None = None,
        count: int = 1,
    ) -> None:
        with self.lock:
            self._faults.append(_Fault(route, "status", count, status, code, message, retry_after))

    def drop_next(self, route: str, processed: bool = False, count: int = 1) -> None:
        with self.lock:
            self._faults.append(_Fault(route, "drop", count, processed=processed))

    def allow_send_as(self, login: str, address: str) -> None:
        with self.lock:
            self._send_as.setdefault(address.lower(), set()).add(login.lower())

    def counts(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(r.route for r in self.requests)

    # ----- internals --------------------------------------------------------------------

    def _take_fault(self, route: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.route == route and fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _claims(self, header: str | None, needed: list[str]) -> dict[str, Any]:
        if not header or not header.startswith("Bearer "):
            raise graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = header[len("Bearer ") :]
        try:
            head, body, signature = token.split(".")
            expected = hmac.new(self.jwt_key, f"{head}.{body}".encode(), hashlib.sha256).digest()
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, TypeError) as exc:
            raise graph_error(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.") from exc
        if not hmac.compare_digest(expected, given):
            raise graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid signature.")
        if claims.get("exp", 0) <= time.time():
            raise graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        if claims.get("aud") not in (GRAPH, "00000003-0000-0000-c000-000000000000"):
            raise graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        granted = set(str(claims.get("scp", "")).split())
        if not all(any(option in granted for option in need.split("|")) for need in needed):
            raise graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return claims

    def _mailbox(self, parts: list[str], user: str) -> tuple[str, list[str]]:
        """(mailbox address, the rest of the path) for /me/... or /users/{addr}/..."""
        if parts[:1] == ["me"]:
            return user, parts[1:]
        if parts[:1] == ["users"] and len(parts) > 1:
            return urllib.parse.unquote(parts[1]).lower(), parts[2:]
        raise graph_error(
            400, "BadRequest", "Resource not found for the segment '" + (parts[0] if parts else "") + "'."
        )

    def _may_send_as(self, user: str, address: str) -> bool:
        return address.lower() == user.lower() or user.lower() in self._send_as.get(address.lower(), set())

    def _mime(self, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[EmailMessage, bytes]:
        if not handler.headers.get("Content-Type", "").startswith("text/plain"):
            raise graph_error(
                400, "ErrorInvalidRequest", "Cannot process input of abstract type 'Microsoft.OutlookServices.Item'"
            )
        try:
            raw = base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise graph_error(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from exc
        msg = email.message_from_bytes(raw, policy=email.policy.SMTP)
        if not msg.get("From"):
            raise graph_error(400, "ErrorMimeContentInvalid", "The MIME content is invalid: no From.")
        with self.lock:
            self.received_mime.append(raw)
        assert isinstance(msg, EmailMessage)
        return msg, raw

    def _deliver(self, mailbox: str, user: str, msg: EmailMessage, extra: list[str], raw: bytes | None = None) -> None:
        """Send it: From checked, recipients from To/Cc (+ ``extra``: bccRecipients), Bcc header dropped."""
        sender = email.utils.parseaddr(str(msg.get("From", "")))[1]
        if not self._may_send_as(user, sender) or not self._may_send_as(user, mailbox):
            raise graph_error(
                403,
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not have the right to send mail "
                "on behalf of the specified sending account.",
            )
        fields = [str(v) for name in ("To", "Cc") for v in msg.get_all(name, [])]
        recipients = [addr for _, addr in email.utils.getaddresses(fields) if addr] + extra
        if not recipients:
            raise graph_error(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
        if "Bcc" in msg:
            del msg["Bcc"]
            raw = None
        data = raw if raw is not None else msg.as_bytes(policy=email.policy.SMTP)
        # One LMTP transaction per recipient: LMTP answers DATA once per recipient, smtplib reads one reply.
        for recipient in recipients:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
                lmtp.sendmail(sender, [recipient], data)
        with self.lock:
            self.deliveries.append((recipients, data))
            self.sent[mailbox].append(str(msg.get("Message-ID", "")).strip())

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(handler.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        route = _route(method, parts)
        record = Recorded(route, method, url.path, time.monotonic(), None)
        with self.lock:
            self.requests.append(record)
        fault = self._take_fault(route)
        try:
            if fault is not None and fault.kind == "drop" and not fault.processed:
                raise _Drop
            if fault is not None and fault.kind == "status":
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                raise graph_error(fault.status, fault.code, fault.message, headers)
            if length > LIMIT:
                raise graph_error(
                    413, "ErrorRequestEntityTooLarge", "The request is larger than the maximum size allowed."
                )
            if route == "upload":
                answer = self._upload(handler, parts, body)
            else:
                answer = self._api(handler, method, route, parts, url.query, body, record)
            if fault is not None and fault.kind == "drop":
                raise _Drop
        except _Answer as exc:
            answer = exc
        except (smtplib.SMTPException, OSError) as exc:  # delivery failed: Graph would say 500
            answer = graph_error(500, "ErrorInternalServerError", f"delivery failed: {exc}")
        except _Drop:
            record.status = -1
            handler.close_connection = True
            return
        finally:
            if record.mailbox:
                with self.lock:
                    self._in_flight[record.mailbox] -= 1
        record.status = answer.status
        _send(handler, answer)

    def _api(
        self,
        handler: BaseHTTPRequestHandler,
        method: str,
        route: str,
        parts: list[str],
        query: str,
        body: bytes,
        record: Recorded,
    ) -> _Answer:
        if parts[:1] != ["v1.0"]:
            raise graph_error(400, "BadRequest", "Invalid version.")
        needs = {"sendMail": ["Mail.Send"], "send": ["Mail.Send"]}.get(route, ["Mail.ReadWrite"])
        # Another mailbox needs the .Shared permissions.
        header = handler.headers.get("Authorization")
        unverified = self._claims(header, [])
        user = str(unverified.get("email", "")).lower()
        record.user = user
        mailbox, rest = self._mailbox(parts[1:], user)
        if mailbox != user:
            needs = [f"{n}.Shared" for n in needs]
        self._claims(header, needs)
        with self.lock:
            self._in_flight[mailbox] += 1
            record.mailbox = mailbox
            self.max_in_flight = max(self.max_in_flight, self._in_flight[mailbox])
        if route == "sendMail":
            msg, raw = self._mime(handler, body)
            self._deliver(mailbox, user, msg, [], raw)
            return _Answer(202)
        if route == "createDraft":
            msg, raw = self._mime(handler, body)
            draft_id = "AAMk" + secrets.token_urlsafe(24)
            with self.lock:
                self.drafts[draft_id] = Draft(mailbox, raw)
            mid = str(msg.get("Message-ID", "")).strip()
            return _Answer(201, {"id": draft_id, "internetMessageId": mid, "isDraft": True})
        if route == "sentitems":
            params = urllib.parse.parse_qs(query)
            match = re.fullmatch(r"internetMessageId eq '(.*)'", params.get("$filter", [""])[0])
            if not match:
                raise graph_error(400, "BadRequest", "Invalid filter clause")
            wanted = match.group(1).replace("''", "'")
            with self.lock:
                hits = [m for m in self.sent.get(mailbox, []) if m == wanted]
            return _Answer(200, {"value": [{"id": secrets.token_hex(8), "internetMessageId": m} for m in hits]})
        draft = self.drafts.get(rest[1] if len(rest) > 1 else "")
        if draft is None or draft.mailbox != mailbox:
            raise graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        draft_id = rest[1]
        if route == "patch":
            data = json.loads(body or b"{}")
            for key in data:
                if key not in ("bccRecipients", "toRecipients", "ccRecipients", "subject"):
                    raise graph_error(
                        400,
                        "RequestBodyRead",
                        f"The property '{key}' does not exist on type 'microsoft.graph.message'.",
                    )
            for entry in data.get("bccRecipients", []):
                address = entry.get("emailAddress", {}).get("address")
                if not address:
                    raise graph_error(
                        400,
                        "ErrorInvalidRecipients",
                        "Property bccRecipients in payload has a value that does not match schema.",
                    )
                draft.bcc.append(address)
            return _Answer(200, {"id": draft_id})
        if route == "attachments":
            data = json.loads(body)
            content = base64.b64decode(data["contentBytes"])
            if len(content) >= 3 * 1024 * 1024:
                raise graph_error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "use an upload session")
            draft.attachments.append((data["name"], data.get("contentType", "application/octet-stream"), content))
            return _Answer(201, {"id": secrets.token_hex(8)})
        if route == "createUploadSession":
            item = json.loads(body)["AttachmentItem"]
            if item.get("attachmentType") != "file" or int(item.get("size", 0)) <= 0:
                raise graph_error(400, "ErrorInvalidRequest", "Property AttachmentItem in payload is not valid.")
            key = secrets.token_urlsafe(24)
            with self.lock:
                self.uploads[key] = Upload(
                    draft_id, item["name"], item.get("contentType", "application/octet-stream"), int(item["size"])
                )
            expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 900))
            return _Answer(
                201,
                {
                    "uploadUrl": f"{self.base_url}/upload/{key}",
                    "expirationDateTime": expires,
                    "nextExpectedRanges": ["0-"],
                },
            )
        if route == "send":
            msg = email.message_from_bytes(draft.mime, policy=email.policy.SMTP)
            assert isinstance(msg, EmailMessage)
            sent_raw: bytes | None = draft.mime
            for name, content_type, content in draft.attachments:
                maintype, _, subtype = content_type.partition("/")
                if not msg.is_multipart():
                    msg.make_mixed()
                msg.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=name)
                sent_raw = None
            self._deliver(mailbox, user, msg, draft.bcc, sent_raw)
            with self.lock:
                del self.drafts[draft_id]
            return _Answer(202)
        if route == "delete":
            with self.lock:
                self.drafts.pop(draft_id, None)
            return _Answer(204)
        raise graph_error(400, "BadRequest", f"Unsupported request {method} {'/'.join(parts)}")

    def _upload(self, handler: BaseHTTPRequestHandler, parts: list[str], body: bytes) -> _Answer:
        if handler.headers.get("Authorization"):
            raise graph_error(
                401, "InvalidAuthenticationToken", "Do not send an Authorization header to the upload URL."
            )
        upload = self.uploads.get(parts[1] if len(parts) > 1 else "")
        if upload is None:
            raise graph_error(404, "ErrorItemNotFound", "The upload session was not found.")
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", handler.headers.get("Content-Range", ""))
        if not match:
            raise graph_error(400, "InvalidContentRange", "Content-Range header is missing or malformed.")
        first, last, total = (int(g) for g in match.groups())
        if first != len(upload.data) or total != upload.size or last - first + 1 != len(body):
            raise graph_error(416, "InvalidRange", "The Content-Range does not match the next expected range.")
        if last + 1 < total and len(body) % UPLOAD_UNIT:
            raise graph_error(400, "InvalidChunkSize", "Chunks must be a multiple of 320 KiB.")
        upload.data.extend(body)
        if len(upload.data) < upload.size:
            return _Answer(200, {"nextExpectedRanges": [f"{len(upload.data)}-"]})
        with self.lock:
            draft = self.drafts[upload.draft_id]
            draft.attachments.append((upload.name, upload.content_type, bytes(upload.data)))
        return _Answer(201)


class _Drop(Exception):
    pass


def _route(method: str, parts: list[str]) -> str:
    if parts[:1] == ["upload"]:
        return "upload"
    tail = parts[2:] if parts[1:2] == ["me"] else parts[3:]
    if method == "POST" and tail == ["sendMail"]:
        return "sendMail"
    if method == "POST" and tail == ["messages"]:
        return "createDraft"
    if method == "GET" and tail == ["mailFolders", "sentitems", "messages"]:
        return "sentitems"
    if len(tail) == 2 and tail[0] == "messages":
        return {"PATCH": "patch", "DELETE": "delete"}.get(method, "other")
    if method == "POST" and len(tail) == 3 and tail[0] == "messages":
        return {"send": "send", "attachments": "attachments"}.get(tail[2], "other")
    if method == "POST" and tail[3:] == ["createUploadSession"]:
        return "createUploadSession"
    return "other"


def _send(handler: BaseHTTPRequestHandler, answer: _Answer) -> None:
    payload = json.dumps(answer.body).encode() if answer.body is not None else b""
    handler.send_response(answer.status)
    if payload:
        handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    for name, value in answer.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(payload)


def _make_handler(stand_in: GraphStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            stand_in.handle(self, "GET")

        def do_POST(self) -> None:
            stand_in.handle(self, "POST")

        def do_PATCH(self) -> None:
            stand_in.handle(self, "PATCH")

        def do_PUT(self) -> None:
            stand_in.handle(self, "PUT")

        def do_DELETE(self) -> None:
            stand_in.handle(self, "DELETE")

        def handle(self) -> None:
            try:
                self.connection.do_handshake()  # type: ignore[attr-defined]
            except (OSError, ssl.SSLError):
                return
            with stand_in.lock:
                stand_in.connections += 1
            with contextlib.suppress(OSError, ssl.SSLError):
                super().handle()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
