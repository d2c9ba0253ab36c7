"""The package's layers (README → Development): arrows point down, and only the CLI knows argparse and stdout.

cli → commands → (signin, net, mail, store) → wire → errors/results. A module may import from its own
layer and from the layers its row allows; nothing imports the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mailbotcore"

# layer -> the mailbotcore layers it may import (besides itself)
ALLOWED = {
    "errors": set(),
    "results": {"errors"},
    "logs": {"wire"},
    "wire": {"errors", "results"},
    "config": {"errors"},
    "store": {"errors", "results", "wire"},
    "mail": {"errors", "results", "wire"},
    "net": {"errors", "results", "wire", "config", "logs", "mail"},  # graph reads To/Cc from the MIME
    "signin": {"errors", "results", "wire", "config", "logs", "store", "net"},
    "commands": {"errors", "results", "wire", "config", "logs", "store", "net", "mail", "signin"},
    "render": {"errors", "results", "mail", "wire"},
    "cli": {"errors", "results", "wire", "config", "logs", "store", "net", "mail", "signin", "commands", "render"},
    "__main__": {"cli"},
    "__init__": set(),
}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "mailbotcore":
                names += [f"mailbotcore.{alias.name}" for alias in node.names if alias.name != "__version__"]
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    layer = layer_of(path)
    allowed = ALLOWED[layer] | {layer}
    wrong = [name for name in imports(path) if name.startswith("mailbotcore.") and name.split(".")[1] not in allowed]
    assert not wrong, f"{layer} may not import {wrong}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_cli_knows_argparse_and_stdout(path: Path) -> None:
    if layer_of(path) in ("cli", "render"):
        return
    text = path.read_text()
    assert "argparse" not in imports(path)
    assert "sys.stdout" not in text, "results go through the renderer"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_net_talks_to_servers(path: Path) -> None:
    if layer_of(path) == "net":
        return
    assert not {"imaplib", "smtplib", "ssl"} & set(imports(path))
    assert "create_connection" not in path.read_text()
