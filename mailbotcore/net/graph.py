"""Sending through Microsoft Graph: the same MIME bytes mailbot builds for SMTP, over HTTPS.

* small, no Bcc: one ``POST /v1.0/me/sendMail`` with the base64 MIME as ``text/plain``;
* Bcc: Graph's MIME sendMail cannot carry Bcc, so a draft is created from the MIME
  (``POST /me/messages``), ``bccRecipients`` set (``PATCH``), and the draft sent
  (``POST /me/messages/{id}/send``);
* over Graph's 4 MB request limit: the draft without its big attachments, each attachment
  added (3 MB and more through an upload session, Graph's large-attachment API), then sent.

``/users/{address}`` replaces ``/me`` when sending from another mailbox (``--from`` a shared
mailbox). Every reply is mapped by the table in ``mailbotcore.wire.graph``. A connection that
breaks after the final request was written is an unknown outcome: Sent Items is searched for
the Message-ID, and only a confirmed absence counts as "not sent" (never sent twice).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from mailbotcore import logs
from mailbotcore.config import Settings
from mailbotcore.errors import MailbotError, OutcomeUnknown, ServiceRefused, SignInRequired, TemporaryFailure
from mailbotcore.mail import compose
from mailbotcore.net.http import http_session
from mailbotcore.net.tls import CA_HINT
from mailbotcore.wire import graph as wire
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.graph")

OWN_SCOPES = wire.SCOPES
SHARED_SCOPES = wire.SHARED_SCOPES


@dataclass
class _Outcome:
    """What one HTTP exchange gave: a response, or a network failure and whether the request was written."""

    response: Any = None
    failure: str | None = None
    written: bool = False
    tls: str | None = None


class GraphSession:
    """Sends messages through Graph; counts the HTTP requests it made (``requests``)."""

    def __init__(self, settings: Settings, providers: Callable[[list[str]], TokenProvider]) -> None:
        self.settings = settings
        self.providers = providers
        self.http = http_session(settings.ca_bundle, settings.timeout)
        self.base = settings.graph_url + "/v1.0"
        self.where = f"Microsoft Graph {settings.graph_url}"
        self.requests = 0
        self.login = settings.command("login")

    def close(self) -> None:
        self.http.close()

    # -- one message ---------------------------------------------------------------------

    def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        """Send ``data`` (RFC 5322 bytes, no Bcc header) to ``recipients``; those not in To/Cc are Bcc."""
        own = sender.lower() == (self.settings.username or "").lower()
        mailbox = wire.mailbox_path(None if own else sender)
        provider = self.providers(OWN_SCOPES if own else OWN_SCOPES + SHARED_SCOPES)
        _, visible, _ = compose.envelope_from_raw(data)
        shown = {address.lower() for address in visible}
        bcc = [r for r in recipients if r.lower() not in shown]
        message_id = _message_id(data)
        encoded = base64.b64encode(data)
        context = _Context(self, provider, mailbox, sender, message_id)
        if not bcc and len(encoded) <= wire.REQUEST_LIMIT:
            log.info("graph: sendMail (%d bytes)", len(data))
            context.call(wire.SEND_MAIL, "POST", f"{mailbox}/sendMail", body=encoded, final=True)
            return
        parts: list[tuple[str, str, bytes]] = []
        if len(encoded) <= wire.REQUEST_LIMIT:
            draft_mime = encoded
        else:
            draft_mime, parts = _split_large(data)
        log.info("graph: draft + %d Bcc + %d uploaded attachment(s)", len(bcc), len(parts))
        draft = context.call(wire.CREATE_DRAFT, "POST", f"{mailbox}/messages", body=draft_mime).json()
        draft_id = str(draft["id"])
        item = f"{mailbox}/messages/{draft_id}"
        try:
            if bcc:
                context.call(wire.SET_BCC, "PATCH", item, json={"bccRecipients": wire.recipients(bcc)})
            for name, content_type, content in parts:
                self._attach(context, item, name, content_type, content)
        except MailbotError:
            context.discard(item)
            raise
        context.call(wire.SEND_DRAFT, "POST", f"{item}/send", final=True)

    def _attach(self, context: _Context, item: str, name: str, content_type: str, content: bytes) -> None:
        if len(content) < wire.UPLOAD_FROM:
            body = wire.file_attachment(name, content_type, base64.b64encode(content).decode("ascii"))
            context.call(wire.ADD_ATTACHMENT, "POST", f"{item}/attachments", json=body)
            return
        session = context.call(
            wire.UPLOAD,
            "POST",
            f"{item}/attachments/createUploadSession",
            json=wire.upload_session_body(name, len(content), content_type),
        ).json()
        url = str(session["uploadUrl"])
        # Graph's upload URL carries a temporary credential in its query: never in a log line.
        logs.register_secret(url.split("?", 1)[1] if "?" in url else url.rsplit("/", 1)[-1])
        for first, last in wire.chunks(len(content)):
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {first}-{last}/{len(content)}",
            }
            # The upload URL carries its own authorisation: Graph refuses an Authorization header there.
            context.call(wire.UPLOAD, "PUT", url, body=content[first : last + 1], headers=headers, bearer=False)


class _Context:
    """One message's requests: token refresh on 401, Retry-After within the budget, unknown outcomes."""

    def __init__(self, graph: GraphSession, provider: TokenProvider, mailbox: str, sender: str, message_id: str):
        self.graph = graph
        self.provider = provider
        self.mailbox = mailbox
        self.sender = sender
        self.message_id = message_id

    def call(
        self,
        step: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        final: bool = False,
        bearer: bool = True,
    ) -> Any:
        """Make one request (with its retries) and return the response; raise what it means."""
        graph, settings = self.graph, self.graph.settings
        url = path if path.startswith("https://") else graph.base + path
        deadline = time.monotonic() + settings.timeout
        refreshed = refresh = False
        while True:
            sent_headers = dict(headers or {})
            if body is not None and "Content-Type" not in sent_headers:
                sent_headers["Content-Type"] = "text/plain"
            if bearer:
                sent_headers["Authorization"] = "Bearer " + self.provider(force_refresh=refresh)
                refresh = False
            outcome = self._exchange(method, url, body, json, sent_headers)
            if outcome.tls is not None:
                raise ServiceRefused(f"TLS certificate of {graph.where} could not be verified: {outcome.tls}", CA_HINT)
            if outcome.failure is not None:
                if not outcome.written:
                    raise TemporaryFailure(f"cannot reach {graph.where}: {outcome.failure}; nothing was sent")
                if not final:
                    raise TemporaryFailure(
                        f"{graph.where} did not answer to {step}: {outcome.failure}; nothing was sent"
                    )
                self.settle(step, outcome.failure)
                return None
            response = outcome.response
            error = wire.reply_error(
                step,
                response.status_code,
                response.content,
                graph.where,
                graph.login,
                response.headers.get("Retry-After"),
                self.sender,
            )
            if error is None:
                return response
            if isinstance(error, SignInRequired) and bearer and not refreshed:
                log.info("graph: token refused (401); refreshing once")
                refreshed = refresh = True
                continue
            if isinstance(error, wire.Throttled):
                if final and response.status_code == 504:
                    # A gateway timeout after the request was taken: it may have gone out.
                    started = time.monotonic()
                    found = self.lookup_until_found()
                    if found is True:
                        return response
                    if found is None:
                        raise self.unknown(step, "HTTP 504 Gateway Timeout")
                    deadline += time.monotonic() - started
                wait = error.retry_after if error.retry_after is not None else 2.0
                if time.monotonic() + wait > deadline:
                    if error.retry_after is not None:
                        error.message += (
                            f"; asked to wait {wait:g} s (Retry-After), beyond the time budget "
                            f"(MAILBOT_TIMEOUT={settings.timeout:g} s); nothing was sent"
                        )
                    raise error
                log.info("graph: HTTP %d, waiting %.1f s (Retry-After) before retrying", response.status_code, wait)
                time.sleep(wait)
                continue
            raise error

    def _exchange(self, method: str, url: str, body: bytes | None, json: Any, headers: dict[str, str]) -> _Outcome:
        """The I/O alone: requests' exceptions become an _Outcome, decisions happen in ``call``."""
        import requests

        graph = self.graph
        graph.requests += 1
        try:
            return _Outcome(graph.http.request(method, url, data=body, json=json, headers=headers))
        except requests.exceptions.SSLError as exc:
            return _Outcome(tls=_reason(exc))
        except (requests.exceptions.ConnectTimeout, requests.exceptions.InvalidURL) as exc:
            return _Outcome(failure=_reason(exc))
        except requests.exceptions.ReadTimeout:
            return _Outcome(failure=f"no answer within {graph.settings.timeout:g} s", written=True)
        except requests.exceptions.ConnectionError as exc:
            reason = _reason(exc)
            # Refused or unresolvable: the request never left. Anything else (reset, closed
            # without an answer) happened after it was written.
            early = any(word in reason for word in ("refused", "resolve", "Name or service", "unreachable"))
            return _Outcome(failure=reason, written=not early)
        except requests.exceptions.RequestException as exc:
            return _Outcome(failure=_reason(exc), written=True)

    # -- unknown outcomes ------------------------------------------------------------------

    def settle(self, step: str, failure: str) -> None:
        """The final request was written but no answer came: did the message arrive?"""
        where = self.graph.where
        found = self.lookup_until_found()
        if found is True:
            log.warning("%s did not answer to %s (%s), but the message is in Sent Items: sent", where, step, failure)
            return
        if found is False:
            raise TemporaryFailure(
                f"{where} did not answer to {step} ({failure}); Sent Items has no message {self.message_id}, "
                "so it was not sent"
            )
        raise self.unknown(step, failure)

    def unknown(self, step: str, failure: str) -> OutcomeUnknown:
        return OutcomeUnknown(
            f"{self.graph.where} did not answer to {step} ({failure}) after the message was handed over, and "
            f"Sent Items could not be checked: whether {self.message_id} was sent is unknown",
            hint=f"look for {self.message_id} in Sent Items before sending it again",
        )

    def lookup_until_found(self) -> bool | None:
        """True: in Sent Items. False: confirmed absent (asked until the time budget was used). None: cannot tell."""
        deadline = time.monotonic() + min(self.graph.settings.timeout, 10.0)
        while True:
            found = self.lookup()
            if found is not False or time.monotonic() + 1.0 > deadline:
                return found
            time.sleep(1.0)

    def lookup(self) -> bool | None:
        graph = self.graph
        url = f"{graph.base}{self.mailbox}/mailFolders/sentitems/messages"
        params = {"$filter": wire.sent_items_filter(self.message_id), "$select": "id,internetMessageId"}
        import requests

        graph.requests += 1
        try:
            response = graph.http.get(url, params=params, headers={"Authorization": "Bearer " + self.provider()})
        except requests.exceptions.RequestException as exc:
            log.info("graph: Sent Items lookup failed: %s", _reason(exc))
            return None
        if response.status_code != 200:
            log.info("graph: Sent Items lookup answered HTTP %d", response.status_code)
            return None
        try:
            values = response.json().get("value")
        except ValueError:
            return None
        return bool(values) if isinstance(values, list) else None

    def discard(self, item: str) -> None:
        """Delete a draft that will not be sent (best effort: a leftover draft is harmless)."""
        import requests

        self.graph.requests += 1
        try:
            self.graph.http.delete(self.graph.base + item, headers={"Authorization": "Bearer " + self.provider()})
        except (requests.exceptions.RequestException, MailbotError) as exc:
            log.info("graph: could not delete the draft: %s", exc)


