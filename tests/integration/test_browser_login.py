"""Authorization code + PKCE sign-ins (login --browser, --paste, --print-url/--redirect-url)
with real MSAL against the stand-in's /authorize and token endpoints, and a scripted browser."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tests.conftest import MAILBOT, Account

BROWSER_SCRIPT = """\
import os, ssl, sys, urllib.error, urllib.request

class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

context = ssl.create_default_context(cafile=os.environ["MAILBOT_CA_BUNDLE"])
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), Stay)
try:
    opener.open(sys.argv[1], timeout=10)
    sys.exit("no redirect")
except urllib.error.HTTPError as answer:
    location = answer.headers["Location"]
with open(os.environ["BROWSER_LOG"], "a") as log:
    log.write(location + "\\n")
if os.environ.get("BROWSER_FOLLOW") == "1":
    urllib.request.urlopen(location, timeout=10).read()
"""


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(("error:", "hint:"))]


def authorize(url: str, ca_pem: Path) -> str:
    """What a browser does at the sign-in page: the address it is sent to afterwards."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    context = ssl.create_default_context(cafile=str(ca_pem))
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), Stay)
    try:
        opener.open(url, timeout=10)
    except urllib.error.HTTPError as answer:
        assert answer.code == 302
        return str(answer.headers["Location"])
    raise AssertionError("the sign-in page did not redirect")


def browser_env(account: Account, follow: bool = True) -> dict[str, str]:
    script = account.home / "browser.py"
    script.write_text(BROWSER_SCRIPT)
    return {
        "BROWSER": f"{sys.executable} {script} %s",
        "BROWSER_LOG": str(account.home / "browser.log"),
        "BROWSER_FOLLOW": "1" if follow else "0",
    }


def assert_signed_in_and_refreshable(account: Account) -> None:
    cache = json.loads(account.cache.read_text())
    assert [a["username"] for a in cache["Account"].values()] == [account.address]
    assert cache["RefreshToken"]
    account.idp.reset_counts()
    listed = account.run("list")
    assert listed.returncode == 0, listed.stderr
    assert account.idp.counts().get("total", 0) == 0  # the same cache and silent path as device code
    whoami = account.run("whoami")
    assert whoami.stdout.splitlines()[0] == f"signed in as {account.address}"


def test_login_browser_end_to_end(account: Account) -> None:
    result = account.run("login", "--browser", "--timeout", "30", env=browser_env(account))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == f"Signed in as {account.address}."
    assert result.stdout == ""
    counts = account.idp.counts()
    assert counts.get("authorize") == 1 and counts.get("token:authorization_code") == 1
    assert "token:device_code" not in counts
    landed = (account.home / "browser.log").read_text().strip()
    assert landed.startswith("http://localhost:") and "code=" in landed
    code = account.idp.authorization_codes[-1]
    assert code.redeemed and code.username == account.address
    assert code.redirect_uri.startswith("http://localhost:")
    assert oct(account.cache.stat().st_mode & 0o777) == "0o600"
    assert_signed_in_and_refreshable(account)
    # The refresh token from this sign-in works like the device code's.
    account.idp.reset_counts()
    cache = json.loads(account.cache.read_text())
    for entry in cache["AccessToken"].values():
        entry["expires_on"] = str(int(time.time()) - 10)
    account.cache.write_text(json.dumps(cache))
    assert account.run("list").returncode == 0
    assert account.idp.counts().get("token:refresh_token") == 1


def test_login_browser_times_out(account: Account) -> None:
    result = account.run("login", "--browser", "--timeout", "1", env={"BROWSER": "true"})
    assert result.returncode == 77
    lines = error_lines(result.stderr)
    assert lines[0].startswith("error: no sign-in arrived at http://localhost:")
    assert lines[0].endswith(" within 1 s")
    assert lines[1] == 'hint: run "python mailbot.py login --paste" if the browser is on another machine'
    assert not account.cache.exists()


def test_login_browser_fixed_port_for_ssh(account: Account) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = browser_env(account) | {"OUTLOOK_REDIRECT_URI": f"http://localhost:{port}"}
    result = account.run("login", "--browser", "--timeout", "30", env=env)
    assert result.returncode == 0, result.stderr
    assert f"ssh -L {port}:localhost:{port} this-host" in result.stderr
    assert account.idp.authorization_codes[-1].redirect_uri == f"http://localhost:{port}"


