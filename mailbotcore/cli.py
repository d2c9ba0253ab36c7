"""mailbot's command line: the only module that knows argparse, exit codes and stdout.

It parses arguments into a command's typed options, loads settings, builds the sign-in
once, runs the command, hands what it returns to the renderer, and is the one place that
turns a MailbotError into an ``error:`` line (plus a ``hint:``) on stderr and a sysexits
exit code. Heavy imports (msal, requests) happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

from mailbotcore import __version__, errors
from mailbotcore.wire.text import clean_line

EXIT_CODES = """\
exit codes:
  0   success
  64  usage error (bad or missing arguments)
  65  bad input data (invalid address, header injection, unknown UID or folder)
  66  an input file is missing or unreadable
  69  service refused permanently (certificate, SMTP AUTH disabled, sender not allowed)
  73  an output file (attachment, Maildir, queue entry) cannot be created
  75  temporary failure (network, timeout, 4xx, disk full, another run holds the lock): retry later
  77  sign-in required or token refused: run "{prog} login"
  78  configuration missing or malformed (a setting, or a path that is not what it must be)
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
        "--account",
        metavar="NAME",
        help="use the account NAME: NAME.env in the configuration folder, with its own token cache "
        "and fetch state (MAILBOT_ACCOUNT)",
        **default,
    )
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


