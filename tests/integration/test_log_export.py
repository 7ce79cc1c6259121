"""``quorum router export-log``: a Redis-kept decision log as JSON lines, read like a file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from quorum.route.v1 import route_service_pb2 as svc
from quorum.server.config import parse_config
from quorum.server.log_export import main as export_main
from quorum.server.report import main as report_main
from tests.conftest import RedisServer, running_server, sim_config


async def _written(url: str, n: int) -> None:
    client = redis.Redis.from_url(url)
    for _ in range(100):  # lines are written off the request path, in batches
        if client.xlen("quorum:decisions") >= n:
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the stream never held {n} records")


async def test_a_redis_kept_log_exports_as_the_lines_a_file_would_hold(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = sim_config(state={"redis_url": redis_server.url}, decisions={"sink": "redis"})
    async with running_server(parse_config(data)) as (_, client):
        await client.route("What is 2 + 2?", request_id="x-1")
        await client.feedback(
            svc.FeedbackRequest(request_id="x-1", kind=svc.FEEDBACK_KIND_THUMBS_UP)
        )
        await _written(redis_server.url, 2)
        out = tmp_path / "decisions.jsonl"
        assert export_main(["--redis", redis_server.url, "--out", str(out)]) == 0
        last = capsys.readouterr().err.strip().rsplit(" ", 1)[1]
        await client.route("What is 3 + 3?", request_id="x-2")
        await _written(redis_server.url, 3)
        later = tmp_path / "later.jsonl"
        assert export_main(["--redis", redis_server.url, "--since", last, "--out", str(later)]) == 0
    decision, feedback = [json.loads(line) for line in out.read_text().splitlines()]
    assert (decision["type"], decision["request_id"]) == ("decision", "x-1")
    assert (feedback["type"], feedback["kind"]) == ("feedback", "thumbs_up")
    (newer,) = [json.loads(line) for line in later.read_text().splitlines()]
    assert newer["request_id"] == "x-2"
    assert report_main(["--log", str(out)]) == 0  # a log like any other
    # The stream of another namespace is another log.
    elsewhere = tmp_path / "elsewhere.jsonl"
    assert (
        export_main(["--redis", redis_server.url, "--namespace", "blue", "--out", str(elsewhere)])
        == 0
    )
    assert elsewhere.read_text() == ""
    # An existing file is not overwritten.
    assert export_main(["--redis", redis_server.url, "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 2


def test_an_unreachable_redis_is_one_line_and_leaves_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.jsonl"
    code = export_main(["--redis", "redis://127.0.0.1:1/0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("quorum router export-log: cannot read quorum:decisions:")
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--redis", "nope://x"], "--redis:"),
        (["--redis", "redis://x", "--since", "abc"], "--since"),
        # read as db 0 before; refused in state.redis_url
        (
            ["--redis", "redis://127.0.0.1:1/abc"],
            '--redis: the database after the host must be a number, not "abc"',
        ),
        (["--redis", "redis://h:p/0"], "--redis: not a valid URL"),
        (["--redis", ""], "--redis: empty"),
    ],
)
def test_bad_options_name_themselves(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = export_main(argv)
    except SystemExit as exc:  # argparse's own refusal
        code = int(exc.code or 0)
    assert code == 2
    assert problem in capsys.readouterr().err


QUORUM = Path(sys.executable).with_name("quorum")


def _fill(url: str, n: int) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline()
    for i in range(n):
        record = json.dumps({"type": "decision", "request_id": f"r{i}", "pad": "x" * 200})
        pipe.xadd("quorum:decisions", {"record": record})
    pipe.execute()


def test_a_reader_that_stops_early_stops_the_export_quietly(redis_server: RedisServer) -> None:
    # `export-log | head -1` printed "--out: None: Broken pipe" and exited 2.
    _fill(redis_server.url, 2500)  # 500 kB: more than a pipe holds
    with subprocess.Popen(
        [str(QUORUM), "router", "export-log", "--redis", redis_server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["request_id"] == "r0"
        proc.stdout.close()  # as head does once it has its line
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 141  # as a program SIGPIPE stopped (cat, in that pipe)
    assert err == b""


def test_stdout_that_cannot_be_written_is_named_stdout(redis_server: RedisServer) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    _fill(redis_server.url, 10)
    with open("/dev/full", "wb") as full:
        result = subprocess.run(
            [str(QUORUM), "router", "export-log", "--redis", redis_server.url],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr == "quorum router export-log: stdout: No space left on device\n"
