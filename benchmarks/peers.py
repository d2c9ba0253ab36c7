"""The clients mailbot is compared with, run as child processes by ``benchmarks/run.py``.

``python benchmarks/peers.py baseline FOLDER``
    What most IMAP tutorials do: ``imaplib.IMAP4_SSL`` (which asks CAPABILITY after the
    greeting), two-step ``AUTHENTICATE XOAUTH2``, ``SELECT``, ``SEARCH ALL``, then one
    ``FETCH n (RFC822)`` per message found, parsing each with :mod:`email`, and ``LOGOUT``.
``python benchmarks/peers.py imap_tools FOLDER [-n 50]``
    imap_tools (optional: ``pip install imap-tools``):
    ``MailBox(host, port, ssl_context=ctx).xoauth2(user, token, initial_folder=FOLDER)``, then
    ``fetch(limit=n, reverse=True, headers_only=True, mark_seen=False, bulk=True)``, and the
    context manager's ``LOGOUT``.

Both print one line per message (date, sender, subject), as ``mailbot list`` does. The
connection comes from the environment: BENCH_HOST, BENCH_PORT, BENCH_CA (PEM), BENCH_USER,
BENCH_TOKEN (an access token; kept off the command line). Exit 3: imap_tools missing.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import imaplib
import os
import ssl
import sys


def _context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=os.environ["BENCH_CA"])


def baseline(folder: str) -> int:
    host, port = os.environ["BENCH_HOST"], int(os.environ["BENCH_PORT"])
    user, token = os.environ["BENCH_USER"], os.environ["BENCH_TOKEN"]
    auth_string = f"user={user}\1auth=Bearer {token}\1\1".encode()
    imap = imaplib.IMAP4_SSL(host, port, ssl_context=_context())
    imap.authenticate("XOAUTH2", lambda _challenge: auth_string)
    imap.select(f'"{folder}"')
    _typ, data = imap.search(None, "ALL")
    count = 0
    for num in data[0].split():
        _typ, msg_data = imap.fetch(num, "(RFC822)")
        raw = next(part[1] for part in msg_data if isinstance(part, tuple))
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        print(num.decode(), msg["Date"], msg["From"], msg["Subject"], sep="  ")
        count += 1
    imap.logout()
    print(f"{count} messages", file=sys.stderr)
    return 0


def imap_tools_peer(folder: str, limit: int) -> int:
    try:
        from imap_tools import MailBox
    except ImportError:
        print("imap_tools is not installed: pip install imap-tools", file=sys.stderr)
        return 3
    host, port = os.environ["BENCH_HOST"], int(os.environ["BENCH_PORT"])
    user, token = os.environ["BENCH_USER"], os.environ["BENCH_TOKEN"]
    count = 0
    with MailBox(host, port, ssl_context=_context()).xoauth2(user, token, initial_folder=folder) as mailbox:
        for msg in mailbox.fetch(limit=limit, reverse=True, headers_only=True, mark_seen=False, bulk=True):
            print(msg.uid, msg.date_str, msg.from_, msg.subject, sep="  ")
            count += 1
    print(f"{count} messages", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("client", choices=("baseline", "imap_tools"))
    parser.add_argument("folder")
    parser.add_argument("-n", "--limit", type=int, default=50)
    args = parser.parse_args(argv)
    if args.client == "baseline":
        return baseline(args.folder)
    return imap_tools_peer(args.folder, args.limit)


if __name__ == "__main__":
    sys.exit(main())