def test_login_paste_one_step(account: Account, ca_pem: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(MAILBOT), "login", "--paste"],
        cwd=account.home,
        env=account.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdin is not None
    shown = []
    while not shown or not shown[-1].rstrip().endswith("paste it here:"):
        shown.append(proc.stderr.readline())
        assert shown[-1], "".join(shown)
    url = next(line.strip() for line in shown if line.startswith("https://"))
    assert url.startswith(account.idp.authority("organizations") + "/oauth2/v2.0/authorize?")
    params = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert params["code_challenge_method"] == ["S256"] and params["redirect_uri"] == ["http://localhost"]
    landed = authorize(url, ca_pem)
    assert landed.startswith("http://localhost?code=") or landed.startswith("http://localhost/?code=")
    out, err = proc.communicate(landed + "\n", timeout=60)
    assert out == ""
    text = "".join(shown) + err
    assert proc.returncode == 0, text
    assert "that is expected" in text and "Warning" not in text
    assert text.splitlines()[-1] == f"Signed in as {account.address}."
    assert_signed_in_and_refreshable(account)


def test_login_print_url_then_redirect_url(account: Account, ca_pem: Path) -> None:
    first = account.run("login", "--print-url")
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    assert "\n" not in url and "code_challenge=" in url
    state_file = account.cache.with_name(account.cache.name + ".login-flow")
    assert oct(state_file.stat().st_mode & 0o777) == "0o600"
    assert "code_verifier" in json.loads(state_file.read_text())["flow"]
    landed = authorize(url, ca_pem)
    second = account.run("login", "--redirect-url", "-", input=landed + "\n")
    assert second.returncode == 0, second.stderr
    assert not state_file.exists()
    assert_signed_in_and_refreshable(account)
    # The same answer again: the flow is gone.
    again = account.run("login", "--redirect-url", landed)
    assert again.returncode == 77
    assert error_lines(again.stderr) == [
        "error: no sign-in was started with --print-url",
        'hint: run "python mailbot.py login --print-url" again',
    ]


def test_redirect_url_stale_or_tampered_is_refused(account: Account, ca_pem: Path) -> None:
    url = account.run("login", "--print-url").stdout.strip()
    state_file = account.cache.with_name(account.cache.name + ".login-flow")
    landed = authorize(url, ca_pem)
    parts = urllib.parse.urlsplit(landed)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["state"] = query["state"][:-2] + ("xx" if not query["state"].endswith("xx") else "yy")
    tampered = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    result = account.run("login", "--redirect-url", tampered)
    assert result.returncode == 77
    assert error_lines(result.stderr) == [
        "error: the address belongs to another sign-in (its state does not match); nothing was saved",
        'hint: start again with "python mailbot.py login --print-url" and use the address it gives',
    ]
    assert not account.cache.exists()
    assert account.idp.counts().get("token:authorization_code") is None  # refused before redeeming

    record = json.loads(state_file.read_text())
    record["created"] -= 700
    state_file.write_text(json.dumps(record))
    stale = account.run("login", "--redirect-url", landed)
    assert stale.returncode == 77
    assert error_lines(stale.stderr) == [
        "error: the sign-in started with --print-url is stale (12 minutes old; the limit is 10)",
        'hint: run "python mailbot.py login --print-url" again',
    ]
    assert not account.cache.exists()


def test_conditional_access_at_authorize_gets_the_hint(account: Account, ca_pem: Path) -> None:
    account.idp.authorize_error = 53003
    url = account.run("login", "--print-url").stdout.strip()
    landed = authorize(url, ca_pem)
    result = account.run("login", "--redirect-url", landed)
    assert result.returncode == 77
    lines = error_lines(result.stderr)
    assert lines[0].startswith(f"error: sign-in for {account.address} failed: AADSTS53003: Access has been blocked")
    assert lines[1] == (
        'hint: Conditional Access blocks this sign-in (often: device code flow not allowed): run "python mailbot.py '
        'login --browser", or "python mailbot.py login --paste" on a machine without a browser; if that is blocked '
        "too, ask your admin"
    )
    assert os.path.exists(account.cache) is False


def test_device_code_blocked_suggests_browser(account: Account) -> None:
    account.idp.interval = 0
    account.idp.error_next("token:device_code", 530033)
    result = account.run("login")
    assert result.returncode == 77
    assert "AADSTS530033" in error_lines(result.stderr)[0]
    assert 'login --browser", or "python mailbot.py login --paste"' in error_lines(result.stderr)[1]


def test_redirect_url_for_another_account_is_refused(account: Account, ca_pem: Path) -> None:
    url = account.run("login", "--print-url").stdout.strip()
    landed = authorize(url, ca_pem)
    result = account.run("login", "--redirect-url", landed, env={"OUTLOOK_USERNAME": "someone-else@example.com"})
    assert result.returncode == 77
    assert error_lines(result.stderr) == [
        f"error: the sign-in was started for another username ({account.address})",
        'hint: run "python mailbot.py login --print-url" again',
    ]
    assert not account.cache.exists()
    assert account.run("login", "--redirect-url", landed).returncode == 0  # the right account still can
