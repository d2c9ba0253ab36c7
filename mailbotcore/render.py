"""Results to output: text for people, one JSON document, or NDJSON (one object per line).

The one place that formats what commands return. Text that came from outside (server
replies, message headers, file names) is shown through ``wire.text.clean_line``; JSON is
written with terminal-unsafe characters escaped (``wire.text.json_safe``). JSON field names come from the result
dataclasses (``from_`` is written ``from``), so every command that shows a message uses
the same names: ``uid``, ``folder``, ``date``, ``from``, ``from_address``, ``subject``,
``message_id``, ``size`` (README → Output formats lists them all).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from mailbotcore.mail.headers import MessageSummary, format_list_line
from mailbotcore.results import (
    Check,
    FetchedRecord,
    LoginResult,
    LogoutResult,
    Notice,
    OutboxRecord,
    ReadResult,
    SendResult,
    SignInStatus,
    TokenResult,
)
from mailbotcore.wire.text import clean_line, json_safe

TEXT, JSON, NDJSON = "text", "json", "ndjson"


def record(result: Any) -> dict[str, Any]:
    """A result as a JSON object: dataclass fields, ``from_`` → ``from``, dates as ISO 8601."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        if isinstance(value, bytes) or (item.name == "error" and not isinstance(value, (str, type(None)))):
            continue
        out[item.name.rstrip("_")] = _jsonable(value)
    if isinstance(result, MessageSummary):
        out["seen"] = result.seen
    if isinstance(result, SignInStatus) and result.access_token_expires is not None:
        out["access_token_expires"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(result.access_token_expires))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Renderer:
    """Writes results to ``out`` (stdout) and notices to ``err`` (stderr), in one format."""

    def __init__(self, out: IO[str], err: IO[str], fmt: str = TEXT, quiet: bool = False) -> None:
        self.out = out
        self.err = err
        self.format = fmt
        self.quiet = quiet

    # -- streams and documents -------------------------------------------------------------

    def stream(self, results: Iterable[Any]) -> None:
        """Print results as they come (fetch, outbox, doctor): one line or one object each."""
        for result in results:
            self.one(result)

    def document(self, results: list[Any]) -> None:
        """A whole list: a JSON array, or one text line each (list)."""
        if self.format == TEXT:
            for result in results:
                self.one(result)
            return
        self._json([record(r) for r in results])

    def one(self, result: Any) -> None:
        if isinstance(result, Notice):
            if not self.quiet:
                print(clean_line(result.text), file=self.err, flush=True)
            return
        if self.format != TEXT and not isinstance(result, (ReadResult, TokenResult)):
            if isinstance(result, OutboxRecord) and result.status == "failed":
                self._failed(result)
            self._json(record(result))
            return
        text = getattr(self, f"_text_{type(result).__name__}")
        text(result)

    def _json(self, value: Any) -> None:
        self.out.write(json_safe(json.dumps(value, ensure_ascii=False)) + "\n")
        self.out.flush()

    # -- text forms --------------------------------------------------------------------------

    def _text_MessageSummary(self, summary: MessageSummary) -> None:
        width = shutil.get_terminal_size().columns if self.out.isatty() else None
        print(format_list_line(summary, width), file=self.out)

    def _text_ReadResult(self, result: ReadResult) -> None:
        if result.show_raw:
            self.out.flush()
            self.out.buffer.write(result.raw)  # type: ignore[attr-defined]
            self.out.buffer.flush()  # type: ignore[attr-defined]
        else:
            print(result.text, file=self.out)
        for path in result.saved:
            print(f"saved {clean_line(str(path))}", file=self.err)

    def _text_SendResult(self, result: SendResult) -> None:
        if result.status == "dry-run":
            self.out.flush()
            self.out.buffer.write(result.data)  # type: ignore[attr-defined]
            self.out.buffer.flush()  # type: ignore[attr-defined]
        elif result.status == "queued":
            print(result.queued_file, file=self.out)
        else:
            print(result.message_id, file=self.out)

    def _text_FetchedRecord(self, result: FetchedRecord) -> None:
        """Without --json, fetch is quiet on stdout: the Maildir and the handler are the output."""

    def _text_OutboxRecord(self, result: OutboxRecord) -> None:
        if result.status == "failed":
            self._failed(result)
        else:
            print(f"{result.status}: {clean_line(result.file)}", file=self.out, flush=True)

    def _failed(self, result: OutboxRecord) -> None:
        first = (result.error or "").splitlines()[0] if result.error else ""
        print(f"failed: {clean_line(result.file)}: {clean_line(first)}", file=self.err, flush=True)

    def _text_TokenResult(self, result: TokenResult) -> None:
        print(result.value, file=self.out, flush=True)

    def _text_SignInStatus(self, status: SignInStatus) -> None:
        expires = status.access_token_expires
        if status.mode == "app-only":
            print(f"app-only     app {status.client_id} ({status.credential}), no person signed in", file=self.out)
            print(f"mailbox      {status.mailbox}", file=self.out)
        else:
            print(f"signed in as {status.username}", file=self.out)
            if status.mailbox and status.mailbox.lower() != status.username.lower():
                print(f"mailbox      {status.mailbox}", file=self.out)
        print(f"authority    {status.authority}", file=self.out)
        if expires is None:
            print("access token none cached (the next command refreshes it)", file=self.out)
        elif expires <= time.time():
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(expires))
            print(f"access token expired at {when} (the next command refreshes it)", file=self.out)
        else:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(expires))
            print(f"access token valid until {when}", file=self.out)
        if status.mode != "app-only":
            refresh = "present" if status.refresh_token else "missing: run login"
            if status.refresh_token and status.refresh_token_last_used:
                days = (time.time() - status.refresh_token_last_used) / 86400
                refresh += f", last used {days:.0f} days ago (it expires after 90 days unused)"
            print(f"refresh token {refresh}", file=self.out)
        encrypted = "encrypted" if status.cache_encrypted else "plain JSON"
        print(f"token cache  {status.token_cache} ({encrypted})", file=self.out)

    def _text_LoginResult(self, result: LoginResult) -> None:
        if result.sign_in_url is not None:
            print(result.sign_in_url, file=self.out, flush=True)
            print(
                f"Open that address, sign in as {result.username}, then run login --redirect-url with the address "
                "the browser ends on (a localhost page that fails to load is expected; it works for 10 minutes).",
                file=self.err,
                flush=True,
            )
            return
        print(f"Signed in as {result.username}.", file=self.err, flush=True)

    def _text_LogoutResult(self, result: LogoutResult) -> None:
        if result.moved_aside:
            print(
                f"The token cache {result.token_cache} was unreadable: it was moved to {result.moved_aside}; "
                f"{result.username} is signed out.",
                file=self.out,
            )
        elif result.removed:
            print(
                f"Signed out {result.username}; the other accounts in {result.token_cache} were kept.",
                file=self.out,
            )
        else:
            print(f"{result.username} was not signed in.", file=self.out)

    def _text_Check(self, check: Check) -> None:
        label = f"{check.status:<4} {clean_line(check.label)}"
        print(label + (f": {clean_line(check.detail)}" if check.detail else ""), file=self.out, flush=True)
        if check.hint:
            print(f"     hint: {clean_line(check.hint)}", file=self.out, flush=True)
