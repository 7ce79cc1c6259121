"""The decision log: every routing decision with its outcome, and feedback on it later.

Each routed request becomes one JSON line (classification, plan, attempts with gate
verdicts, cost, latency; the prompt only when configured) written to stdout, a file or
a Redis stream. ``Feedback`` appends a feedback line for a request id the log knows —
in-process by default, across replicas through Redis when configured — and unknown ids
are NOT_FOUND. Writing happens off the request path: a decision is queued as it is
(its values are immutable) and a background task turns the queue into JSON lines and
writes them in one batch at most every ``flush_interval_s``, so a busy server pays one
write per batch rather than one per request.

Redis is written off the request path too, and an outage there fails no request. What it
could not take is held in memory and written once Redis answers again: decision-log lines
for the stream (in order, before newer lines, on the next flush, which comes within
``_RETRY_INTERVAL_S`` even when no new line does) and decisions for the shared index
(after the next index write that succeeds, or on the next flush), each for what is left
of its ``retention_s`` (one past it is not written: Feedback on it would be refused by
then). Each backlog is bounded by count (:data:`_STREAM_BACKLOG_LIMIT`,
:data:`_INDEX_BACKLOG_LIMIT`): past that the oldest is dropped, counted (``dropped``,
``index_dropped``), with one warning per outage rather than one per line. What is held
is lost if the process ends before Redis is back. A Feedback whose decision this replica
does not hold, sent while Redis cannot be read, is RESOURCE_EXHAUSTED with reason
``DECISION_STORE_UNAVAILABLE`` and a retry delay, as for the budget store: the decision
may well exist, and NOT_FOUND would tell the caller to give up.

The background tasks (the writer, index writes and their replay) run in the context the
log was made in, the server's: created from a request's, every line they log would carry
that request's id, trace and tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from itertools import islice
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
from quorum.server.errors import ConfigError, NotFound, ResourceExhausted
from quorum.server.values import value_type

log = structlog.get_logger("quorum.decisions")

FeedbackKind = Literal["regenerated", "thumbs_up", "thumbs_down", "score", "label"]
_QUEUE_LIMIT = 10_000
# While Redis cannot be written: decision-log lines held for the stream, and decisions
# held for the shared index (about 300 bytes each), to write once it answers again.
_STREAM_BACKLOG_LIMIT = 10_000
_INDEX_BACKLOG_LIMIT = 10_000
# Held lines or decisions are written at most this many to one Redis round trip.
_REDIS_BATCH = 1_000
# How soon the writer tries a backlog again when nothing new is written meanwhile.
_RETRY_INTERVAL_S = 1.0
# How long a Redis call (or connecting) may take before it counts as failed.
_REDIS_TIMEOUT_S = 0.5
# The wait Feedback asks for (RetryInfo) when the shared index cannot be read.
_RETRY_AFTER_S = 1.0
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

    def recorded_at(self, request_id: str) -> float | None:
        """When the latest decision under ``request_id`` was made, if still held: a write
        of an earlier one to the shared index must not be retried over it."""
        seen = self._ids.get(request_id)
        return None if seen is None else seen[0]

    def judge(self, request_id: str) -> bool:
        """Note a verdict on ``request_id``; whether it is the first."""
        if request_id in self._judged:
            return False
        self._judged[request_id] = None
        while len(self._judged) > self._max:
            self._judged.popitem(last=False)
        return True


@value_type
class _Unindexed:
    """A decision the shared index could not take yet, held to be written later for what
    is left of its retention."""

    decided: Decided
    at: float  # time.monotonic() when it was decided
    # Whether writing it clears the verdict of an earlier decision under the same id. Not
    # once this replica has taken a verdict on it: that verdict may be in Redis already.
    clear_verdict: bool = True


class _Outage:
    """The log lines of one Redis outage for one kind of write (``name`` is
    ``decision_log`` or ``decision_index``): a warning ``<name>_write_failed`` when
    writes start failing, a warning ``<name>_backlog_full`` when the backlog first drops
    something, and ``<name>_write_recovered`` (info, with the counts) once writing works
    again. Never one per line or per request: under load an outage would be thousands a
    second."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.down = False
        self._dropped = 0

    def failed(self, exc: BaseException, held: int) -> None:
        if not self.down:
            self.down = True
            log.warning(f"{self._name}_write_failed", error=type(exc).__name__, held=held)

    def dropped(self, count: int, limit: int) -> None:
        if not self._dropped:
            log.warning(f"{self._name}_backlog_full", limit=limit)
        self._dropped += count

    def recovered(self, written: int) -> None:
        if self.down:
            log.info(f"{self._name}_write_recovered", written=written, dropped=self._dropped)
        self.down = False
        self._dropped = 0


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
        # What Redis could not take yet (see the module docstring).
        self._unsent: deque[bytes] = deque()
        self._unindexed: OrderedDict[str, _Unindexed] = OrderedDict()
        self._replay: asyncio.Task[None] | None = None
        self._stream_outage = _Outage("decision_log")
        self._index_outage = _Outage("decision_index")
        # The server's context, not a request's: background tasks start from a copy.
        self._context = contextvars.copy_context()
        self.dropped = 0  # decision-log lines never written
        self.index_dropped = 0  # decisions never written to the shared index

    @property
    def held(self) -> tuple[int, int]:
        """Decision-log lines and decisions for the index held until Redis takes them."""
        return len(self._unsent), len(self._unindexed)

    # -- recording -----------------------------------------------------------------

    def record(self, request: RouteRequest, result: RouteResult) -> None:
        """Remember the decision (for Feedback) and queue its line. Never blocks.

        An answer served from the cache is remembered without its model: feedback on it
        is logged, but it was one answer, however many times it was served, so it does
        not teach the planner again."""
        model = "" if result.cached else result.model
        decided = Decided(model, result.classification.task, request.tenant)
        key = self._key(request.tenant, result.request_id)
        now = time.monotonic()
        self._index.add(key, now, decided)
        if self._redis_url:
            self._remember_shared(key, _Unindexed(decided, now))
        if self._sink != "none":
            self._enqueue((request, result, time.time()))

    def record_failure(self, request: RouteRequest, failed: FailedDecision) -> None:
        """Remember a decision that got no answer and queue its line. Feedback on it is
        logged, but with no model that answered it teaches the planner nothing."""
        decided = Decided("", failed.classification.task, request.tenant)
        key = self._key(request.tenant, failed.request_id)
        now = time.monotonic()
        self._index.add(key, now, decided)
        if self._redis_url:
            self._remember_shared(key, _Unindexed(decided, now))
        if self._sink != "none":
            self._enqueue(failure_record(request, failed, self._include_prompts))

    def note(self, record: dict[str, Any]) -> None:
        """Queue any other record (e.g. a shadow verdict) for the log."""
        if self._sink != "none":
            self._enqueue(record)

    async def feedback(self, fb: Feedback, *, tenant: str | None = None) -> Decided:
        """Record feedback and say what it was about; NotFound for an id the log lacks,
        or (with ``tenant``) for another tenant's request, which is not told apart from
        an unknown one; ResourceExhausted (``DECISION_STORE_UNAVAILABLE``) when only the
        shared index could say and it cannot be read. Only the first verdict on a request
        (good or bad: not a label) is marked ``first_verdict``; a label's line carries no
        such key."""
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
            held = self._unindexed.get(key)
            if held is not None and held.clear_verdict:
                self._unindexed[key] = replace(held, clear_verdict=False)
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
        wakeup = self._start_writer()
        if not wakeup.is_set():
            wakeup.set()

    def _start_writer(self) -> asyncio.Event:
        """The writer's wakeup, starting the writer first if it has not been."""
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = asyncio.Event()
            self._writer = self._background(self._run())
        return wakeup

    def _background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as a task in a copy of the context the log was made in (the
        server's). The request that happens to set it off may end long before, and its
        context holds that request's log id, trace and tenant: every line the task logged
        would name that request."""
        return asyncio.get_running_loop().create_task(work, context=self._context.copy())

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Keep ``task`` until it is done, for close() to wait for."""
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

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

            # Connecting is bounded too: an unreachable Redis (a dropped route, no
            # refusal) would otherwise hold every index write and Feedback for 5 s.
            self._redis = aioredis.Redis.from_url(
                self._redis_url,
                socket_timeout=_REDIS_TIMEOUT_S,
                socket_connect_timeout=_REDIS_TIMEOUT_S,
            )
        return self._redis

    def _remember_shared(self, key: str, entry: _Unindexed) -> None:
        """Write a decision to the shared index in the background; a held-back earlier
        decision under the same key is superseded by it."""
        self._unindexed.pop(key, None)
        self._track(self._background(self._put(key, entry)))

    async def _put(self, key: str, entry: _Unindexed) -> None:
        """Write one decision to the shared index, or hold it for later when Redis cannot
        take it (Redis trouble must never fail a request). A replay of held decisions in
        flight goes first, so that of two decisions under a reused id the newer stays."""
        replay = self._replay
        if replay is not None:
            await asyncio.wait([replay])
        try:
            await self._write_index([(key, entry, int(self._retention_s))])
        except Exception as exc:
            self._hold_unindexed(key, entry, exc)
            return
        if self._unindexed:
            self._replay_index_soon()
        else:
            self._index_outage.recovered(0)

    async def _write_index(self, entries: Sequence[tuple[str, _Unindexed, int]]) -> None:
        """Write ``entries`` (key, decision, seconds to keep it) in one round trip."""
        async with self._client().pipeline(transaction=False) as pipe:
            for key, entry, ttl in entries:
                d = entry.decided
                pipe.set(f"{self._stream_key}:id:{key}", f"{d.model}\t{d.task}\t{d.tenant}", ex=ttl)
                if entry.clear_verdict:
                    # A new decision under a reused id: its verdict is still to give, as
                    # in the process's own index.
                    pipe.delete(f"{self._stream_key}:judged:{key}")
            await pipe.execute()

    def _hold_unindexed(self, key: str, entry: _Unindexed, exc: BaseException) -> None:
        """Hold a decision the index could not take, to write it once Redis answers: at
        most ``_INDEX_BACKLOG_LIMIT``, the oldest dropped past that (counted in
        ``index_dropped``: Feedback on those is taken by this replica alone). Not when a
        newer decision under the same key has been made meanwhile."""
        latest = self._index.recorded_at(key)
        if latest is not None and latest > entry.at:
            return
        self._unindexed[key] = entry
        self._unindexed.move_to_end(key)
        self._index_outage.failed(exc, len(self._unindexed))
        excess = len(self._unindexed) - _INDEX_BACKLOG_LIMIT
        if excess > 0:
            for _ in range(excess):
                self._unindexed.popitem(last=False)
            self.index_dropped += excess
            self._index_outage.dropped(excess, _INDEX_BACKLOG_LIMIT)
        if not self._closing:
            self._start_writer()  # it retries the backlog even when no request comes

    def _replay_index_soon(self) -> None:
        """Start writing the held decisions to the index, unless that is under way."""
        if self._unindexed and self._replay is None:
            self._replay = self._track(self._background(self._replay_index()))
            self._replay.add_done_callback(self._replayed)

    def _replayed(self, _: asyncio.Task[None]) -> None:
        self._replay = None

    async def _replay_index(self) -> None:
        """Write the held decisions to the index, oldest first, each for what is left of
        its retention. One whose retention has passed is forgotten: Feedback on it would
        be refused by now anyway. Stops at the first failure, holding the rest."""
        written = 0
        while self._unindexed:
            now = time.monotonic()
            batch: list[tuple[str, _Unindexed, int]] = []
            for key, entry in list(self._unindexed.items()):
                ttl = int(self._retention_s - (now - entry.at))
                if ttl < 1:
                    del self._unindexed[key]
                    continue
                batch.append((key, entry, ttl))
                if len(batch) == _REDIS_BATCH:
                    break
            if not batch:
                break
            try:
                await self._write_index(batch)
            except Exception as exc:
                self._index_outage.failed(exc, len(self._unindexed))
                return
            for key, entry, _ in batch:
                if self._unindexed.get(key) is entry:  # not superseded meanwhile
                    del self._unindexed[key]
            written += len(batch)
        self._index_outage.recovered(written)

    async def _shared_get(
        self, key: str, request_id: str, tenant: str | None
    ) -> tuple[Decided | None, bool]:
        """The decision under ``key`` in Redis, and whether an earlier version kept it.

        Versions before decisions were kept per tenant and namespace wrote every decision
        under ``quorum:decisions:id:<request id>``: on a miss that key is read too, and its
        decision taken (with authentication, only when it is the caller's tenant's), so a
        rolling upgrade loses no Feedback. Its verdict is then judged where that version
        judged it.

        Raises :class:`ResourceExhausted` (reason ``DECISION_STORE_UNAVAILABLE``, with a
        retry delay) when Redis cannot be asked: only its answer "no such key" means the
        decision is unknown."""
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
            # The decision may well be there: NOT_FOUND would tell the caller to give up.
            log.warning("decision_index_unavailable", op="read", error=type(exc).__name__)
            raise ResourceExhausted(
                f"decision index unavailable: cannot tell whether request_id {request_id!r} "
                "was decided; retry shortly",
                retry_after_s=_RETRY_AFTER_S,
                reason="DECISION_STORE_UNAVAILABLE",
                metadata={"request_id": request_id},
            ) from None
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
            log.warning("decision_index_unavailable", op="judge", error=type(exc).__name__)
            return True
        return bool(first)

    # -- writing -------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if self._unsent or self._unindexed:
                # Held for Redis: try again in a while, whether or not more comes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), _RETRY_INTERVAL_S)
            else:
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
        if self._unindexed:
            self._replay_index_soon()
        lines = [self._line(entry) for entry in entries]
        if self._sink == "redis":
            await self._write_stream(lines)
            return
        if not lines:
            return
        try:
            if self._sink == "stdout":
                _write_stdout(b"\n".join(lines) + b"\n")
            elif self._sink == "file":
                await asyncio.to_thread(self._append, lines)
        except Exception as exc:
            self.dropped += len(lines)
            log.warning("decision_log_write_failed", error=type(exc).__name__, lines=len(lines))

    async def _write_stream(self, lines: list[bytes]) -> None:
        """Append ``lines`` to the Redis stream after those held from earlier flushes, in
        order. What Redis does not take is held for the next flush: at most
        ``_STREAM_BACKLOG_LIMIT`` lines, the oldest dropped past that (counted in
        ``dropped``). A batch cut off mid-way may be written twice when retried."""
        self._unsent.extend(lines)
        written = 0
        while self._unsent:
            batch = list(islice(self._unsent, _REDIS_BATCH))
            try:
                async with self._client().pipeline(transaction=False) as pipe:
                    for line in batch:
                        pipe.xadd(
                            self._stream_key, {"record": line}, maxlen=1_000_000, approximate=True
                        )
                    await pipe.execute()
            except Exception as exc:
                self._stream_outage.failed(exc, len(self._unsent))
                excess = len(self._unsent) - _STREAM_BACKLOG_LIMIT
                if excess > 0:
                    for _ in range(excess):
                        self._unsent.popleft()
                    self.dropped += excess
                    self._stream_outage.dropped(excess, _STREAM_BACKLOG_LIMIT)
                return
            for _ in batch:  # only the writer adds lines, and it is here
                self._unsent.popleft()
            written += len(batch)
        self._stream_outage.recovered(written)

    def _append(self, lines: list[bytes]) -> None:
        if self._file is None:
            assert self._path is not None
            self._file = Path(self._path).open("ab")  # noqa: SIM115
        self._file.write(b"\n".join(lines) + b"\n")
        self._file.flush()

    async def close(self) -> None:
        """Flush what is queued, try once more to write what Redis has not taken (what
        it still refuses is counted as dropped, with a warning), and stop the writer."""
        self._closing = True
        if self._writer is not None and self._wakeup is not None:
            self._closed.set()
            self._wakeup.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._writer), timeout=5.0)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        await self._flush()
        while self._pending:  # index writes, and a replay one of them started
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self._unindexed:
            await self._replay_index()
        if self._unsent or self._unindexed:
            # Held in memory only: gone with the process.
            log.warning(
                "decision_log_unwritten_at_close",
                lines=len(self._unsent),
                decisions=len(self._unindexed),
            )
            self.dropped += len(self._unsent)
            self.index_dropped += len(self._unindexed)
            self._unsent.clear()
            self._unindexed.clear()
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:  # a batch whose write failed is still buffered: it fails again
                log.warning(
                    "decision_log_write_failed",
                    key="decisions.path",
                    path=self._path,
                    error=str(exc),
                )
            self._file = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
