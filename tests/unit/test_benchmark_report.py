"""README -> Performance is generated from the committed results files, never copied by hand.

``python benchmarks/report.py --readme`` rewrites the blocks between the marker comments from
``benchmarks/results/latest.json`` (the benchmark) and ``benchmarks/results/soak.json`` (the soak
run); this test fails when the README differs from what the script generates.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import report
from tests.conftest import REPO


def test_readme_performance_is_what_the_report_script_generates() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert report.START in readme and report.END in readme
    assert report.SOAK_START in readme and report.SOAK_END in readme
    assert report.RESULTS.exists() and report.SOAK.exists(), "commit benchmarks/results/latest.json and soak.json"
    assert report.generate(readme) == readme, "run: python benchmarks/report.py --readme"


def test_generated_block_carries_machine_date_versions_and_every_target() -> None:
    data = json.loads(report.RESULTS.read_text(encoding="utf-8"))
    section = report.readme_section(data)
    m = data["machine"]
    for fact in (m["date"], m["python"], m["dovecot"], m["postfix"]):
        assert str(fact) in section
    for target in data["targets"]:
        assert f"| {target['name']} |" in section


def test_splice_replaces_only_the_block_and_needs_both_markers() -> None:
    text = f"before\n{report.START}\nold\n{report.END}\nafter\n"
    assert report.splice(text, "new\n") == f"before\n{report.START}\nnew\n{report.END}\nafter\n"
    with pytest.raises(ValueError, match="has no"):
        report.splice("no markers here\n", "new\n")
