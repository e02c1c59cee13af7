"""The one logging setup: JSON lines with statefleet's fields, a traceback once per kind."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from statefleet.engine.logging_setup import LogSettings, TracebackOnce, configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_ts_level_logger_message_and_context(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(level="INFO", format="json"))
    configure_logging(LogSettings(level="INFO", format="json"))  # replaces, never doubles
    log = logging.getLogger("statefleet.test")
    log.debug("not written at INFO")
    log.info("task %s failed", "t-1", extra={"tenant_id": "acme", "task_id": "t-1"})
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    record = json.loads(lines[0])
    assert record["level"] == "INFO"
    assert record["logger"] == "statefleet.test"
    assert record["message"] == "task t-1 failed"
    assert (record["tenant_id"], record["task_id"]) == ("acme", "t-1")
    assert record["ts"].endswith("Z")
    assert "T" in record["ts"]


def test_text_lines_have_timestamp_level_and_logger(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(level="WARNING", format="text"))
    logging.getLogger("statefleet.test").info("hidden")
    logging.getLogger("statefleet.test").warning("shown")
    (line,) = capsys.readouterr().err.splitlines()
    stamp, level, logger, message = line.split(" ", 3)
    assert stamp.endswith("Z")
    assert (level, logger, message) == ("WARNING", "statefleet.test:", "shown")


def _record(message: str, error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException as raised:
        exc_info = (type(raised), raised, raised.__traceback__)
    return logging.LogRecord("x", logging.ERROR, __file__, 1, message, (5000,), exc_info)


def test_a_repeated_failure_keeps_its_traceback_only_the_first_time() -> None:
    once = TracebackOnce()
    first = _record("sweep failed; again in %d ms", ConnectionRefusedError("refused"))
    second = _record("sweep failed; again in %d ms", ConnectionRefusedError("refused"))
    other = _record("sweep failed; again in %d ms", TimeoutError("slow"))
    assert all(once.filter(r) for r in (first, second, other))
    assert first.exc_info is not None
    assert second.exc_info is None
    assert second.getMessage() == (
        "sweep failed; again in 5000 ms (ConnectionRefusedError: refused)"
    )
    assert other.exc_info is not None  # another kind of failure: its own traceback
