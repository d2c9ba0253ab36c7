"""Settings for mailbot, from the command line, the environment and a ``.env`` file.

Everything is resolved in one place, :func:`load_settings`, so that a person in the
clone and a cron job started in ``$HOME`` see the same configuration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailbotcore.errors import ConfigError

LOGIN_HOST = "https://login.microsoftonline.com"
PERSONAL_DOMAIN = re.compile(r"^(outlook|hotmail|live)\.[a-z.]+$|^msn\.com$")
ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@[A-Za-z0-9-]+$")

# Every setting, with the hint printed when it is missing or malformed.
SETTINGS_HELP = {
    "OUTLOOK_USERNAME": "the mailbox address you sign in with, e.g. OUTLOOK_USERNAME=you@outlook.com",
    "OUTLOOK_CLIENT_ID": "the Application (client) ID of your app registration, a GUID (see README: Register the app)",
    "OUTLOOK_AUTHORITY": "an https URL such as https://login.microsoftonline.com/consumers",
    "OUTLOOK_IMAP_SERVER": "a host name, e.g. outlook.office365.com",
    "OUTLOOK_IMAP_PORT": "a port number: 993 (implicit TLS) or 143 (STARTTLS)",
    "OUTLOOK_IMAP_TLS": "implicit or starttls (default: starttls on port 143, implicit otherwise)",
    "OUTLOOK_SMTP_TLS": "implicit or starttls (default: implicit on port 465, starttls otherwise)",
    "OUTLOOK_SMTP_SERVER": "a host name, e.g. smtp.office365.com",
    "OUTLOOK_SMTP_PORT": "a port number: 587 (STARTTLS) or 465 (implicit TLS)",
    "OUTLOOK_MAILBOX": "a shared mailbox address you have delegate access to",
    "MAILBOT_TOKEN_CACHE": "a file path for the token cache",
    "MAILBOT_STATE_DIR": "a directory for fetch state and locks",
    "MAILBOT_CA_BUNDLE": "the path of a PEM file with the CA certificates to trust",
    "MAILBOT_TIMEOUT": "a number of seconds from 0.1 to 3600, e.g. 30",
    "MAILBOT_MAX_MESSAGE_MB": "a number of megabytes from 0.001 to 1024, e.g. 25",
    "MAILBOT_SEND_RATE": "messages per minute, a number from 0.01 to 100000, e.g. 30",
    "MAILBOT_ACCOUNT": "an account name: letters, digits, '.', '_' or '-', e.g. MAILBOT_ACCOUNT=work",
    "OUTLOOK_SEND_VIA": "smtp, graph or auto (default auto: SMTP, and Microsoft Graph when SMTP AUTH is disabled)",
    "OUTLOOK_GRAPH_URL": "an https URL, default https://graph.microsoft.com",
    "OUTLOOK_CLIENT_SECRET_FILE": "the path of a private file holding the app's client secret (app-only access)",
    "OUTLOOK_CLIENT_SECRET": "the app's client secret value (app-only access; prefer OUTLOOK_CLIENT_SECRET_FILE)",
    "OUTLOOK_CLIENT_CERTIFICATE": "the path of a PEM file with certificate and private key, or a .pfx/.p12 file "
    "(app-only access)",
    "OUTLOOK_CLIENT_CERTIFICATE_PASSWORD_FILE": "the path of a private file holding the password of "
    "OUTLOOK_CLIENT_CERTIFICATE",
    "OUTLOOK_REDIRECT_URI": "an http://localhost URL registered under Mobile and desktop applications, "
    "e.g. http://localhost or http://localhost:8765",
    "OUTLOOK_CLIENT_CERTIFICATE_PASSWORD": "the password of OUTLOOK_CLIENT_CERTIFICATE "
    "(prefer OUTLOOK_CLIENT_CERTIFICATE_PASSWORD_FILE)",
    "MAILBOT_CACHE_KEY_FILE": "the path of a private file holding the token cache key or passphrase",
    "MAILBOT_CACHE_KEY_COMMAND": "a command that prints the token cache key or passphrase, e.g. pass show mailbot",
}
# Settings whose values are secrets: never passed on to child processes (fetch --exec).
SECRET_VARIABLES = ("OUTLOOK_CLIENT_SECRET", "OUTLOOK_CLIENT_CERTIFICATE_PASSWORD")
DEFAULT_REDIRECT_URI = "http://localhost"


def child_environment() -> dict[str, str]:
    """This process's environment without secret settings: what child processes get."""
    return {key: value for key, value in os.environ.items() if key not in SECRET_VARIABLES}


