"""The decision log's file: a path it could not write is refused at start-up, naming
``decisions.path``, rather than every decision line being dropped while serving. And its
background writes log as the server, not as the request that happened to start them."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest
import structlog

from quorum.server.config import parse_config
from quorum.server.decisions import DecisionLog, check_log_path
from quorum.server.errors import ConfigError
from tests.conftest import sim_config


def _problem(path: str) -> str:
    with pytest.raises(ConfigError) as info:
        check_log_path(path)
    (problem,) = info.value.problems
    return problem


def test_a_new_file_in_a_writable_directory_is_fine(tmp_path: Path) -> None:
    check_log_path(str(tmp_path / "decisions.jsonl"))
    assert not (tmp_path / "decisions.jsonl").exists()  # checking creates nothing


def test_an_existing_file_is_appended_to(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    log.write_text('{"type": "decision"}\n')
    check_log_path(str(log))


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    problem = _problem(str(missing / "decisions.jsonl"))
    assert problem == f'decisions.path: directory "{missing}" does not exist'


def test_a_directory_is_not_a_log_file(tmp_path: Path) -> None:
    assert _problem(str(tmp_path)) == f"decisions.path: {tmp_path} is a directory"


def test_a_file_in_place_of_the_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    problem = _problem(str(tmp_path / "file" / "decisions.jsonl"))
    assert problem == f'decisions.path: "{tmp_path / "file"}" is not a directory'


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        problem = _problem(str(folder / "decisions.jsonl"))
    finally:
        folder.chmod(0o700)
    assert problem == f'decisions.path: directory "{folder}" is not writable'


def test_the_log_refuses_a_file_sink_it_could_not_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        DecisionLog(sink="file", path=str(tmp_path / "nope" / "decisions.jsonl"))
    assert info.value.problems[0].startswith("decisions.path: directory")
    # Other sinks never touch the path.
    DecisionLog(sink="stdout", path=str(tmp_path / "nope" / "decisions.jsonl"))


async def test_a_router_with_an_unwritable_log_does_not_start(tmp_path: Path) -> None:
    from quorum.server.router import Router

    path = str(tmp_path / "nope" / "decisions.jsonl")
    # The config itself is valid: the directory may exist where the server runs.
    config = parse_config(sim_config(decisions={"sink": "file", "path": path}))
    with pytest.raises(ConfigError) as info:
        Router(config)
    assert any(p.startswith("decisions.path: ") for p in info.value.problems)


async def test_a_writable_log_gets_every_line(tmp_path: Path) -> None:
    from quorum.server.domain import Message, Role, RouteRequest
    from quorum.server.router import Router

    path = tmp_path / "decisions.jsonl"
    router = Router(parse_config(sim_config(decisions={"sink": "file", "path": str(path)})))
    try:
        for i in range(3):
            await router.route(RouteRequest(f"r-{i}", (Message(Role.USER, "What is 2+2?"),)))
    finally:
        await router.close()
    assert router.decisions.dropped == 0
    assert len(path.read_text().splitlines()) == 3


def _nothing_listening() -> str:
    """A Redis URL where connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


async def test_the_writers_warnings_name_no_request() -> None:
    # The writer is started by whichever request first queues a line, inside that
    # request's context: its warnings (about every later line too) must not name it.
    from quorum.server.observability.logs import _add_request_id, request_scope

    log = DecisionLog(sink="redis", redis_url=_nothing_listening(), flush_interval_s=0)
    processors = [structlog.contextvars.merge_contextvars, _add_request_id]
    with structlog.testing.capture_logs(processors=processors) as logs:
        with (
            request_scope("first-request"),
            structlog.contextvars.bound_contextvars(trace_id="trace-of-first"),
        ):
            log.note({"type": "note"})
        for _ in range(100):
            if any(e["event"] == "decision_log_write_failed" for e in logs):
                break
            await asyncio.sleep(0.01)
        await log.close()
    (failed,) = [e for e in logs if e["event"] == "decision_log_write_failed"]
    assert "request_id" not in failed
    assert "trace_id" not in failed


async def test_an_index_write_that_fails_names_no_request() -> None:
    # One warning per outage, from a background write: no request is to blame for it.
    from quorum.server.domain import Message, Role, RouteRequest
    from quorum.server.observability.logs import _add_request_id, request_scope
    from quorum.server.router import Router

    data = sim_config(state={"redis_url": _nothing_listening()}, decisions={"sink": "none"})
    router = Router(parse_config(data))
    processors = [structlog.contextvars.merge_contextvars, _add_request_id]
    try:
        with structlog.testing.capture_logs(processors=processors) as logs:
            with request_scope("some-request"):
                await router.route(RouteRequest("some-request", (Message(Role.USER, "2+2?"),)))
            for _ in range(100):
                if any(e["event"] == "decision_index_write_failed" for e in logs):
                    break
                await asyncio.sleep(0.01)
    finally:
        await router.close()
    (failed,) = [e for e in logs if e["event"] == "decision_index_write_failed"]
    assert "request_id" not in failed
