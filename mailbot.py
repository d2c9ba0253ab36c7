#!/usr/bin/env python3
"""mailbot: read and send Outlook.com / Microsoft 365 mail from a terminal or cron.

This module is the command line: it parses arguments, loads settings, runs one command,
and is the only place that turns a MailbotError into an ``error:`` line on stderr and a
sysexits exit code. Heavy imports (msal, requests) happen inside the commands, so
``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import errors

__version__ = "0.1.0"
PROG = "python mailbot.py"

EXIT_CODES = """\
exit codes:
  0   success
  64  usage error (bad or missing arguments)
  65  bad input data (invalid address, header injection, unknown UID or folder)
  66  an input file is missing or unreadable
  69  service refused permanently (certificate, SMTP AUTH disabled, sender not allowed)
  73  an output file (attachment, Maildir, queue entry) cannot be created
  75  temporary failure (network, timeout, 4xx, another run holds the lock): retry later
  77  sign-in required or token refused: run "python mailbot.py login"
  78  configuration missing or malformed
  130 interrupted (Ctrl-C)
"""


class Parser(argparse.ArgumentParser):
    """argparse with sysexits: usage errors exit 64, not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(errors.EX_USAGE)


def _common_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Options accepted before and after the command name (``mailbot -v list`` = ``mailbot list -v``)."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--env-file", metavar="PATH", help="read settings from this .env file", **default)
    parser.add_argument(
        "-v", "--verbose", action="count", help="log progress on stderr; -vv adds HTTP details", **default
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="log errors only", **default)
    parser.add_argument(
        "--mailbox",
        metavar="ADDRESS",
        help="open this shared mailbox with your sign-in (OUTLOOK_MAILBOX)",
        **default,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=PROG,
        description="Read and send Outlook.com / Microsoft 365 mail over IMAP and SMTP with OAuth 2 "
        "(device-code sign-in). Without a command, lists the newest messages.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mailbot {__version__}")
    _common_options(parser, suppress=False)
    parser.set_defaults(verbose=0, quiet=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(name: str, help_text: str, handler: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common_options(p, suppress=True)
        p.set_defaults(handler=handler)
        return p

    command("login", "sign in with a device code and save the tokens", "commands:login")
    command("logout", "remove this account's tokens from the cache", "commands:logout")
    whoami = command("whoami", "show who is signed in and until when (no network)", "commands:whoami")
    whoami.add_argument("--json", action="store_true", help="print JSON")

    lst = command("list", "list the newest messages of a folder (read-only)", "reading:list_command")
    _list_options(lst)

    read = command("read", "show one message by UID", "reading:read_command")
    read.add_argument("uid", type=_positive_int, metavar="UID", help="the message UID (from list)")
    read.add_argument("--folder", default="INBOX", help="folder name (default INBOX)")
    read.add_argument("--raw", action="store_true", help="write the exact RFC 822 bytes to stdout")
    read.add_argument(
        "--save-attachments", metavar="DIR", help="save attachments into DIR (never overwrites)"
    )
    read.add_argument(
        "--mark-read", action="store_true", help="mark the message as read (default: untouched)"
    )

    send = command("send", "send a message (or queue it with --queue)", "sending:send_command")
    _send_options(send)

    fetch = command(
        "fetch", "process new messages exactly once into a Maildir and/or a command", "fetching:fetch_command"
    )
    _fetch_options(fetch)

    outbox = command("outbox", "send every message queued in DIR", "outbox:outbox_command")
    outbox.add_argument("directory", metavar="DIR", help="the queue folder (see send --queue)")
    outbox.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to SECONDS for another outbox run to finish (default: exit 75 at once)",
    )
    outbox.add_argument("--json", action="store_true", help="print one JSON object per message")

    command(
        "doctor",
        "check configuration, sign-in, IMAP and SMTP step by step (sends nothing)",
        "doctor:doctor_command",
    )
    return parser


def _list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folder", default="INBOX", help="folder name (default INBOX; non-ASCII names work)")
    p.add_argument("-n", "--limit", type=_positive_int, default=10, help="how many messages (default 10)")
    p.add_argument("--unseen", action="store_true", help="only unread messages")
    p.add_argument("--since", metavar="YYYY-MM-DD", type=_iso_date, help="only messages since this date")
    p.add_argument("--from", dest="from_", metavar="TEXT", help="only messages whose From contains TEXT")
    p.add_argument("--subject", metavar="TEXT", help="only messages whose Subject contains TEXT")
    p.add_argument("--json", action="store_true", help="print a JSON array")


def _send_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--to", action="append", default=[], metavar="ADDR", help="recipient (repeatable, or a, b)"
    )
    p.add_argument("--cc", action="append", default=[], metavar="ADDR", help="copy recipient (repeatable)")
    p.add_argument("--bcc", action="append", default=[], metavar="ADDR", help="blind copy (envelope only)")
    p.add_argument("--subject", default="", help="the subject")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="the text body")
    body.add_argument("--body-file", metavar="PATH", help="read the text body from PATH")
    p.add_argument("--html-file", metavar="PATH", help="an HTML body (a text alternative is added)")
    p.add_argument("--attach", action="append", default=[], metavar="PATH", help="attach a file (repeatable)")
    p.add_argument("--reply-to", metavar="ADDR", help="Reply-To address")
    p.add_argument(
        "--from",
        dest="from_",
        metavar="ADDR",
        help="send as this address (shared mailbox / send-as); default OUTLOOK_USERNAME",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the message instead of sending it")
    mode.add_argument(
        "--queue", metavar="DIR", help="write the message into an outbox folder instead of sending"
    )


def _fetch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folder", default="INBOX", help="folder to fetch from (default INBOX)")
    p.add_argument("--maildir", metavar="DIR", help="deliver each new message into this Maildir")
    p.add_argument(
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        help="run CMD (via /bin/sh) with each new message on stdin; it must exit 0",
    )
    p.add_argument(
        "--exec-timeout",
        type=float,
        default=300,
        metavar="SECONDS",
        help="kill CMD after SECONDS (default 300)",
    )
    p.add_argument(
        "--backfill",
        type=_positive_int,
        metavar="N",
        help="on the first run, also process the newest N existing messages",
    )
    p.add_argument("--mark-seen", action="store_true", help="mark processed messages as read")
    p.add_argument("--move-to", metavar="FOLDER", help="move processed messages to FOLDER")
    p.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait up to SECONDS for another fetch of this folder to finish (default: exit 75 at once)",
    )
    p.add_argument(
        "--batch-mb",
        type=float,
        default=10,
        metavar="MB",
        help="download at most about MB megabytes per FETCH (default 10)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per processed message")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _iso_date(text: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-27") from None


def _handler(spec: str) -> Callable[..., int]:
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def report(error: errors.MailbotError) -> int:
    """The single place where a failure becomes output: one error line, maybe a hint, an exit code."""
    print(f"error: {error.message}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    return error.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # No command means "list", with list's defaults.
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "list"])
    import logs

    logs.setup(args.verbose or 0, args.quiet)
    try:
        from config import load_settings

        settings = load_settings({"OUTLOOK_MAILBOX": args.mailbox}, env_file=args.env_file)
        return _handler(args.handler)(args, settings)
    except errors.MailbotError as error:
        return report(error)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return errors.EX_INTERRUPTED
    except BrokenPipeError:
        # `mailbot list | head -1`: the reader left. No traceback; exit like a process killed by SIGPIPE.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
