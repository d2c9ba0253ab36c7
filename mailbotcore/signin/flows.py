"""Sign-in where device code is blocked: authorization code with PKCE, on MSAL's own helpers.

Three ways to carry the browser's answer back to mailbot, all ending in the same token
cache, account record and silent refresh as the device-code sign-in:

* ``login --browser``: a one-shot listener on the loopback redirect URI
  (``http://localhost:<port>``) receives the redirect; the browser is opened for the user
  (``BROWSER`` / Python's ``webbrowser``). Over SSH: a fixed port in OUTLOOK_REDIRECT_URI
  and ``ssh -L <port>:localhost:<port> host``.
* ``login --paste``: the user opens the address on any device and pastes back the address
  the browser ended on (the localhost page failing to load is expected).
* ``login --print-url`` then ``login --redirect-url URL``: the same in two runs, for
  scripts; the flow state (PKCE verifier, state, nonce) waits in a 0600 file next to the
  token cache and is refused when stale or when the URL belongs to another sign-in.

MSAL builds the request (``initiate_auth_code_flow``: PKCE S256, state, nonce) and
redeems the code (``acquire_token_by_auth_code_flow``: checks state and nonce).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import IO, Any

from mailbotcore.errors import SignInRequired, TemporaryFailure, UsageError
from mailbotcore.signin.authenticator import SCOPES, Authenticator
from mailbotcore.signin.cache import http_cache_to_json
from mailbotcore.signin.entra import describe_error
from mailbotcore.store import files as fileutil
from mailbotcore.wire.text import clean_line

log = logging.getLogger("mailbot.auth")
FLOW_LIFETIME = 600  # s: Entra's authorization codes live 10 minutes; a flow older than that is stale
DONE_PAGE = (
    b"<!doctype html><html><head><meta charset='utf-8'><title>mailbot</title></head>"
    b"<body><p>mailbot received the sign-in. You can close this window.</p></body></html>"
)


def flow_file(auth: Authenticator) -> Path:
    return auth.store.path.with_name(auth.store.path.name + ".login-flow")


class CodeFlow:
    """One authorization-code sign-in for ``auth``'s account."""

    def __init__(self, auth: Authenticator, out: IO[str] | None = None) -> None:
        self.auth = auth
        self.settings = auth.settings
        self.out = out or sys.stderr
        with auth.store.lock():
            self.cache = auth.store.to_cache(auth.store.read_state())
            self.http_cache = auth.store.load_http_cache()
        self.before = http_cache_to_json(self.http_cache)
        self.app = auth._app(self.cache, self.http_cache)

    def _start(self, redirect_uri: str) -> dict[str, Any]:
        import warnings

        with warnings.catch_warnings():
            # MSAL recommends response_mode=form_post; a pasted address can only carry a query.
            warnings.filterwarnings("ignore", message="response_mode='form_post'")
            flow = self.auth._call(
                lambda: self.app.initiate_auth_code_flow(
                    SCOPES, redirect_uri=redirect_uri, login_hint=self.auth.username, prompt="select_account"
                )
            )
        if "auth_uri" not in flow:
            message, hint = describe_error(flow, self.settings.command("login"))
            raise SignInRequired(f"sign-in for {self.auth.username} could not start: {message}", hint=hint)
        return dict(flow)

    def _finish(self, flow: dict[str, Any], response: dict[str, str]) -> str:
        if response.get("error"):
            result = dict(response)
            codes = str(response.get("error_codes", "")).strip("[]")
            if codes.isdigit():
                result["error_codes"] = [int(codes)]  # type: ignore[assignment]
            message, hint = describe_error(result, self.settings.command("login"))
            raise SignInRequired(f"sign-in for {self.auth.username} failed: {message}", hint=hint)
        if "code" not in response:
            raise SignInRequired(
                "the address has no sign-in code in it",
                hint="paste the whole address from the browser's address bar, starting with "
                f"{flow.get('redirect_uri', self.settings.redirect_uri)}/?code=",
            )
        if response.get("state") != flow.get("state"):
            raise SignInRequired(
                "the address belongs to another sign-in (its state does not match); nothing was saved",
                hint=f'start again with "{self.settings.command("login --print-url")}" and use the address it gives',
            )
        try:
            result = self.auth._call(lambda: self.app.acquire_token_by_auth_code_flow(flow, response, scopes=SCOPES))
        except ValueError as exc:  # MSAL: state or nonce mismatch
            raise SignInRequired(f"the sign-in answer was refused: {exc}; nothing was saved") from exc
        if "access_token" not in result:
            message, hint = describe_error(result, self.settings.command("login"))
            raise SignInRequired(f"sign-in for {self.auth.username} failed: {message}", hint=hint)
        return self.auth._save_sign_in(result, self.cache, self.http_cache, self.before)

    # -- login --browser -------------------------------------------------------------------

    def browser(self, timeout: float) -> str:
        configured = urllib.parse.urlsplit(self.settings.redirect_uri)
        try:
            server = _Listener(("127.0.0.1", configured.port or 0), _Handler)
        except OSError as exc:
            raise TemporaryFailure(
                f"cannot listen on 127.0.0.1 port {configured.port} for the sign-in redirect: {exc.strerror or exc}",
                hint="another program uses that port: pick another one in OUTLOOK_REDIRECT_URI",
            ) from exc
        with server:
            port = server.server_address[1]
            redirect_uri = f"http://localhost:{port}"
            flow = self._start(redirect_uri)
            print(
                f"Opening the sign-in page for {self.auth.username} in your browser. If none opens, open this "
                f"address yourself (over SSH: ssh -L {port}:localhost:{port} this-host, then open it on your "
                f"computer):\n{flow['auth_uri']}",
                file=self.out,
                flush=True,
            )
            threading.Thread(target=_open_browser, args=(flow["auth_uri"],), daemon=True).start()
            deadline = time.monotonic() + timeout
            while server.response is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SignInRequired(
                        f"no sign-in arrived at {redirect_uri} within {timeout:g} s",
                        hint=f'run "{self.settings.command("login --paste")}" if the browser is on another machine',
                    )
                server.timeout = min(left, 1.0)
                server.handle_request()
        return self._finish(flow, server.response)

    # -- login --paste, --print-url, --redirect-url ------------------------------------------

    def paste(self, stdin: IO[str]) -> str:
        flow = self._start(self.settings.redirect_uri)
        print(
            f"To sign in as {self.auth.username}, open this address in a browser on any device:\n"
            f"{flow['auth_uri']}\n"
            f"After signing in, the browser goes to {self.settings.redirect_uri}/?code=... and shows an error "
            'such as "This site can\'t be reached": that is expected. Copy the whole address from its address '
            "bar and paste it here:",
            file=self.out,
            flush=True,
        )
        line = stdin.readline()
        if not line.strip():
            raise SignInRequired("no address was pasted; nothing was saved")
        return self._finish(flow, parse_redirect(line))

    def print_url(self) -> str:
        flow = self._start(self.settings.redirect_uri)
        record = {
            "version": 1,
            "created": time.time(),
            "username": self.auth.username,
            "client_id": self.settings.client_id,
            "authority": self.settings.authority,
            "flow": flow,
        }
        fileutil.write_private(flow_file(self.auth), json.dumps(record).encode(), "sign-in state file")
        return str(flow["auth_uri"])

    def redeem(self, url: str) -> str:
        path = flow_file(self.auth)
        again = f'run "{self.settings.command("login --print-url")}" again'
        data = fileutil.read_private(path, "sign-in state file")  # no symlink; ours, regular, private
        if data is None:
            raise SignInRequired("no sign-in was started with --print-url", hint=again)
        try:
            record = json.loads(data.decode("utf-8"))
            flow = record["flow"]
            created = float(record["created"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SignInRequired(f"the sign-in state file {path} is unusable: {exc}", hint=again) from exc
        for key, ours in (
            ("username", self.auth.username),
            ("client_id", self.settings.client_id),
            ("authority", self.settings.authority),
        ):
            if str(record.get(key, "")).lower() != str(ours).lower():
                raise SignInRequired(
                    f"the sign-in was started for another {key.replace('_', ' ')} ({clean_line(str(record.get(key)))})",
                    hint=again,
                )
        age = time.time() - created
        if not 0 <= age <= FLOW_LIFETIME:
            path.unlink(missing_ok=True)
            raise SignInRequired(
                f"the sign-in started with --print-url is stale ({age / 60:.0f} minutes old; "
                f"the limit is {FLOW_LIFETIME // 60})",
                hint=again,
            )
        token = self._finish(flow, parse_redirect(url))
        path.unlink(missing_ok=True)
        return token


def parse_redirect(url: str) -> dict[str, str]:
    """The query (or fragment) parameters of the address the browser ended on."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not (parts.query or parts.fragment):
        raise UsageError("that is not the address the browser ended on (it should start with http://localhost)")
    query = parts.query or parts.fragment
    return {key: values[-1] for key, values in urllib.parse.parse_qs(query).items()}


def _open_browser(url: str) -> None:
    import webbrowser

    try:
        if not webbrowser.open(url):
            log.info("no browser could be opened; open the address shown yourself")
    except Exception as exc:  # a broken BROWSER setting must not end the sign-in
        log.info("opening a browser failed: %s", exc)


class _Listener(HTTPServer):
    response: dict[str, str] | None = None

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()


class _Handler(BaseHTTPRequestHandler):
    server: _Listener

    def do_GET(self) -> None:
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).items()}
        if "code" not in params and "error" not in params:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.server.response = params
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(DONE_PAGE)))
        self.end_headers()
        self.wfile.write(DONE_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the query holds the sign-in code
