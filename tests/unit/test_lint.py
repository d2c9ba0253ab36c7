"""The code base stays ruff-clean (lint and format) and mypy-clean, with the settings in pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command: list[str]) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -r requirements-test.txt)")
    result = subprocess.run([ruff, *command], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    mypy = shutil.which("mypy")
    if mypy is None:
        pytest.fail("mypy is not installed (pip install -r requirements-test.txt)")
    result = subprocess.run([mypy], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
