"""Numbers from configuration and options are finite and within sane bounds: one line, 78 or 64."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config import run_cli

USER = {"OUTLOOK_USERNAME": "me@example.com", "OUTLOOK_CLIENT_ID": "5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f"}


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "MAILBOT_TIMEOUT",
            "1e10",
            "error: MAILBOT_TIMEOUT='1e10' is not valid: it must be a number of seconds from 0.1 to 3600, e.g. 30",
        ),
        (
            "MAILBOT_TIMEOUT",
            "nan",
            "error: MAILBOT_TIMEOUT='nan' is not valid: it must be a number of seconds from 0.1 to 3600, e.g. 30",
        ),
        (
            "MAILBOT_SEND_RATE",
            "1e-300",
            "error: MAILBOT_SEND_RATE='1e-300' is not valid: it must be messages per minute, a number from 0.01 "
            "to 100000, e.g. 30",
        ),
        (
            "MAILBOT_SEND_RATE",
            "inf",
            "error: MAILBOT_SEND_RATE='inf' is not valid: it must be messages per minute, a number from 0.01 "
            "to 100000, e.g. 30",
        ),
    ],
)
def test_settings_out_of_bounds_are_78_with_one_line(tmp_path: Path, name: str, value: str, line: str) -> None:
    result = run_cli(["whoami"], tmp_path, {**USER, "MAILBOT_ENV_FILE": "", name: value})
    assert result.returncode == 78
    assert result.stderr.splitlines() == [line]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value", "line"),
    [
        ("--batch-mb", "nan", "'nan' must be a number of megabytes greater than 0 up to 10240"),
        ("--batch-mb", "inf", "'inf' must be a number of megabytes greater than 0 up to 10240"),
        ("--batch-mb", "0", "'0' must be a number of megabytes greater than 0 up to 10240"),
        ("--exec-timeout", "nan", "'nan' must be a number of seconds from 0 up to 604800"),
        ("--exec-timeout", "-1", "'-1' must be a number of seconds from 0 up to 604800"),
        ("--exec-timeout", "1e400", "'1e400' must be a number of seconds from 0 up to 604800"),
        ("--wait", "-inf", "'-inf' must be a number of seconds from 0 up to 604800"),
    ],
)
def test_fetch_options_out_of_bounds_are_64_with_one_line(tmp_path: Path, option: str, value: str, line: str) -> None:
    result = run_cli(["fetch", "--exec", "true", f"{option}={value}"], tmp_path, {**USER, "MAILBOT_ENV_FILE": ""})
    assert result.returncode == 64
    assert result.stderr.splitlines()[-1] == f"error: argument {option}: {line}"
    assert [x for x in result.stderr.splitlines() if x.startswith("error:")] == [f"error: argument {option}: {line}"]
