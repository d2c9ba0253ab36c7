"""Scenario group ``outbox``."""

from __future__ import annotations

import random
import re
import shutil
import sys

from benchmarks import mailgen
from benchmarks.bench import SINK, USER, Bench


def run(bench: Bench) -> None:
    print("outbox", file=sys.stderr)
    n = bench.sizes.outbox
    queue = bench.root / "outbox"
    rng = random.Random(5)
    messages = [mailgen.outgoing(USER, SINK, i, rng) for i in range(n)]
    log = bench.servers.dir / "logs" / "postfix.log"

    def prepare() -> None:
        shutil.rmtree(queue, ignore_errors=True)
        queue.mkdir()
        for i, raw in enumerate(messages):
            (queue / f"{i:020d}-bench.eml").write_bytes(raw)
        bench._log_offset = log.stat().st_size if log.exists() else 0

    sc = bench.measure(
        "outbox",
        f"mailbot outbox, {n} queued messages",
        bench.mailbot("outbox", str(queue)),
        bench.env(),
        messages=n,
        prepare=prepare,
        timeline=True,
    )
    sent = len(list((queue / "sent").glob("*.eml")))
    sc.extra["sent"] = sent
    sc.extra["message_bytes"] = sum(len(m) for m in messages)
    sc.extra["ms_per_message_no_delay"] = round(1000 * sc.wall_s_no_delay / n, 2)
    sc.extra["ms_per_message_delay"] = round(1000 * sc.wall_s_delay / n, 2)
    if sc.effective_rts is not None:
        sc.extra["rts_per_message"] = round(sc.effective_rts / n, 2)
    # Authentications: the connection is TLS, so the proxy cannot see commands; a -vv run at
    # delay 0 logs every command mailbot sends (tokens redacted).
    argv = bench.mailbot("-vv", "outbox", str(queue))
    r = bench.check(bench.run_once(argv, bench.env(), 0.0, prepare), argv)
    text = r.stderr.decode("utf-8", "replace")
    # smtplib's debug lines: "send: 'AUTH XOAUTH2 <redacted>'" per authentication.
    sc.extra["authentications"] = len(re.findall(r"send: .?.?'AUTH ", text))
    sc.extra["connections_verbose_run"] = r.proxies["smtp"].connections
    sc.extra["default_pacing"] = "30 messages/minute (MAILBOT_SEND_RATE default): one every 2 s"
    sc.extra["default_pacing_minimum_s"] = round((n - 1) * 60 / 30, 1)
