"""Standard-library log records of the libraries serve uses (OpenTelemetry's exporter) are
JSON lines like every other log line, never plain text on stderr."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from quorum.server.observability.logs import configure_logging

EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.exporter"
ROUTED = ("opentelemetry",)  # the loggers configure_logging takes over


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = {
        name: (logger.handlers[:], logger.level, logger.propagate)
        for name in ROUTED
        for logger in [logging.getLogger(name)]
    }
    config = structlog.get_config()
    yield
    structlog.configure(**config)
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _json_lines(err: str) -> list[dict[str, object]]:
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(line.startswith("{") for line in lines), err
    return [json.loads(line) for line in lines]


def test_the_exporters_warnings_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    capsys.readouterr()
    # What the OTLP exporter logs when the collector is down (it was printed as plain text).
    logging.getLogger(EXPORTER).warning(
        "Transient error %s encountered while exporting %s to %s, retrying in %.2fs.",
        "StatusCode.UNAVAILABLE",
        "traces",
        "127.0.0.1:1",
        1.2,
    )
    try:
        raise RuntimeError("no collector")
    except RuntimeError:
        logging.getLogger(EXPORTER).exception("Failed to export %s", "traces")
    warning, error = _json_lines(capsys.readouterr().err)
    assert warning["event"] == error["event"] == "library_log"
    assert (warning["level"], warning["logger"]) == ("warning", EXPORTER)
    assert warning["message"] == (
        "Transient error StatusCode.UNAVAILABLE encountered while exporting traces to "
        "127.0.0.1:1, retrying in 1.20s."
    )
    assert error["level"] == "error" and "RuntimeError: no collector" in str(error["exception"])


def test_library_lines_below_the_log_level_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("error")
    configure_logging("error")  # configured twice: still one line per record
    capsys.readouterr()
    logging.getLogger(EXPORTER).warning("dropped")
    logging.getLogger(EXPORTER).error("kept")
    (line,) = _json_lines(capsys.readouterr().err)
    assert line["message"] == "kept"