def _message_id(data: bytes) -> str:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    return str(headers.get("Message-ID", "")).strip()


def _split_large(data: bytes) -> tuple[bytes, list[tuple[str, str, bytes]]]:
    """The MIME without its biggest attachments (base64, under the request limit) and those attachments."""
    msg = email.message_from_bytes(data, policy=email.policy.SMTP)
    if not isinstance(msg, EmailMessage) or not msg.is_multipart():
        raise ServiceRefused("the message is too large for one Microsoft Graph request and has no attachments")
    payload = list(msg.get_payload())
    attachments = sorted(
        (p for p in payload if isinstance(p, EmailMessage) and p.is_attachment()),
        key=lambda p: len(p.get_payload(decode=True) or b""),
        reverse=True,
    )
    taken: list[tuple[str, str, bytes]] = []
    encoded = base64.b64encode(data)
    for part in attachments:
        if len(encoded) <= wire.REQUEST_LIMIT:
            break
        payload.remove(part)
        msg.set_payload(payload)
        content = part.get_payload(decode=True)
        taken.append((part.get_filename() or "attachment", part.get_content_type(), bytes(content or b"")))
        encoded = base64.b64encode(msg.as_bytes(policy=email.policy.SMTP))
    if len(encoded) > wire.REQUEST_LIMIT:
        raise ServiceRefused("the message text alone is too large for Microsoft Graph (4 MB)")
    return encoded, taken


def _reason(exc: BaseException) -> str:
    """The innermost cause's text: requests wraps urllib3 wraps socket errors."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def connect(settings: Settings, providers: Callable[[list[str]], TokenProvider]) -> Iterator[GraphSession]:
    session = GraphSession(settings, providers)
    try:
        yield session
    finally:
        session.close()
        log.info("graph: %d HTTP request(s)", session.requests)
