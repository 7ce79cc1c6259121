"""``quorum router export-log``: a decision log kept in a Redis stream, as JSON lines.

With ``decisions.sink: redis`` every record (decision, feedback, shadow verdict) is an entry of
the stream ``<state.namespace>:decisions`` (``quorum:decisions`` by default) whose ``record``
field holds the JSON line a file sink would have written. This command writes those lines,
oldest first, to a file or stdout, so ``quorum router report --log`` and ``quorum router train
--feedback`` read a Redis-kept log like any other. ``--since`` takes a stream id (e.g. the
last one a previous export printed on stderr) and exports only the entries after it.

Exit status 0 when exported (an empty or missing stream exports nothing), 2 on a bad option
(a ``--redis`` URL is checked as ``state.redis_url`` is) or when Redis cannot be read; every
error is one line on stderr. A reader of stdout that goes away (``| head -1``) stops the export
quietly (``quorum`` exits 141, as a program stopped by SIGPIPE).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any

BATCH = 1_000
_STREAM_ID = re.compile(r"^[0-9]+(-[0-9]+)?$")


class ExportError(Exception):
    """Redis could not be read, or the stream holds something that is not a decision log."""


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL the servers' ``state.redis_url`` would take (the same
    check: e.g. ``redis://host:6379/abc`` names no database, and is not read as db 0), or
    None."""
    from pydantic import ValidationError

    from quorum.server.config import StateConfig

    try:
        StateConfig.model_validate({"redis_url": url})
    except ValidationError as exc:
        error = exc.errors()[0]
        return str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    return None


def _stream_id(value: str) -> str:
    if not _STREAM_ID.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a stream id (MILLISECONDS[-SEQ])")
    return value


def entries(client: Any, stream: str, since: str | None = None) -> Iterator[tuple[str, bytes]]:
    """The stream's ``(id, record)`` entries after ``since`` (all, if None), oldest first,
    read ``BATCH`` at a time."""
    start = f"({since}" if since else "-"
    while True:
        batch = client.xrange(stream, min=start, max="+", count=BATCH)
        for raw_id, fields in batch:
            entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            record = fields.get(b"record", fields.get("record"))
            if record is None:
                raise ExportError(f"stream {stream}: entry {entry_id} has no 'record' field")
            yield entry_id, record if isinstance(record, bytes) else str(record).encode()
        if len(batch) < BATCH:
            return
        start = f"({entry_id}"


def export(client: Any, stream: str, out: IO[bytes], since: str | None = None) -> tuple[int, str]:
    """Write the stream's records to ``out``, one per line; returns how many and the last
    entry's id ("" when none)."""
    count, last = 0, ""
    for entry_id, record in entries(client, stream, since):
        out.write(record.rstrip(b"\n") + b"\n")
        count, last = count + 1, entry_id
    return count, last


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quorum router export-log",
        description="Write a decision log kept in a Redis stream as JSON lines.",
    )
    parser.add_argument(
        "--redis", required=True, metavar="URL", help="the servers' state.redis_url"
    )
    parser.add_argument(
        "--namespace",
        default="quorum",
        help="the servers' state.namespace: the stream is <namespace>:decisions (default quorum)",
    )
    parser.add_argument("--stream", help="the stream's key itself, if not the namespace's")
    parser.add_argument("--out", type=Path, help="write here (default: stdout)")
    parser.add_argument(
        "--since", type=_stream_id, metavar="ID", help="only entries after this stream id"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.stream = args.stream or f"{args.namespace}:decisions"
    # Checked as the config checks state.redis_url; not echoed: it may hold a password.
    problem = redis_url_problem(args.redis) if args.redis else "empty (give state.redis_url)"
    if problem is not None:
        print(f"quorum router export-log: --redis: {problem}", file=sys.stderr)
        return 2
    import redis

    try:
        client = redis.Redis.from_url(args.redis, socket_timeout=10)
    except ValueError as exc:
        print(f"quorum router export-log: --redis: {exc}", file=sys.stderr)
        return 2
    try:
        client.ping()  # before --out is created: an unreachable Redis leaves no empty file
        target = args.out.open("xb") if args.out is not None else nullcontext(sys.stdout.buffer)
        with target as out:
            count, last = export(client, args.stream, out, args.since)
    except FileExistsError:
        print(f"quorum router export-log: --out: {args.out} exists", file=sys.stderr)
        return 2
    except BrokenPipeError:
        if args.out is not None:
            print(f"quorum router export-log: --out: {args.out}: broken pipe", file=sys.stderr)
            return 2
        raise  # stdout's reader went away (| head): the command stops quietly (quorum.cli)
    except OSError as exc:
        where = f"--out: {args.out}" if args.out is not None else "stdout"
        print(f"quorum router export-log: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"quorum router export-log: cannot read {args.stream}: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"quorum router export-log: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    print(f"exported {count} records" + (f", the last {last}" if last else ""), file=sys.stderr)
    return 0
