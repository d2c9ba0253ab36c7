"""The foundation's promise: MSAL signs in at the stand-in, Postfix accepts the token, Dovecot shows the mail."""

from __future__ import annotations

import json

from tests.conftest import Account


def test_login_send_and_list_round_trip(account: Account) -> None:
    login = account.login()
    assert login.stdout == ""  # prompts and progress go to stderr
    assert "enter the code" in login.stderr
    counts = account.idp.counts()
    assert counts["devicecode"] == 1
    assert counts["token:device_code"] >= 1

    sent = account.run("send", "--to", account.address, "--subject", "hello from the test bed", "--body", "body text")
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.strip()
    assert message_id.startswith("<") and message_id.endswith(">")

    account.servers.wait_for(lambda: account.servers.messages(account.address), what="delivery")
    listed = account.run("list", "--json")
    assert listed.returncode == 0, listed.stderr
    items = json.loads(listed.stdout)
    assert [item["subject"] for item in items] == ["hello from the test bed"]
    assert items[0]["message_id"] == message_id
    assert items[0]["seen"] is False
