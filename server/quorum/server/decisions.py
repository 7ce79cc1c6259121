"""The decision log: every routing decision with its outcome, and feedback on it later.

Each routed request becomes one JSON line (classification, plan, attempts with gate
verdicts, cost, latency; the prompt only when configured) written to stdout, a file or
a Redis stream. ``Feedback`` appends a feedback line for a request id the log knows —
in-process by default, across replicas through Redis when configured — and unknown ids
are NOT_FOUND. Writing happens off the request path: a decision is queued as it is
(its values are immutable) and a background task turns the queue into JSON lines and
writes them in one batch at most every ``flush_interval_s``, so a busy server pays one
write per batch rather than one per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
import structlog

from quorum.server.domain import (
    Attempt,
    Classification,
    ExecutionPlan,
    RouteRequest,
    RouteResult,
    Usage,
)
from quorum.server.errors import ConfigError, NotFound
from quorum.server.values import value_type

log = structlog.get_logger("quorum.decisions")

FeedbackKind = Literal["regenerated", "thumbs_up", "thumbs_down", "score", "label"]
_QUEUE_LIMIT = 10_000
# Where versions before per-tenant, per-namespace keys kept the shared decision index.
LEGACY_STREAM = "quorum:decisions"


@value_type
class Feedback:
    """An outcome reported for an earlier request."""

    request_id: str
    kind: FeedbackKind
    score: float | None = None
    label: str = ""
    comment: str = ""


def feedback_is_good(fb: Feedback) -> bool | None:
    """Whether feedback says the answer was good, bad, or neither (a label)."""
    if fb.kind == "thumbs_up":
        return True
    if fb.kind in ("thumbs_down", "regenerated"):
        return False
    if fb.kind == "score" and fb.score is not None:
        return fb.score >= 0.5
    return None


@value_type
class FailedDecision:
    """A request that was classified and planned but got no answer: what the log keeps
    of it (the error's gRPC code and reason, every attempt)."""

    request_id: str
    classification: Classification
    plan: ExecutionPlan
    attempts: tuple[Attempt, ...]
    code: str  # the gRPC status code's name, e.g. "UNAVAILABLE"
    reason: str  # the error's reason, e.g. "ALL_ATTEMPTS_FAILED"
    total_ms: float
    guards: tuple[str, ...] = ()


def _decided(
    request: RouteRequest,
    request_id: str,
    c: Classification,
    plan: ExecutionPlan,
    ts: float | None,
) -> dict[str, Any]:
    return {
        "type": "decision",
        "ts": time.time() if ts is None else ts,
        "request_id": request_id,
        "tenant": request.tenant,
        "task": c.task,
        "difficulty": c.difficulty.name.lower(),
        "confidence": round(c.confidence, 4),
        "classifier": c.classifier,
        "agent": c.agent,
        "strategy": plan.strategy.value,
        "plan": [{"role": s.role, "models": [x.model for x in s.candidates]} for s in plan.stages],
        "reasons": [r.code for r in plan.reasons],
    }


def _attempt_lines(attempts: tuple[Attempt, ...]) -> list[dict[str, Any]]:
    return [
        {
            "model": a.model,
            "role": a.role,
            "outcome": a.outcome.value,
            "reason": a.error_reason or a.reason[:120],
            "latency_ms": round(a.latency_ms, 2),
            "cost_usd": a.cost_usd,
            "gate": None
            if a.gate is None
            else {
                "passed": a.gate.passed,
                "failed": [g.name for g in a.gate.checks if not g.passed],
            },
        }
        for a in attempts
    ]


def decision_record(
    request: RouteRequest, result: RouteResult, include_prompt: bool, ts: float | None = None
) -> dict[str, Any]:
    """The JSON-able record of one decision (no prompt text unless asked); ``ts`` is
    when it was decided (now, if not given)."""
    record = _decided(request, result.request_id, result.classification, result.plan, ts)
    record.update(
        {
            "model": result.model,
            "attempts": _attempt_lines(result.attempts),
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
            "cost_usd": result.cost_usd,
            "baseline_cost_usd": result.baseline_cost_usd,
            "total_ms": round(result.timings.total_ms, 2),
            "cached": result.cached,
            "guards": list(result.guards),
        }
    )
    if include_prompt:
        record["prompt"] = request.prompt_text
    return record


def failure_record(
    request: RouteRequest, failed: FailedDecision, include_prompt: bool, ts: float | None = None
) -> dict[str, Any]:
    """The JSON-able record of a decision that ended without an answer: no ``model``,
    and an ``error`` with the status the caller got."""
    record = _decided(request, failed.request_id, failed.classification, failed.plan, ts)
    usage = sum((a.usage for a in failed.attempts), Usage())
    record.update(
        {
            "model": "",
            "attempts": _attempt_lines(failed.attempts),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cost_usd": sum(a.cost_usd for a in failed.attempts),
            "total_ms": round(failed.total_ms, 2),
            "cached": False,
            "guards": list(failed.guards),
            "error": {"code": failed.code, "reason": failed.reason},
        }
    )
    if include_prompt:
        record["prompt"] = request.prompt_text
    return record


def _write_stdout(data: bytes) -> None:
    """Write to standard output's bytes, or its text where it has none (a test's capture)."""
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()  # anything written as text before goes first
        buffer.write(data)
        buffer.flush()
    else:
        out.write(data.decode("utf-8"))
        out.flush()


def check_log_path(path: str) -> None:
    """:class:`ConfigError` naming ``decisions.path`` when a decision log file there could
    not be appended to: its directory is missing or not writable, or it is a directory or
    a read-only file. Checked at start-up: once serving, a write that fails only drops
    the lines (with a warning), so a bad path would otherwise lose every decision."""
    target = Path(path)
    folder = target.parent
    try:
        if target.is_dir():
            problem = f"{path} is a directory"
        elif target.exists():
            problem = "" if os.access(target, os.W_OK) else f"{path} is not writable"
        elif not folder.exists():
            problem = f'directory "{folder}" does not exist'
        elif not folder.is_dir():
            problem = f'"{folder}" is not a directory'
        elif not os.access(folder, os.W_OK | os.X_OK):
            problem = f'directory "{folder}" is not writable'
        else:
            problem = ""
    except OSError as exc:
        problem = f"cannot check {path} ({exc.strerror or exc})"
    if problem:
        raise ConfigError([f"decisions.path: {problem}"])


@value_type
class Decided:
    """What the log remembers of a decision, for feedback: who answered which task, for
    which tenant, and whether this is the first verdict on it (only that one teaches)."""

    model: str
    task: str
    tenant: str = ""
    first_verdict: bool = True


class _Index:
    """Request ids the log knows, bounded by count and age.

    Entries are tuples of a float and strings, which the garbage collector stops
    tracking: tens of thousands of them would otherwise be scanned by every full
    collection."""

    def __init__(self, max_entries: int, retention_s: float) -> None:
        self._ids: OrderedDict[str, tuple[float, str, str, str]] = OrderedDict()
        self._judged: OrderedDict[str, None] = OrderedDict()  # ids that had a verdict
        self._max = max_entries
        self._retention = retention_s

    def add(self, request_id: str, now: float, decided: Decided) -> None:
        self._ids[request_id] = (now, decided.model, decided.task, decided.tenant)
        self._ids.move_to_end(request_id)
        self._judged.pop(request_id, None)  # a new decision under a reused id
        while len(self._ids) > self._max:
            self._ids.popitem(last=False)

    def get(self, request_id: str, now: float) -> Decided | None:
        seen = self._ids.get(request_id)
        if seen is None or now - seen[0] > self._retention:
            return None
        return Decided(seen[1], seen[2], seen[3])

    def judge(self, request_id: str) -> bool:
        """Note a verdict on ``request_id``; whether it is the first."""
        if request_id in self._judged:
            return False
        self._judged[request_id] = None
        while len(self._judged) > self._max:
            self._judged.popitem(last=False)
        return True


class DecisionLog:
    """Queues decision and feedback lines and writes them in the background."""

    def __init__(
        self,
        *,
        sink: Literal["none", "stdout", "file", "redis"] = "stdout",
        path: str | None = None,
        include_prompts: bool = False,
        retention_s: float = 86_400.0,
        max_entries: int = 50_000,
        redis_url: str | None = None,
        stream_key: str = "quorum:decisions",
        flush_interval_s: float = 0.05,
        per_tenant: bool = False,
    ) -> None:
        if sink == "file" and path is not None:
            check_log_path(path)  # refuse to start rather than drop every line
        self._sink = sink
        self._flush_interval_s = flush_interval_s
        self._path = path
        self._include_prompts = include_prompts
        self._index = _Index(max_entries, retention_s)
        self._retention_s = retention_s
        # A queued entry is a ready record, or a decision (request, result, time) whose
        # record the writer builds.
        self._queue: list[dict[str, Any] | tuple[RouteRequest, RouteResult, float]] = []
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._file: BinaryIO | None = None
        self._redis_url = redis_url
        self._stream_key = stream_key
        # With authentication every request has a known tenant, and two tenants may well
        # use the same request id: each keeps its own decision (and its one verdict).
        self._per_tenant = per_tenant
        self._redis: Any = None
        self._closing = False
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()
        self.dropped = 0

    # -- recording -----------------------------------------------------------------

    def record(self, request: RouteRequest, result: RouteResult) -> None:
        """Remember the decision (for Feedback) and queue its line. Never blocks.

        An answer served from the cache is remembered without its model: feedback on it
        is logged, but it was one answer, however many times it was served, so it does
        not teach the planner again."""
        model = "" if result.cached else result.model
        decided = Decided(model, result.classification.task, request.tenant)
        key = self._key(request.tenant, result.request_id)
        self._index.add(key, time.monotonic(), decided)
        if self._redis_url:
            self._remember_shared(key, decided)
        if self._sink != "none":
            self._enqueue((request, result, time.time()))

    def record_failure(self, request: RouteRequest, failed: FailedDecision) -> None:
        """Remember a decision that got no answer and queue its line. Feedback on it is
        logged, but with no model that answered it teaches the planner nothing."""
        decided = Decided("", failed.classification.task, request.tenant)
        key = self._key(request.tenant, failed.request_id)
        self._index.add(key, time.monotonic(), decided)
        if self._redis_url:
            self._remember_shared(key, decided)
        if self._sink != "none":
            self._enqueue(failure_record(request, failed, self._include_prompts))

    def note(self, record: dict[str, Any]) -> None:
        """Queue any other record (e.g. a shadow verdict) for the log."""
        if self._sink != "none":
            self._enqueue(record)

    async def feedback(self, fb: Feedback, *, tenant: str | None = None) -> Decided:
        """Record feedback and say what it was about; NotFound for an id the log lacks,
        or (with ``tenant``) for another tenant's request, which is not told apart from
        an unknown one. Only the first verdict on a request (good or bad: not a label) is
        marked ``first_verdict``; a label's line carries no such key."""
        key = self._key(tenant or "", fb.request_id)
        judged = f"{self._stream_key}:judged:{key}"
        decided = self._index.get(key, time.monotonic())
        if decided is None:
            decided, older = await self._shared_get(key, fb.request_id, tenant)
            if older:  # kept by an earlier version: judged where that version judged it
                judged = f"{LEGACY_STREAM}:judged:{fb.request_id}"
        if decided is not None and tenant is not None and decided.tenant != tenant:
            decided = None
        if decided is None:
            raise NotFound(
                f"no decision recorded for request_id {fb.request_id!r} "
                f"(kept for {self._retention_s:.0f}s)",
                metadata={"request_id": fb.request_id},
            )
        record: dict[str, Any] = {
            "type": "feedback",
            "ts": time.time(),
            "request_id": fb.request_id,
            "tenant": decided.tenant,
            "kind": fb.kind,
        }
        if fb.score is not None:
            record["score"] = fb.score
        if fb.label:
            record["label"] = fb.label
        if fb.comment and self._include_prompts:
            record["comment"] = fb.comment
        first = False
        if feedback_is_good(fb) is not None:  # a label is no verdict: it uses up none
            first = self._index.judge(key) and await self._shared_judge(judged)
            record["first_verdict"] = first
        if self._sink != "none":
            self._enqueue(record)
        return replace(decided, first_verdict=first)

    def _key(self, tenant: str, request_id: str) -> str:
        """What a decision is remembered under: its request id, and with authentication
        its tenant's name too (a space joins them: neither may hold one)."""
        return f"{tenant} {request_id}" if self._per_tenant else request_id

    def _enqueue(self, entry: dict[str, Any] | tuple[RouteRequest, RouteResult, float]) -> None:
        if len(self._queue) >= _QUEUE_LIMIT:
            self.dropped += 1
            return
        self._queue.append(entry)
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._run())
        if not wakeup.is_set():
            wakeup.set()

    def _line(self, entry: dict[str, Any] | tuple[RouteRequest, RouteResult, float]) -> bytes:
        """One compact JSON line (orjson: a twentieth of the stdlib encoder's time)."""
        if isinstance(entry, tuple):
            request, result, ts = entry
            entry = decision_record(request, result, self._include_prompts, ts)
        return orjson.dumps(entry)

    # -- shared index through Redis ---------------------------------------------------

    def _client(self) -> Any:
        if self._redis is None and self._redis_url:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(self._redis_url, socket_timeout=0.5)
        return self._redis

    def _remember_shared(self, key: str, decided: Decided) -> None:
        async def put() -> None:
            try:
                async with self._client().pipeline(transaction=False) as pipe:
                    pipe.set(
                        f"{self._stream_key}:id:{key}",
                        f"{decided.model}\t{decided.task}\t{decided.tenant}",
                        ex=int(self._retention_s),
                    )
                    # A new decision under a reused id: its verdict is still to give, as
                    # in the process's own index.
                    pipe.delete(f"{self._stream_key}:judged:{key}")
                    await pipe.execute()
            except Exception as exc:  # Redis trouble must never fail a request
                log.warning("decision_index_unavailable", error=type(exc).__name__)

        task = asyncio.get_running_loop().create_task(put())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _shared_get(
        self, key: str, request_id: str, tenant: str | None
    ) -> tuple[Decided | None, bool]:
        """The decision under ``key`` in Redis, and whether an earlier version kept it.

        Versions before decisions were kept per tenant and namespace wrote every decision
        under ``quorum:decisions:id:<request id>``: on a miss that key is read too, and its
        decision taken (with authentication, only when it is the caller's tenant's), so a
        rolling upgrade loses no Feedback. Its verdict is then judged where that version
        judged it."""
        if not self._redis_url:
            return None, False
        legacy = f"{LEGACY_STREAM}:id:{request_id}"
        older = False
        try:
            client = self._client()
            value = await client.get(f"{self._stream_key}:id:{key}")
            if value is None and legacy != f"{self._stream_key}:id:{key}":
                value, older = await client.get(legacy), True
        except Exception as exc:
            log.warning("decision_index_unavailable", error=type(exc).__name__)
            return None, False
        if value is None:
            return None, False
        text = value.decode() if isinstance(value, bytes) else str(value)
        model, _, rest = text.partition("\t")
        task, _, owner = rest.partition("\t")
        if older and tenant is not None and owner != tenant:
            return None, False
        return Decided(model, task, owner), older

    async def _shared_judge(self, key: str) -> bool:
        """Whether this is the first verdict on the decision whose judged key is ``key``
        across replicas (True without Redis, or when it cannot be asked: the local check
        has passed)."""
        if not self._redis_url:
            return True
        try:
            first = await self._client().set(key, "1", nx=True, ex=int(self._retention_s))
        except Exception as exc:
            log.warning("decision_index_unavailable", error=type(exc).__name__)
            return True
        return bool(first)

    # -- writing -------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            if self._flush_interval_s > 0 and not self._closing:
                # Let a batch gather; close() cuts the wait short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), self._flush_interval_s)
            self._wakeup.clear()
            await self._flush()
            if self._closing:
                return

    async def _flush(self) -> None:
        entries, self._queue = self._queue, []
        if not entries:
            return
        lines = [self._line(entry) for entry in entries]
        try:
            if self._sink == "stdout":
                _write_stdout(b"\n".join(lines) + b"\n")
            elif self._sink == "file":
                await asyncio.to_thread(self._append, lines)
            elif self._sink == "redis":
                client = self._client()
                async with client.pipeline(transaction=False) as pipe:
                    for line in lines:
                        pipe.xadd(
                            self._stream_key, {"record": line}, maxlen=1_000_000, approximate=True
                        )
                    await pipe.execute()
        except Exception as exc:
            self.dropped += len(lines)
            log.warning("decision_log_write_failed", error=type(exc).__name__, lines=len(lines))

    def _append(self, lines: list[bytes]) -> None:
        if self._file is None:
            assert self._path is not None
            self._file = Path(self._path).open("ab")  # noqa: SIM115
        self._file.write(b"\n".join(lines) + b"\n")
        self._file.flush()

    async def close(self) -> None:
        """Flush what is queued and stop the writer."""
        if self._writer is not None and self._wakeup is not None:
            self._closing = True
            self._closed.set()
            self._wakeup.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=5.0)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._flush()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
