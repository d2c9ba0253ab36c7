"""Scenario group ``cron``."""

from __future__ import annotations

import sys

from benchmarks.bench import EXPIRED_USER, USER, Bench


def run(bench: Bench) -> None:
    print("cron fetch: valid and expired access token", file=sys.stderr)
    for user, key, name in (
        (USER, "cron_valid", "cron fetch, nothing new, valid cached token"),
        (EXPIRED_USER, "cron_expired", "cron fetch, nothing new, expired access token"),
    ):
        bench.seed_folder(user, "INBOX", bench.sizes.cron_inbox)
        maildir = bench.home(user) / "cron-maildir"
        argv = bench.mailbot("fetch", "--maildir", str(maildir))
        if user == EXPIRED_USER:
            # Every token it gets lives 120 s, which MSAL deems expired (< 300 s left): a refresh per run.
            bench.idp.access_token_lifetime = 120
        try:
            bench.check(bench.run_once(argv, bench.env(user), 0.0), argv)  # first run: remembers where it is
            bench.measure(
                key,
                name,
                argv,
                bench.env(user),
                messages=bench.sizes.cron_inbox,
                warmup=False,
                timeline=True,
            )
        finally:
            bench.idp.access_token_lifetime = 3600
    # What a cron job that only looks costs: list -n 10 with a valid cached token.
    bench.measure(
        "list_10",
        "mailbot list -n 10, valid cached token",
        bench.mailbot("list", "-n", "10"),
        bench.env(USER),
        messages=bench.sizes.cron_inbox,
        warmup=False,
    )