# Finite, sane ranges: a timeout of 1e10 s is a hang, a send rate of 1e-300 a sleep forever.
NUMBER_BOUNDS = {
    "MAILBOT_TIMEOUT": (0.1, 3600.0),
    "MAILBOT_MAX_MESSAGE_MB": (0.001, 1024.0),
    "MAILBOT_SEND_RATE": (0.01, 100000.0),
}
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. ``username`` and ``client_id`` may be None until a command needs them."""

    username: str | None
    client_id: str | None
    authority: str
    imap_host: str
    imap_port: int
    imap_tls: str
    smtp_host: str
    smtp_port: int
    smtp_tls: str
    mailbox: str | None
    token_cache: Path
    state_dir: Path
    ca_bundle: Path | None
    timeout: float
    max_message_mb: float
    send_rate: float
    env_file: Path | None
    program: str = "mailbot"
    account: str | None = None
    config_home: Path | None = None
    env_searched: tuple[Path, ...] = ()
    send_via: str = "auto"
    graph_url: str = "https://graph.microsoft.com"
    client_secret_file: Path | None = None
    client_secret: str | None = field(default=None, repr=False)
    client_certificate: Path | None = None
    client_certificate_password_file: Path | None = None
    client_certificate_password: str | None = field(default=None, repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    cache_key_file: Path | None = None
    cache_key_command: str | None = None

    @property
    def app_only(self) -> bool:
        """App-only access (client credentials): a client secret or certificate is configured."""
        return bool(self.client_secret_file or self.client_secret or self.client_certificate)

    def command(self, words: str) -> str:
        """A command line to suggest in a hint, spelled the way the user started mailbot."""
        account = f" --account {self.account}" if self.account else ""
        return f"{self.program}{account} {words}"

    def require_username(self) -> str:
        if not self.username:
            raise self._missing("OUTLOOK_USERNAME")
        return self.username

    def require_client_id(self) -> str:
        if not self.client_id:
            raise self._missing("OUTLOOK_CLIENT_ID")
        return self.client_id

    def _missing(self, name: str) -> ConfigError:
        error = _missing(name)
        if self.env_file is None and self.env_searched:
            error.hint = "no .env file was found; mailbot looked for " + " and ".join(str(p) for p in self.env_searched)
        return error

    @property
    def mailbox_user(self) -> str:
        """The XOAUTH2 ``user=``: a shared mailbox when one is set, else the signed-in address."""
        return self.mailbox or self.require_username()


def _missing(name: str) -> ConfigError:
    return ConfigError(f"{name} is not set: put {SETTINGS_HELP[name]} in your .env or environment")


def _malformed(name: str, value: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is not valid: it must be {SETTINGS_HELP[name]}")


def config_homes(environ: Mapping[str, str], clone_dir: Path | None) -> tuple[Path, Path]:
    """Where mailbot keeps things, resolved in this one place: (configuration folder, data folder).

    From a clone (the root ``mailbot.py`` passes its folder): the clone holds both, as it
    always has. Installed: ``$XDG_CONFIG_HOME/mailbot`` (default ``~/.config/mailbot``) holds
    ``.env`` and ``NAME.env``; ``$XDG_STATE_HOME/mailbot`` (default ``~/.local/state/mailbot``)
    holds token caches and fetch state."""
    if clone_dir is not None:
        return clone_dir, clone_dir
    home = Path(environ.get("HOME") or Path.home())
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    state = Path(environ.get("XDG_STATE_HOME") or home / ".local" / "state")
    return config / "mailbot", state / "mailbot"


def find_env_file(
    cli_path: str | None,
    environ: Mapping[str, str],
    cwd: Path,
    config_home: Path,
    account: str | None = None,
) -> Path | None:
    """Which ``.env`` to read: ``--env-file``, else ``$MAILBOT_ENV_FILE``, else the account's
    ``NAME.env`` in the configuration folder, else ``./.env``, else ``.env`` in the
    configuration folder. An explicitly named file must exist."""
    for explicit, origin in ((cli_path, "--env-file"), (environ.get("MAILBOT_ENV_FILE"), "MAILBOT_ENV_FILE")):
        if explicit:
            path = (cwd / explicit).resolve()
            if not path.is_file():
                raise ConfigError(f"{origin} names {path}, which does not exist or is not a file")
            return path
    if account is not None:
        path = config_home / f"{account}.env"
        if not path.is_file():
            raise ConfigError(
                f"account {account!r}: there is no {path}",
                hint=f"create it from .env.example, or list the accounts with: ls {config_home}/*.env",
            )
        return path.resolve()
    for candidate in (cwd / ".env", config_home / ".env"):
        if candidate.is_file():
            return candidate.resolve()
    return None


# A .env line python-dotenv reads as exactly KEY=VALUE: blank, a comment, or an unquoted value
# without spaces, quotes, "#", "$" or backslashes. Files of only such lines skip importing dotenv.
_PLAIN_ENV_LINE = re.compile(r"\s*(?:#.*|(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*([^\s'\"#$\\]*)\s*)?")


def _plain_env_file(path: Path) -> dict[str, str] | None:
    """The values of a .env file in the plain subset above (what dotenv would read), else None."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # dotenv reports it
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _PLAIN_ENV_LINE.fullmatch(line)
        if match is None:
            return None
        if match[1] is not None:
            values[match[1]] = match[2]
    return values


