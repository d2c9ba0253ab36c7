"""render.py and logs.py: what reaches a terminal from outside is made safe (no escape sequences,
no bidi controls); JSON keeps the data but escapes what a terminal would act on."""

from __future__ import annotations

import io
import json
import logging

from mailbotcore import logs
from mailbotcore.render import JSON, NDJSON, TEXT, Renderer
from mailbotcore.results import Check, Notice, OutboxRecord

HOSTILE = "evil\x1b]52;c;ZXZpbA==\x07\x1b[2J\u202egnp.exe\x9b31m\ud800"


def _render(result: object, fmt: str = TEXT) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    Renderer(out, err, fmt).one(result)
    return out.getvalue(), err.getvalue()


def test_notices_are_one_clean_line() -> None:
    _, err = _render(Notice(f"folder {HOSTILE}\nfake: line"))
    assert err == "folder evil ]52;c;ZXZpbA== [2Jgnp.exe 31m\ufffd fake: line\n"


def test_outbox_failed_lines_are_clean() -> None:
    record = OutboxRecord("q\x1b[2J.eml", "failed", "/q/failed/q.eml", f"554 5.7.1 {HOSTILE}\nhint: x")
    _, err = _render(record)
    assert err == "failed: q [2J.eml: 554 5.7.1 evil ]52;c;ZXZpbA== [2Jgnp.exe 31m\ufffd\n"


def test_doctor_lines_are_clean() -> None:
    out, _ = _render(Check("FAIL", "SMTP sign-in", f"535 {HOSTILE}", hint=f"try {HOSTILE}"))
    assert out == (
        "FAIL SMTP sign-in: 535 evil ]52;c;ZXZpbA== [2Jgnp.exe 31m\ufffd\n"
        "     hint: try evil ]52;c;ZXZpbA== [2Jgnp.exe 31m\ufffd\n"
    )


def test_json_escapes_what_a_terminal_would_act_on_and_keeps_the_data() -> None:
    record = OutboxRecord("q.eml", "failed", "/q/failed/q.eml", HOSTILE)
    for fmt in (JSON, NDJSON):
        out, _ = _render(record, fmt)
        assert not any(c in out for c in "\x1b\x07\x9b\u202e\ud800")
        out.encode("utf-8")  # strict: no lone surrogate written
        assert json.loads(out)["error"] == HOSTILE


def test_log_lines_are_clean_at_every_verbosity(capsys) -> None:
    logs.setup(2, False)
    try:
        logging.getLogger("mailbot.smtp").info("server said %s", HOSTILE)
    finally:
        logs.setup(0, False)
    err = capsys.readouterr().err
    assert err == "INFO: server said evil ]52;c;ZXZpbA== [2Jgnp.exe 31m\ufffd\n"
