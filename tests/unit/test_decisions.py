"""The decision log's file: a path it could not write is refused at start-up, naming
``decisions.path``, rather than every decision line being dropped while serving."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