def _read_env_file(path: Path) -> dict[str, str]:
    plain = _plain_env_file(path)
    if plain is not None:
        return plain
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    return {key: value for key, value in values.items() if value is not None}


def load_settings(
    options: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    env_file: str | None = None,
    program: str = "mailbot",
    clone_dir: Path | None = None,
) -> Settings:
    """Resolve every setting: command-line option > environment > ``.env`` file > default.

    ``options`` maps setting names (e.g. ``OUTLOOK_MAILBOX``) to values given on the command
    line. Relative paths from the ``.env`` file resolve against that file's folder; relative
    paths from the command line or the environment resolve against the current directory.
    ``program`` is how mailbot was started (for hints); ``clone_dir`` is the clone's folder
    when run from one (see :func:`config_homes`).
    """
    options = options or {}
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    config_home, data_home = config_homes(environ, clone_dir)
    account = options.get("MAILBOT_ACCOUNT") or environ.get("MAILBOT_ACCOUNT") or None
    if account is not None and not ACCOUNT_NAME.fullmatch(account):
        raise _malformed("MAILBOT_ACCOUNT", account)
    env_path = find_env_file(env_file, environ, cwd, config_home, account)
    file_values = _read_env_file(env_path) if env_path else {}

    def lookup(name: str) -> tuple[str | None, Path]:
        """The raw value and the folder its relative paths are relative to."""
        for source, base in (
            (options, cwd),
            (environ, cwd),
            (file_values, env_path.parent if env_path else cwd),
        ):
            value = source.get(name)
            if value is not None and value.strip() != "":
                return value.strip(), base
        return None, cwd

    def text(name: str) -> str | None:
        return lookup(name)[0]

    def path(name: str) -> Path | None:
        value, base = lookup(name)
        # Absolute, but symlinks are not resolved: a link where a cache should be is refused
        # when it is opened (O_NOFOLLOW), not silently followed here.
        return Path(os.path.abspath(base / Path(value).expanduser())) if value else None

    def number(name: str, default: float) -> float:
        value = text(name)
        if value is None:
            return default
        low, high = NUMBER_BOUNDS[name]
        try:
            parsed = float(value)
        except ValueError:
            raise _malformed(name, value) from None
        if not low <= parsed <= high:  # also refuses nan
            raise _malformed(name, value)
        return parsed

    def port(name: str, default: int) -> int:
        value = text(name)
        if value is None:
            return default
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise _malformed(name, value)
        return int(value)

    def tls_mode(name: str, implicit_by_default: bool) -> str:
        value = (text(name) or ("implicit" if implicit_by_default else "starttls")).lower()
        if value not in ("implicit", "starttls"):
            raise _malformed(name, value)
        return value

    username = text("OUTLOOK_USERNAME")
    if username is not None and not ADDRESS.match(username):
        raise _malformed("OUTLOOK_USERNAME", username)
    mailbox = text("OUTLOOK_MAILBOX")
    if mailbox is not None and not ADDRESS.match(mailbox):
        raise _malformed("OUTLOOK_MAILBOX", mailbox)
    client_id = text("OUTLOOK_CLIENT_ID")
    if client_id is not None and not re.fullmatch(r"[0-9A-Za-z-]{8,64}", client_id):
        raise _malformed("OUTLOOK_CLIENT_ID", client_id)

    personal = username is not None and bool(PERSONAL_DOMAIN.match(username.rsplit("@", 1)[1].lower()))
    authority = text("OUTLOOK_AUTHORITY") or f"{LOGIN_HOST}/{'consumers' if personal else 'organizations'}"
    if not re.fullmatch(r"https://[^/\s]+/[^\s]+", authority):
        raise _malformed("OUTLOOK_AUTHORITY", authority)

    ca_bundle = path("MAILBOT_CA_BUNDLE")
    if ca_bundle is not None and not ca_bundle.is_file():
        raise ConfigError(f"MAILBOT_CA_BUNDLE names {ca_bundle}, which does not exist")

    imap_port = port("OUTLOOK_IMAP_PORT", 993)
    smtp_port = port("OUTLOOK_SMTP_PORT", 587)
    if account is not None:
        default_cache_dir = data_home / "accounts" / account
    elif clone_dir is not None:
        default_cache_dir = env_path.parent if env_path else cwd
    else:
        default_cache_dir = data_home
    token_cache = path("MAILBOT_TOKEN_CACHE") or default_cache_dir / "token_cache.json"
    state_dir = path("MAILBOT_STATE_DIR") or token_cache.parent

    redirect_uri = text("OUTLOOK_REDIRECT_URI") or DEFAULT_REDIRECT_URI
    if not re.fullmatch(r"http://(localhost|127\.0\.0\.1)(:\d{1,5})?/?", redirect_uri):
        raise _malformed("OUTLOOK_REDIRECT_URI", redirect_uri)
    app_files = {
        name: path(name)
        for name in (
            "OUTLOOK_CLIENT_SECRET_FILE",
            "OUTLOOK_CLIENT_CERTIFICATE",
            "OUTLOOK_CLIENT_CERTIFICATE_PASSWORD_FILE",
            "MAILBOT_CACHE_KEY_FILE",
        )
    }
    for name, file in app_files.items():
        if file is not None and not file.is_file():
            raise ConfigError(f"{name} names {file}, which does not exist or is not a file")
    secret, secret_file = text("OUTLOOK_CLIENT_SECRET"), app_files["OUTLOOK_CLIENT_SECRET_FILE"]
    if (secret or secret_file) and app_files["OUTLOOK_CLIENT_CERTIFICATE"]:
        raise ConfigError(
            "both a client secret and OUTLOOK_CLIENT_CERTIFICATE are set: app-only access uses one of them",
            hint="remove OUTLOOK_CLIENT_SECRET(_FILE) or OUTLOOK_CLIENT_CERTIFICATE",
        )

    return Settings(
        username=username,
        client_id=client_id,
        authority=authority.rstrip("/"),
        imap_host=text("OUTLOOK_IMAP_SERVER") or "outlook.office365.com",
        imap_port=imap_port,
        imap_tls=tls_mode("OUTLOOK_IMAP_TLS", implicit_by_default=imap_port != 143),
        smtp_host=text("OUTLOOK_SMTP_SERVER") or ("smtp-mail.outlook.com" if personal else "smtp.office365.com"),
        smtp_port=smtp_port,
        smtp_tls=tls_mode("OUTLOOK_SMTP_TLS", implicit_by_default=smtp_port == 465),
        mailbox=mailbox,
        token_cache=token_cache,
        state_dir=state_dir,
        ca_bundle=ca_bundle,
        timeout=number("MAILBOT_TIMEOUT", 30.0),
        max_message_mb=number("MAILBOT_MAX_MESSAGE_MB", 25.0),
        send_rate=number("MAILBOT_SEND_RATE", 30.0),
        env_file=env_path,
        program=program,
        account=account,
        config_home=config_home,
        env_searched=(cwd / ".env", config_home / ".env") if env_path is None else (),
        send_via=_send_via(text("OUTLOOK_SEND_VIA")),
        graph_url=_graph_url(text("OUTLOOK_GRAPH_URL")),
        client_secret_file=secret_file,
        client_secret=secret,
        client_certificate=app_files["OUTLOOK_CLIENT_CERTIFICATE"],
        client_certificate_password_file=app_files["OUTLOOK_CLIENT_CERTIFICATE_PASSWORD_FILE"],
        client_certificate_password=text("OUTLOOK_CLIENT_CERTIFICATE_PASSWORD"),
        redirect_uri=redirect_uri.rstrip("/"),
        cache_key_file=app_files["MAILBOT_CACHE_KEY_FILE"],
        cache_key_command=text("MAILBOT_CACHE_KEY_COMMAND"),
    )


def _send_via(value: str | None) -> str:
    via = (value or "auto").lower()
    if via not in ("smtp", "graph", "auto"):
        raise _malformed("OUTLOOK_SEND_VIA", value or "")
    return via


def _graph_url(value: str | None) -> str:
    url = value or "https://graph.microsoft.com"
    if not re.fullmatch(r"https://[^/\s]+/?", url):
        raise _malformed("OUTLOOK_GRAPH_URL", url)
    return url.rstrip("/")
