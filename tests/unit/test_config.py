"""Settings resolution: option > environment > .env, defaults, and exit 78 messages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailbotcore.config import config_homes, find_env_file, load_settings
from mailbotcore.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_precedence_option_over_environment_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "OUTLOOK_USERNAME=file@example.com\nOUTLOOK_MAILBOX=file-shared@example.com\nMAILBOT_TIMEOUT=7\n"
    )
    environ = {"OUTLOOK_MAILBOX": "env-shared@example.com"}
    s = load_settings({"OUTLOOK_MAILBOX": "cli@example.com"}, environ=environ, cwd=tmp_path)
    assert s.mailbox == "cli@example.com"
    assert s.username == "file@example.com"
    assert s.timeout == 7.0
    s = load_settings({}, environ=environ, cwd=tmp_path)
    assert s.mailbox == "env-shared@example.com"


def test_defaults_for_personal_and_work_addresses(tmp_path: Path) -> None:
    personal = load_settings(environ={"OUTLOOK_USERNAME": "me@Hotmail.co.uk"}, cwd=tmp_path)
    assert personal.authority == "https://login.microsoftonline.com/consumers"
    assert personal.smtp_host == "smtp-mail.outlook.com"
    assert (personal.imap_host, personal.imap_port, personal.smtp_port) == ("outlook.office365.com", 993, 587)
    work = load_settings(environ={"OUTLOOK_USERNAME": "me@contoso.com"}, cwd=tmp_path, clone_dir=tmp_path)
    assert work.authority == "https://login.microsoftonline.com/organizations"
    assert work.smtp_host == "smtp.office365.com"
    assert work.token_cache == tmp_path / "token_cache.json"
    assert work.timeout == 30.0


def test_installed_homes_follow_xdg(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    assert config_homes(environ, None) == (tmp_path / "cfg" / "mailbot", tmp_path / ".local/state/mailbot")
    assert config_homes({"HOME": str(tmp_path)}, None)[0] == tmp_path / ".config" / "mailbot"
    assert config_homes(environ, tmp_path / "clone") == (tmp_path / "clone", tmp_path / "clone")
    (tmp_path / "cfg" / "mailbot").mkdir(parents=True)
    (tmp_path / "cfg" / "mailbot" / ".env").write_text("OUTLOOK_USERNAME=me@contoso.com\n")
    elsewhere = tmp_path / "anywhere"
    elsewhere.mkdir()
    s = load_settings(environ=environ, cwd=elsewhere)
    assert s.username == "me@contoso.com"
    assert s.token_cache == tmp_path / ".local/state/mailbot/token_cache.json"
    assert s.state_dir == tmp_path / ".local/state/mailbot"


def test_account_selects_its_env_file_cache_and_state(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path)}
    home = tmp_path / ".config" / "mailbot"
    home.mkdir(parents=True)
    (home / ".env").write_text("OUTLOOK_USERNAME=default@contoso.com\n")
    (home / "work.env").write_text("OUTLOOK_USERNAME=work@contoso.com\n")
    work = load_settings({"MAILBOT_ACCOUNT": "work"}, environ=environ, cwd=tmp_path)
    assert work.username == "work@contoso.com"
    assert work.token_cache == tmp_path / ".local/state/mailbot/accounts/work/token_cache.json"
    assert work.state_dir == work.token_cache.parent
    assert work.command("login") == "mailbot --account work login"
    same = load_settings(environ={**environ, "MAILBOT_ACCOUNT": "work"}, cwd=tmp_path)
    assert same.token_cache == work.token_cache
    default = load_settings(environ=environ, cwd=tmp_path)
    assert default.username == "default@contoso.com"
    assert default.token_cache != work.token_cache
    with pytest.raises(ConfigError, match="account 'home': there is no"):
        load_settings({"MAILBOT_ACCOUNT": "home"}, environ=environ, cwd=tmp_path)
    with pytest.raises(ConfigError, match="MAILBOT_ACCOUNT"):
        load_settings({"MAILBOT_ACCOUNT": "../etc"}, environ=environ, cwd=tmp_path)


def test_relative_paths_in_env_file_resolve_against_its_folder(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "ca.pem").write_text("x")
    (conf / "mailbot.env").write_text("MAILBOT_TOKEN_CACHE=tokens/cache.json\nMAILBOT_CA_BUNDLE=ca.pem\n")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    s = load_settings(environ={"MAILBOT_ENV_FILE": str(conf / "mailbot.env")}, cwd=elsewhere)
    assert s.token_cache == conf / "tokens" / "cache.json"
    assert s.ca_bundle == conf / "ca.pem"
    assert s.state_dir == conf / "tokens"


def test_env_file_lookup_order(tmp_path: Path) -> None:
    script_dir = tmp_path / "clone"
    cwd = tmp_path / "home"
    script_dir.mkdir()
    cwd.mkdir()
    (script_dir / ".env").write_text("")
    assert find_env_file(None, {}, cwd, script_dir) == script_dir / ".env"
    (cwd / ".env").write_text("")
    assert find_env_file(None, {}, cwd, script_dir) == cwd / ".env"
    (tmp_path / "x.env").write_text("")
    assert find_env_file(None, {"MAILBOT_ENV_FILE": str(tmp_path / "x.env")}, cwd, script_dir) == tmp_path / "x.env"
    assert find_env_file(str(script_dir / ".env"), {"MAILBOT_ENV_FILE": "nope"}, cwd, script_dir) == script_dir / ".env"
    with pytest.raises(ConfigError, match="--env-file names"):
        find_env_file("missing.env", {}, cwd, script_dir)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OUTLOOK_IMAP_PORT", "99999"),
        ("OUTLOOK_SMTP_PORT", "abc"),
        ("MAILBOT_TIMEOUT", "0"),
        ("MAILBOT_TIMEOUT", "nan"),
        ("MAILBOT_TIMEOUT", "1e10"),
        ("MAILBOT_TIMEOUT", "inf"),
        ("MAILBOT_SEND_RATE", "1e-300"),
        ("MAILBOT_MAX_MESSAGE_MB", "-1"),
        ("OUTLOOK_USERNAME", "not-an-address"),
        ("OUTLOOK_AUTHORITY", "http://insecure.example/consumers"),
        ("OUTLOOK_CLIENT_ID", "has spaces in it"),
        ("MAILBOT_CA_BUNDLE", "/does/not/exist.pem"),
    ],
)
def test_malformed_values_name_the_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={name: value}, cwd=tmp_path)
    assert name in info.value.message
    assert info.value.exit_code == 78


def run_cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OUTLOOK_", "MAILBOT_"))}
    return subprocess.run(
        [sys.executable, str(REPO / "mailbot.py"), *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_missing_client_id_is_exit_78_and_says_where_it_looked(tmp_path: Path) -> None:
    cwd = tmp_path.resolve()
    result = run_cli(["list"], cwd, {"OUTLOOK_USERNAME": "me@example.com", "MAILBOT_ENV_FILE": ""})
    assert result.returncode == 78
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: OUTLOOK_CLIENT_ID is not set: put the Application (client) ID of your app registration, "
        "a GUID (see README: Register the app) in your .env or environment",
        f"hint: no .env file was found; mailbot looked for {cwd / '.env'} and {REPO / '.env'}",
    ]


def test_malformed_port_from_env_file_is_exit_78(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "OUTLOOK_USERNAME=me@example.com\nOUTLOOK_CLIENT_ID=abcdef12-3456\nOUTLOOK_IMAP_PORT=ninety\n"
    )
    result = run_cli(["list"], tmp_path, {})
    assert result.returncode == 78
    assert "OUTLOOK_IMAP_PORT='ninety' is not valid" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_is_64_and_help_does_not_import_msal(tmp_path: Path) -> None:
    result = run_cli(["list", "--limit", "0"], tmp_path, {})
    assert result.returncode == 64
    assert "must be greater than 0" in result.stderr
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom mailbotcore import cli\ntry:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('msal' in sys.modules, 'requests' in sys.modules)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip().splitlines()[-1] == "False False"


def test_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], tmp_path, {})
    assert result.returncode == 0
    assert result.stdout.startswith("mailbot ")


def test_app_only_and_sign_in_settings(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s")
    s = load_settings(
        environ={"OUTLOOK_USERNAME": "svc@contoso.com", "OUTLOOK_CLIENT_SECRET_FILE": str(secret)}, cwd=tmp_path
    )
    assert s.app_only and s.client_secret_file == secret and s.redirect_uri == "http://localhost"
    assert "hunter2-secret" not in repr(
        load_settings(environ={"OUTLOOK_CLIENT_SECRET": "hunter2-secret"}, cwd=tmp_path)
    )
    assert not load_settings(environ={"OUTLOOK_USERNAME": "me@contoso.com"}, cwd=tmp_path).app_only
    with pytest.raises(ConfigError, match="both a client secret and OUTLOOK_CLIENT_CERTIFICATE"):
        load_settings(environ={"OUTLOOK_CLIENT_SECRET": "x", "OUTLOOK_CLIENT_CERTIFICATE": str(secret)}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"OUTLOOK_CLIENT_SECRET_FILE names .* which does not exist"):
        load_settings(environ={"OUTLOOK_CLIENT_SECRET_FILE": str(tmp_path / "nope")}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"OUTLOOK_REDIRECT_URI=.https://example\.com. is not valid"):
        load_settings(environ={"OUTLOOK_REDIRECT_URI": "https://example.com"}, cwd=tmp_path)
    assert load_settings(environ={"OUTLOOK_REDIRECT_URI": "http://localhost:8765/"}, cwd=tmp_path).redirect_uri == (
        "http://localhost:8765"
    )
