"""Before a long operation (fetch, outbox) the access token must have enough life left,
so Exchange does not end the session mid-run (AccessTokenExpired)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Account

MESSAGE = b"From: a@example.com\r\nSubject: hi\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"


def test_fetch_and_outbox_refresh_a_token_that_would_expire_mid_run(account: Account, tmp_path: Path) -> None:
    account.idp.access_token_lifetime = 900  # valid for MSAL (> 5 min) but less than 20 minutes
    account.login()
    account.seed(MESSAGE)
    account.idp.reset_counts()
    assert account.run("list").returncode == 0
    assert account.idp.counts().get("total", 0) == 0  # a short command uses the cached token

    fetched = account.run("fetch", "--backfill", "1", "--maildir", str(tmp_path / "md"))
    assert fetched.returncode == 0, fetched.stderr
    assert account.idp.counts().get("token:refresh_token") == 1

    account.idp.reset_counts()
    queue = tmp_path / "queue"
    queued = account.run("send", "--to", "x@elsewhere.test", "--subject", "q", "--body", "b", "--queue", str(queue))
    assert queued.returncode == 0, queued.stderr
    sent = account.run("outbox", str(queue))
    assert sent.returncode == 0, sent.stderr
    assert account.idp.counts().get("token:refresh_token") == 1

    account.idp.access_token_lifetime = 3600  # a token good for an hour is kept
    account.run("fetch", "--maildir", str(tmp_path / "md"))  # refreshes once more (900 s token)
    account.idp.reset_counts()
    again = account.run("fetch", "--maildir", str(tmp_path / "md"))
    assert again.returncode == 0, again.stderr
    assert account.idp.counts().get("total", 0) == 0