def build_parser(program: str) -> argparse.ArgumentParser:
    epilog = EXIT_CODES.format(prog=program)
    parser = Parser(
        prog=program,
        description="Read and send Outlook.com / Microsoft 365 mail over IMAP and SMTP with OAuth 2 "
        "(sign-in by device code, browser, pasted address, or app-only). Without a command, lists the newest "
        "messages.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mailbot {__version__}")
    _common_options(parser, suppress=False)
    parser.set_defaults(verbose=0, quiet=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(name: str, help_text: str, run: Callable[..., int]) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common_options(p, suppress=True)
        p.set_defaults(run=run)
        return p

    login = command("login", "sign in (device code by default, or --browser / --paste) and save the tokens", _login)
    how = login.add_mutually_exclusive_group()
    how.add_argument(
        "--browser",
        action="store_const",
        dest="method",
        const="browser",
        help="sign in in a browser on this machine (authorization code + PKCE, redirect to OUTLOOK_REDIRECT_URI)",
    )
    how.add_argument(
        "--paste",
        action="store_const",
        dest="method",
        const="paste",
        help="print the sign-in address, then read the address the browser ended on from standard input",
    )
    how.add_argument(
        "--print-url",
        action="store_const",
        dest="method",
        const="print-url",
        help="step 1 of 2 for scripts: print the sign-in address and keep the flow state (10 minutes)",
    )
    how.add_argument(
        "--redirect-url",
        metavar="URL",
        help="step 2 of 2: redeem the address the browser ended on ('-' reads it from standard input)",
    )
    login.add_argument(
        "--timeout",
        type=_seconds,
        default=300,
        metavar="SECONDS",
        help="--browser: give up after SECONDS without a sign-in (default 300)",
    )
    command("logout", "remove this account's tokens from the cache", _logout)
    token = command(
        "token",
        "print a valid access token for other mail tools (msmtp passwordeval, mbsync PassCmd...)",
        _token,
    )
    token.add_argument(
        "--xoauth2", action="store_true", help="print the base64 SASL XOAUTH2 string instead of the bare token"
    )
    whoami = command("whoami", "show who is signed in and until when (no network)", _whoami)
    whoami.add_argument("--json", action="store_true", help="print JSON")

    lst = command("list", "list the newest messages of a folder (read-only)", _list)
    _list_options(lst)

    read = command("read", "show one message by UID", _read)
    read.add_argument("uid", type=_positive_int, metavar="UID", help="the message UID (from list)")
    read.add_argument("--folder", default="INBOX", help="folder name (default INBOX)")
    read.add_argument("--raw", action="store_true", help="write the exact RFC 822 bytes to stdout")
    read.add_argument("--save-attachments", metavar="DIR", help="save attachments into DIR (never overwrites)")
    read.add_argument("--mark-read", action="store_true", help="mark the message as read (default: untouched)")

    send = command("send", "send a message (or queue it with --queue)", _send)
    _send_options(send)

    fetch = command(
        "fetch",
        "process each new message into a Maildir and/or a command, at least once: never skipped, "
        "at most one duplicate after a crash",
        _fetch,
    )
    _fetch_options(fetch)

    watch = command(
        "watch",
        "like fetch, as a service: new mail is processed as it arrives (IMAP IDLE), until SIGTERM",
        _watch,
    )
    _fetch_options(watch)
    watch.add_argument(
        "--poll",
        type=_interval,
        default=60,
        metavar="SECONDS",
        help="where the server has no IDLE, look for new mail every SECONDS (default 60)",
    )
    watch.add_argument(
        "--idle-renewal",
        type=_interval,
        default=540,
        metavar="SECONDS",
        help="re-issue IDLE every SECONDS (default 540; Outlook drops idle sessions after about 10 minutes)",
    )

    outbox = command("outbox", "send every message queued in DIR", _outbox)
    outbox.add_argument("directory", metavar="DIR", help="the queue folder (see send --queue)")
    outbox.add_argument(
        "--wait",
        type=_seconds,
        default=0,
        metavar="SECONDS",
        help="wait up to SECONDS for another outbox run to finish (default: exit 75 at once)",
    )
    outbox.add_argument("--json", action="store_true", help="print one JSON object per message")

    doctor = command(
        "doctor",
        "check configuration, sign-in, IMAP and SMTP step by step (sends nothing)",
        _doctor,
    )
    doctor.add_argument(
        "--retest-smtp",
        action="store_true",
        help="try SMTP AUTH again although sending went to Microsoft Graph; back to SMTP if it works",
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
    p.add_argument("--to", action="append", default=[], metavar="ADDR", help="recipient (repeatable, or a, b)")
    p.add_argument("--cc", action="append", default=[], metavar="ADDR", help="copy recipient (repeatable)")
    p.add_argument("--bcc", action="append", default=[], metavar="ADDR", help="blind copy (envelope only)")
    p.add_argument("--subject", default="", help="the subject")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="the text body (default: standard input, if not a terminal)")
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
    mode.add_argument("--dry-run", action="store_true", help="print the message and its envelope instead of sending it")
    mode.add_argument("--queue", metavar="DIR", help="write the message into an outbox folder instead of sending")


def _fetch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--folder", default="INBOX", help="folder to fetch from (default INBOX)")
    p.add_argument("--maildir", metavar="DIR", help="deliver each new message into this Maildir")
    p.add_argument(
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        help="run CMD (via /bin/sh) with each new message on stdin (the same LF-ended bytes as the "
        "Maildir file); it must exit 0",
    )
    p.add_argument(
        "--exec-timeout",
        type=_seconds,
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
        type=_seconds,
        default=0,
        metavar="SECONDS",
        help="wait up to SECONDS for another fetch of this folder to finish (default: exit 75 at once)",
    )
    p.add_argument(
        "--batch-mb",
        type=_megabytes,
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
    if value > 10**9:
        raise argparse.ArgumentTypeError(f"{text!r} is too large")
    return value


def _bounded_number(text: str, low: float, high: float, unit: str, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value >= low if allow_zero else value > low) or not value <= high:
        bound = f"from {low:g}" if allow_zero else f"greater than {low:g}"
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of {unit} {bound} up to {high:g}")
    return value


def _seconds(text: str) -> float:
    return _bounded_number(text, 0, 7 * 86400, "seconds", allow_zero=True)


def _interval(text: str) -> float:
    return _bounded_number(text, 0.1, 86400, "seconds", allow_zero=True)


def _megabytes(text: str) -> float:
    return _bounded_number(text, 0, 10240, "megabytes", allow_zero=False)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-27") from None


# -- running commands: namespace -> typed options -> results -> renderer -----------------------


def _renderer(args: argparse.Namespace, fmt: str | None = None) -> Any:
    from mailbotcore import render

    chosen = fmt or (render.JSON if getattr(args, "json", False) else render.TEXT)
    return render.Renderer(sys.stdout, sys.stderr, chosen, quiet=bool(args.quiet))


def _signin(settings: Any, interactive: bool | None = None) -> Any:
    from mailbotcore.signin.authenticator import Authenticator, person_present

    if settings.app_only:
        from mailbotcore.signin.app_only import AppOnlyAuthenticator

        return AppOnlyAuthenticator(settings)
    return Authenticator(settings, interactive=person_present() if interactive is None else interactive)


def _login(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import account
    from mailbotcore.commands.options import LoginOptions

    method = args.method or ("redirect-url" if args.redirect_url else "device-code")
    redirect_url = args.redirect_url
    if redirect_url == "-":
        redirect_url = sys.stdin.readline()
    options = LoginOptions(method=method, redirect_url=redirect_url, timeout=args.timeout)
    result = account.login(options, settings, _signin(settings, interactive=True))
    _renderer(args).one(result)
    return errors.EX_OK


def _token(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import account
    from mailbotcore.commands.options import TokenOptions

    _renderer(args).one(account.token(TokenOptions(xoauth2=args.xoauth2), settings, _signin(settings, False)))
    return errors.EX_OK


def _logout(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import account

    _renderer(args).one(account.logout(settings, _signin(settings, interactive=False)))
    return errors.EX_OK


def _whoami(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import account

    _renderer(args).one(account.whoami(settings, _signin(settings, interactive=False)))
    return errors.EX_OK


def _list(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import reading
    from mailbotcore.commands.options import ListOptions

    options = ListOptions(
        folder=args.folder,
        limit=args.limit,
        unseen=args.unseen,
        since=args.since,
        from_=args.from_,
        subject=args.subject,
    )
    summaries = reading.list_messages(options, settings, _signin(settings).provider)
    _renderer(args).document(summaries)
    return errors.EX_OK


def _read(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import reading
    from mailbotcore.commands.options import ReadOptions

    options = ReadOptions(
        uid=args.uid,
        folder=args.folder,
        raw=args.raw,
        save_attachments=Path(args.save_attachments) if args.save_attachments else None,
        mark_read=args.mark_read,
    )
    _renderer(args).one(reading.read_message(options, settings, _signin(settings).provider))
    return errors.EX_OK


def _send(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import sending
    from mailbotcore.commands.options import SendOptions

    options = SendOptions(
        to=tuple(args.to),
        cc=tuple(args.cc),
        bcc=tuple(args.bcc),
        subject=args.subject,
        body=args.body if args.body is not None else _stdin_body(args),
        body_file=Path(args.body_file) if args.body_file else None,
        html_file=Path(args.html_file) if args.html_file else None,
        attach=tuple(Path(p) for p in args.attach),
        reply_to=args.reply_to,
        from_=args.from_,
        dry_run=args.dry_run,
        queue=Path(args.queue) if args.queue else None,
    )
    needs_signin = not (options.dry_run or options.queue)
    auth = _signin(settings) if needs_signin else None
    provider = auth.provider if auth else None
    result = sending.send(options, settings, provider, auth.provider_for if auth else None)
    if options.dry_run:
        from mailbotcore.commands.transport import choose

        print(f"envelope: from {result.sender} to {', '.join(result.recipients)}", file=sys.stderr)
        choice = choose(settings)
        print(f"transport: {choice.via} ({choice.reason})", file=sys.stderr)
    _renderer(args).one(result)
    return errors.EX_OK


def _stdin_body(args: argparse.Namespace) -> str | None:
    """The body from standard input when no --body/--body-file is given and stdin is not a terminal.

    Empty standard input (cron's /dev/null) is no body, so an --html-file still gets its
    text alternative derived."""
    if args.body_file is not None or sys.stdin is None or sys.stdin.closed:
        return None
    try:
        if sys.stdin.isatty():
            return None
        data = sys.stdin.buffer.read()
    except (OSError, ValueError) as exc:
        raise errors.InputFileError(f"cannot read the body from standard input: {exc}") from exc
    return data.decode("utf-8", "replace") if data else None


def _delivery_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options fetch and watch share (their delivery is the same code)."""
    return {
        "folder": args.folder,
        "maildir": Path(args.maildir) if args.maildir else None,
        "exec_cmd": args.exec_cmd,
        "exec_timeout": args.exec_timeout,
        "backfill": args.backfill,
        "mark_seen": args.mark_seen,
        "move_to": args.move_to,
        "wait": args.wait,
        "batch_mb": args.batch_mb,
    }


def _fetch(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore import render
    from mailbotcore.commands import fetching
    from mailbotcore.commands.options import FetchOptions

    options = FetchOptions(**_delivery_options(args))
    fmt = render.NDJSON if args.json else render.TEXT
    # A long operation: its token must outlast the run.
    _renderer(args, fmt).stream(fetching.fetch(options, settings, _signin(settings).lasting_provider()))
    return errors.EX_OK


def _watch(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore import render
    from mailbotcore.commands import watching
    from mailbotcore.commands.options import WatchOptions

    options = WatchOptions(**_delivery_options(args), poll=args.poll, idle_renewal=args.idle_renewal)
    fmt = render.NDJSON if args.json else render.TEXT
    stopper = watching.Stopper()
    restore = stopper.install()  # SIGTERM/SIGINT: finish the message, DONE, LOGOUT, exit 0
    try:
        signin = _signin(settings)
        _renderer(args, fmt).stream(watching.watch(options, settings, signin.provider, signin.expires_at, stopper))
    finally:
        restore()
    return errors.EX_OK


def _outbox(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore import render
    from mailbotcore.commands import outbox
    from mailbotcore.commands.options import OutboxOptions

    options = OutboxOptions(directory=Path(args.directory), wait=args.wait)
    fmt = render.NDJSON if args.json else render.TEXT
    auth = _signin(settings)
    provider = auth.lasting_provider()  # a long operation: its token must outlast the run
    _renderer(args, fmt).stream(outbox.send_queued(options, settings, provider, auth.provider_for))
    return errors.EX_OK


def _doctor(args: argparse.Namespace, settings: Any) -> int:
    from mailbotcore.commands import doctor

    renderer = _renderer(args)
    first_failure: errors.MailbotError | None = None
    for check in doctor.run_checks(settings, _signin, retest_smtp=args.retest_smtp):
        renderer.one(check)
        if check.error is not None and first_failure is None:
            first_failure = check.error
    return first_failure.exit_code if first_failure else errors.EX_OK


def report(error: errors.MailbotError, program: str) -> int:
    """The single place where a failure becomes output: one error line, maybe a hint, an exit code."""
    print(f"error: {clean_line(error.message)}", file=sys.stderr)
    if error.hint:
        print(f"hint: {clean_line(error.hint)}", file=sys.stderr)
    return error.exit_code


def main(argv: Sequence[str] | None = None, program: str = "mailbot", clone_dir: Path | None = None) -> int:
    """Run one command line. ``program`` is how the user started mailbot (it appears in the
    usage line and in every hint); ``clone_dir`` is set by the root ``mailbot.py`` launcher,
    whose folder then holds the ``.env`` instead of ``$XDG_CONFIG_HOME/mailbot``."""
    parser = build_parser(program)
    args = parser.parse_args(argv)
    if args.command is None:
        # No command means "list", with list's defaults.
        args = parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "list"])
    from mailbotcore import logs

    logs.setup(args.verbose or 0, args.quiet)
    try:
        from mailbotcore.config import load_settings

        settings = load_settings(
            {"OUTLOOK_MAILBOX": args.mailbox, "MAILBOT_ACCOUNT": args.account},
            env_file=args.env_file,
            program=program,
            clone_dir=clone_dir,
        )
        return int(args.run(args, settings))
    except errors.MailbotError as error:
        return report(error, program)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return errors.EX_INTERRUPTED
    except BrokenPipeError:
        # `mailbot list | head -1`: the reader left. No traceback; exit like a process killed by SIGPIPE.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def console_script() -> int:
    """The installed ``mailbot`` command (pyproject's entry point)."""
    return main(program=Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "mailbot")
