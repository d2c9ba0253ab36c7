"""A plain .env file is read without importing python-dotenv, with exactly dotenv's result."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from mailbotcore.config import _plain_env_file, _read_env_file

PLAIN = [
    "",
    "A=1",
    "export B=x",
    "# c\nA=1\n\nB=",
    "A = 1 ",
    "A.b=1",
    "A=1\r\nB=2",
    "  A=1",
    "A=é",
    "A=1\nA=2",
    "A=x=y",
]
NOT_PLAIN = ["A=1 # c", "A='x'", 'A="x y"', "A=a b", "A=$B", "A=${B}", "A=\\n", "A", "=1"]


@pytest.mark.parametrize("text", PLAIN + NOT_PLAIN)
def test_plain_subset_reads_as_dotenv_or_defers_to_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    theirs = {k: v for k, v in dotenv_values(path).items() if v is not None}
    ours = _plain_env_file(path)
    if text in PLAIN:
        assert ours == theirs
    else:
        assert ours is None
    assert _read_env_file(path) == theirs
