"""What ``pip install`` puts on a machine: one package and one command, whatever else is on sys.path.

The wheel is built from the tracked files, installed into a fresh venv, and the installed
``mailbot`` runs from an unrelated folder with its configuration under ``$XDG_CONFIG_HOME``.
Modules called ``config``, ``errors`` and ``auth`` on the path (PyPI has packages of those
names) must not change what mailbot imports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from mailbotcore import __version__
from tests.conftest import REPO, base_env

SHADOWS = ("config", "errors", "auth", "logs", "commands", "messages")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tracked files (the checkout stays clean)."""
    src = tmp_path_factory.mktemp("src")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src), "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=180,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv (seeing the test machine's msal and dotenv) with only the wheel installed into it."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=180,
    )  # fmt: skip
    return env_dir


@pytest.fixture
def shadows(tmp_path: Path) -> Path:
    """A folder of impostor modules that fail loudly when imported."""
    folder = tmp_path / "shadows"
    folder.mkdir()
    for name in SHADOWS:
        (folder / f"{name}.py").write_text(f"raise ImportError('the impostor {name}.py was imported')\n")
    return folder


def test_wheel_installs_one_package_and_the_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top = {name.split("/")[0] for name in names}
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert top == {"mailbotcore", f"mailbot-{__version__}.dist-info"}
    assert "mailbot = mailbotcore.cli:console_script" in scripts


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_installed_command_uses_its_own_name_and_config_home(installed: Path, shadows: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "mailbot").mkdir(parents=True)
    (home / ".config" / "mailbot" / ".env").write_text(
        "OUTLOOK_USERNAME=me@contoso.com\nOUTLOOK_CLIENT_ID=5d8c2a1e-7f3b-4c9a-9e21-0a1b2c3d4e5f\n"
    )
    (home / ".config" / "mailbot" / "work.env").write_text("OUTLOOK_USERNAME=work@contoso.com\n")
    env = base_env(home) | {"PYTHONPATH": str(shadows)}
    mailbot = str(installed / "bin" / "mailbot")
    version = run([mailbot, "--version"], shadows, env)
    assert (version.returncode, version.stdout) == (0, f"mailbot {__version__}\n"), version.stderr
    usage = run([mailbot, "list", "--limit", "0"], shadows, env)
    assert usage.returncode == 64
    assert usage.stderr.startswith("usage: mailbot list ")
    who = run([mailbot, "whoami"], shadows, env)
    assert who.returncode == 77, who.stderr
    assert who.stderr.splitlines() == [
        "error: not signed in as me@contoso.com",
        'hint: run "mailbot login" in a terminal',
    ]
    work = run([mailbot, "--account", "work", "whoami"], shadows, env)
    assert work.stderr.splitlines()[0] == "error: not signed in as work@contoso.com"
    assert work.stderr.splitlines()[1] == 'hint: run "mailbot --account work login" in a terminal'
    module = run([str(installed / "bin" / "python"), "-m", "mailbotcore", "whoami"], shadows, env)
    assert module.returncode == 77
    assert module.stderr.splitlines()[1] == 'hint: run "python -m mailbotcore login" in a terminal'


def test_clone_launcher_ignores_impostor_modules(shadows: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = base_env(home) | {"PYTHONPATH": str(shadows), "OUTLOOK_USERNAME": "me@contoso.com"}
    env["MAILBOT_TOKEN_CACHE"] = str(home / "cache.json")
    result = run([sys.executable, str(REPO / "mailbot.py"), "whoami"], shadows, env)
    assert result.returncode == 77, result.stderr
    assert result.stderr.splitlines() == [
        "error: not signed in as me@contoso.com",
        'hint: run "python mailbot.py login" in a terminal',
    ]


def test_missing_dependencies_are_one_line(tmp_path: Path) -> None:
    # -S: no site-packages, so neither msal nor python-dotenv can be found.
    env = base_env(tmp_path)
    result = run([sys.executable, "-S", str(REPO / "mailbot.py"), "list"], tmp_path, env)
    assert result.returncode == 78
    assert result.stderr.splitlines() == [
        f"error: the Python package msal is not installed; from {REPO} run: python3 -m venv .venv && "
        ".venv/bin/pip install -r requirements.txt (then use .venv/bin/python mailbot.py)"
    ]
    assert os.path.exists(REPO / "requirements.txt")
