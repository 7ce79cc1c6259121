"""Streaming execution, for RouteStream.

:func:`stream_single` is the single strategy reading ``provider.stream(...)``: chunks go
to the context's sink as they arrive. Opening a stream — up to its first piece — runs
under the same policy as a unary call (deployment choice, limits, breaker, short
Retry-After waits, retries), so a stream that breaks before its first chunk fails over
silently: the attempt is recorded and the next candidate announces itself with its own
``AttemptStarted``. A stream that breaks after chunks were sent is never truncated
silently: with the model's ``stream_failover: restart`` the next candidate that opens
restarts the answer, preceded by a :class:`~quorum.server.execute.events.FellBack` that
carries how many characters to discard; otherwise (or when no candidate is left, or the
caller cannot take a restarted answer: ``restart_streams`` off) the run fails with
reason ``STREAM_INTERRUPTED`` and the stream ends with an error event.

Other strategies stream through :func:`forward`: their unary executor runs with a sink
that forwards its events (attempts, gate verdicts, escalations, votes) and the answer
follows as chunks once it is final — a cascade's tier output is only sent after its
gate passed.

The breaker sees a stream as one call: a failure before or during the stream counts,
a caller that goes away does not. Cancelling the run closes the upstream response.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from quorum.server.catalog import Deployment, ModelSpec
from quorum.server.domain import (
    Attempt,
    AttemptOutcome,
    Completion,
    ExecutionPlan,
    ExecutionResult,
    RouteRequest,
    ToolCall,
    Usage,
    missing_forced_call,
)
from quorum.server.errors import (
    CallerDeadlineTimeout,
    DeadlineExceeded,
    ExecutionFailed,
    ProviderBadResponse,
    ProviderError,
    ProviderIgnoredToolChoice,
    ProviderTimeout,
)
from quorum.server.execute.calls import (
    MIN_ATTEMPT_S,
    CallResult,
    ExecutionContext,
    Sent,
    acquire_permit,
    adapter_error,
    count_call,
    estimated_usage,
    failed_attempt,
    first_chunk_key,
    skipped,
    spent_before_failing,
    timed_out,
    unfenced,
    with_policy,
)
from quorum.server.execute.events import Chunk, Event, FellBack
from quorum.server.execute.single import deadline_exceeded, no_answer
from quorum.server.providers.base import ProviderRequest, StreamDelta, checked_usage
from quorum.server.resilience.limits import Permit
from quorum.server.values import value_type

R = TypeVar("R")
INTERRUPTED = "STREAM_INTERRUPTED"
ANSWER_CHUNK_CHARS = 2048  # a buffered answer is sent in pieces of at most this
# Events queued for a slow reader before the upstream read waits: a pause holds the
# provider's call (its concurrency permit, its connection) open, so it is kept for a
# reader that has truly stopped. An answer of up to this many chunks (about as many
# tokens: nearly every answer) is read to its end whatever the reader does, which frees
# the provider at once; the backlog costs about 150 bytes an event.
STREAM_BACKLOG = 4096


@dataclass(slots=True)
class _Opened:
    """A stream whose first piece arrived; the rest is still to be read."""

    deltas: AsyncIterator[StreamDelta]
    first: StreamDelta
    stack: contextlib.ExitStack
    permit: Permit | None
    deployment: Deployment
    start: float
    started_ms: float


@value_type
class _Relayed:
    attempt: Attempt
    completion: Completion | None
    error: ProviderError | None
    chars: int


@value_type
class _Broken:
    model: str
    reason: str
    chars: int


async def stream_single(
    ctx: ExecutionContext, request: RouteRequest, plan: ExecutionPlan
) -> ExecutionResult:
    """Run ``plan`` with the single strategy, streaming; events go to ``ctx.sink``."""
    queue = [(stage.role, c) for stage in plan.stages for c in stage.candidates]
    attempts: list[Attempt] = []
    results: list[CallResult] = []
    broken: _Broken | None = None
    for index, (role, candidate) in enumerate(queue, 1):
        if ctx.time_left() < MIN_ATTEMPT_S:
            break
        if ctx.calls_made >= ctx.max_upstream_calls:
            attempts.append(skipped(candidate, role, "upstream call cap reached", ctx))
            continue
        spec = ctx.catalog.models[candidate.model]

        async def send(deployment: Deployment, first: bool) -> Sent[_Opened]:
            return await _open(ctx, request, spec, deployment, role, first)  # noqa: B023

        called = await with_policy(ctx, spec, send, reserve=len(queue) - index, streaming=True)
        attempts.extend(called.earlier)
        opened = called.last.value
        if opened is None:
            attempts.append(called.last.attempt)
            last = called.last
            results.append(CallResult(last.attempt, None, last.error, spec, (), called.deployment))
            continue
        if broken is not None:
            ctx.sink.emit(FellBack(broken.model, spec.name, broken.reason, broken.chars))
            broken = None
        relayed = await _relay(ctx, request, spec, role, opened)
        attempts.append(relayed.attempt)
        if relayed.completion is not None:
            return ExecutionResult(
                completion=relayed.completion,
                model=spec.name,
                provider=opened.deployment.provider,
                attempts=tuple(attempts),
                simulated=opened.deployment.simulated,
            )
        assert relayed.error is not None
        results.append(
            CallResult(relayed.attempt, None, relayed.error, spec, (), opened.deployment)
        )
        broken = _Broken(spec.name, relayed.error.message, relayed.chars)
        if spec.stream_failover == "error":
            raise _interrupted(ctx, broken, attempts, plan, "restarting is off for this model")
        if not ctx.restart_streams:
            raise _interrupted(ctx, broken, attempts, plan, "this stream cannot restart an answer")
    if broken is not None:
        raise _interrupted(ctx, broken, attempts, plan, "no candidate could take over")
    if ctx.time_left() < MIN_ATTEMPT_S:
        raise deadline_exceeded(attempts, plan)
    raise no_answer(ctx, attempts, results, plan)


def _interrupted(
    ctx: ExecutionContext,
    broken: _Broken,
    attempts: list[Attempt],
    plan: ExecutionPlan,
    why: str,
) -> ExecutionFailed:
    message = (
        f"the stream from {broken.model} broke after {broken.chars} characters "
        f"({broken.reason}); {why}"
    )
    if ctx.time_left() < MIN_ATTEMPT_S:
        return DeadlineExceeded(message, attempts=attempts, plan=plan)
    error = ExecutionFailed(message, attempts=attempts, plan=plan)
    error.reason = INTERRUPTED
    return error


async def _open(
    ctx: ExecutionContext,
    request: RouteRequest,
    spec: ModelSpec,
    deployment: Deployment,
    role: str,
    first: bool,
) -> Sent[_Opened]:
    """Start a stream on ``deployment`` and wait for its first piece."""
    started_ms = ctx.elapsed_ms()
    start = ctx.clock()
    stack = contextlib.ExitStack()
    deltas: AsyncIterator[StreamDelta] | None = None
    permit: Permit | None = None
    try:
        permit = await acquire_permit(ctx, request, deployment)
        if permit is not None:
            stack.callback(permit.release)
        provider = ctx.providers[deployment.provider]
        limit = ctx.provider_timeouts.get(deployment.provider, 60.0)
        # The provider's timeout bounds each silence of the stream (the wait for its
        # first chunk and for every next one), not its length: the caller's deadline
        # bounds the whole. The adapter's own bound on the whole is a little past the
        # deadline, so that _relay's timer, which knows it was the deadline, fires first.
        timeout = min(ctx.time_left(), limit)
        stack.enter_context(ctx.breakers.guard(deployment.breaker))
        count_call(ctx, spec, deployment, role, first)
        stack.enter_context(ctx.resilience.balancer.track(deployment))
        sent = ctx.clock()
        deltas = provider.stream(
            ProviderRequest(
                deployment.model_id,
                request.messages,
                request.params,
                timeout,
                stream_total_s=ctx.time_left() + 0.05,
            )
        )
        try:
            async with asyncio.timeout(timeout + 0.05):
                head = await anext(deltas)
            # How soon this deployment's streams start answering: what tells a hung
            # provider from a caller's short deadline (timed_out). A series of its own:
            # unary answers, hedge delays and the balancer go by whole answers.
            ctx.resilience.latency.record(first_chunk_key(deployment), ctx.clock() - sent)
        except StopAsyncIteration:
            raise ProviderBadResponse(
                f"{deployment.provider}: the stream ended before any data",
                provider=deployment.provider,
            ) from None
        except (TimeoutError, ProviderTimeout):
            raise timed_out(
                ctx, deployment, timeout, limit, "no first chunk", streaming=True
            ) from None
        except (ProviderError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise adapter_error(deployment.provider, spec.name, exc) from exc
    except BaseException as exc:
        await _close(deltas)
        stack.__exit__(type(exc), exc, exc.__traceback__)
        if not isinstance(exc, ProviderError):
            raise
        attempt = failed_attempt(
            spec,
            deployment,
            role,
            exc,
            started_ms=started_ms,
            latency_ms=(ctx.clock() - start) * 1000.0,
            usage=spent_before_failing(request, exc),
        )
        return Sent(attempt, None, exc)
    opened = _Opened(deltas, head, stack, permit, deployment, start, started_ms)
    provisional = Attempt(
        spec.name,
        deployment.provider,
        spec.tier,
        role,
        AttemptOutcome.SUCCEEDED,
        "streaming",
        started_ms=started_ms,
    )  # replaced by the real attempt once the stream ends
    return Sent(provisional, opened, None)


async def _relay(
    ctx: ExecutionContext,
    request: RouteRequest,
    spec: ModelSpec,
    role: str,
    opened: _Opened,
) -> _Relayed:
    """Send the stream's pieces as chunks until it ends, breaks or the deadline passes."""
    provider = opened.deployment.provider
    texts: list[str] = []
    calls: list[ToolCall] = []
    finish = ""
    usage: Usage | None = None
    chars = 0
    error: ProviderError | None = None
    try:
        async with asyncio.timeout(max(0.0, ctx.time_left())):
            delta: StreamDelta | None = opened.first
            while delta is not None:
                if delta.text:
                    texts.append(delta.text)
                    chars += len(delta.text)
                    ctx.sink.emit(Chunk(spec.name, text=delta.text))
                if delta.tool_call is not None:
                    calls.append(delta.tool_call)
                    ctx.sink.emit(Chunk(spec.name, tool_call=delta.tool_call))
                finish = delta.finish_reason or finish
                if delta.usage is not None:
                    usage = checked_usage(provider, delta.usage)
                if delta.text or delta.tool_call is not None:
                    # Let the chunk go out now, and wait while the caller is behind:
                    # the upstream is read no faster than the caller reads.
                    await ctx.sink.drained()
                delta = await anext(opened.deltas, None)
        if not finish:
            error = ProviderBadResponse(
                f"{provider}: the stream ended without a finish reason", provider=provider
            )
        elif missing := missing_forced_call(request.params, calls):
            error = ProviderIgnoredToolChoice(f"{spec.name}: {missing}", provider=provider)
    except TimeoutError:
        # The caller's deadline, not the provider's fault: its breaker does not count it.
        error = CallerDeadlineTimeout(
            f"{provider}: the stream outlasted the deadline", provider=provider
        )
    except ProviderTimeout as exc:
        # The provider went silent for longer than its timeout_s: its fault (counted),
        # unless the deadline was up anyway (the adapter's timer won a tie with ours).
        error = exc
        if ctx.time_left() <= 0:
            error = CallerDeadlineTimeout(
                f"{provider}: the stream outlasted the deadline", provider=provider
            )
    except ProviderError as exc:
        error = exc
    except asyncio.CancelledError as exc:
        await _close(opened.deltas)
        opened.stack.__exit__(type(exc), exc, exc.__traceback__)
        raise
    except Exception as exc:
        error = adapter_error(provider, spec.name, exc)
    latency_ms = (ctx.clock() - opened.start) * 1000.0
    text = "".join(texts)
    if error is None:
        used = usage or estimated_usage(request, text, calls)
        if opened.permit is not None:
            opened.permit.release(used.input_tokens + used.output_tokens)
        opened.stack.__exit__(None, None, None)
        attempt = Attempt(
            model=spec.name,
            provider=provider,
            tier=spec.tier,
            role=role,
            outcome=AttemptOutcome.SUCCEEDED,
            reason="ok",
            latency_ms=latency_ms,
            usage=used,
            cost_usd=spec.cost(used),
            started_ms=opened.started_ms,
        )
        # The chunks went out as the model wrote them; the account's answer is the
        # unary one (a JSON answer without a code fence around it).
        completion = unfenced(request, Completion(text, tuple(calls), finish, used))
        return _Relayed(attempt, completion, None, chars)
    await _close(opened.deltas)
    opened.stack.__exit__(type(error), error, None)
    spent = estimated_usage(request, text, calls)
    attempt = failed_attempt(
        spec,
        opened.deployment,
        role,
        error,
        started_ms=opened.started_ms,
        latency_ms=latency_ms,
        usage=spent,
    )
    if chars or calls:
        attempt = replace(attempt, reason=f"stream broke after {chars} characters: {error.message}")
    return _Relayed(attempt, None, error, chars)


async def _close(deltas: AsyncIterator[StreamDelta] | None) -> None:
    """Close an upstream stream (its HTTP response is closed, not pooled)."""
    close = getattr(deltas, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


class EventQueue:
    """A sink that queues events for :func:`forward`.

    ``emit`` never blocks; :meth:`drained` holds a producer while ``backlog`` or more
    events wait, until the reader has taken half of them. A caller that stops reading
    a stream (gRPC flow control stalls the handler) thereby stops the upstream read
    too, instead of the whole answer piling up in the server's memory.
    """

    def __init__(self, backlog: int | None = None) -> None:
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._backlog = STREAM_BACKLOG if backlog is None else backlog
        self._room: asyncio.Event | None = None

    def emit(self, event: Event) -> None:
        self._queue.put_nowait(event)

    async def drained(self) -> None:
        # Yield once even with room to spare: the reader hands the event on now, not
        # after the pieces already buffered upstream have all been read.
        await asyncio.sleep(0)
        while self._queue.qsize() >= self._backlog:
            if self._room is None:
                self._room = asyncio.Event()
            await self._room.wait()

    def _taken(self) -> None:
        """The reader took an event: wake a held producer once half the backlog is gone."""
        if self._room is not None and self._queue.qsize() <= self._backlog // 2:
            self._room.set()
            self._room = None


async def forward(
    work: Awaitable[R], sink: EventQueue, on_done: Callable[[], None] | None = None
) -> AsyncGenerator[Event | R, None]:
    """Yield the events ``work`` emits into ``sink`` as they happen, then its result.

    ``work``'s error is raised after its events. Closing the iterator early cancels
    ``work`` (and with it any upstream call). ``on_done`` is called as soon as ``work``
    ends, however it ends, even while earlier events still wait to be read.
    """
    queue = sink._queue
    task = asyncio.ensure_future(work)

    def done(_: object) -> None:
        queue.put_nowait(None)  # None: work is done
        if on_done is not None:
            on_done()

    task.add_done_callback(done)
    try:
        while True:
            item = await queue.get()
            sink._taken()
            if item is None:
                yield task.result()
                return
            if not isinstance(item, Chunk):
                # A plan or attempt event is often queued just before the work starts an
                # upstream request, whose bytes go out in a task of their own: let that
                # run first, so sending the event is not on the way to the first token.
                await asyncio.sleep(0)
            yield item
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        elif not task.cancelled():
            # Closed before reaching the end (the caller went away or its deadline
            # passed) after ``work`` failed: its error has no one left to go to, and
            # unread, asyncio would print it as a traceback when the task is collected.
            task.exception()


def answer_chunks(model: str, completion: Completion) -> list[Chunk]:
    """A buffered answer as chunks: the text in pieces, then each tool call."""
    content = completion.content
    chunks = [
        Chunk(model, text=content[i : i + ANSWER_CHUNK_CHARS])
        for i in range(0, len(content), ANSWER_CHUNK_CHARS)
    ]
    chunks.extend(Chunk(model, tool_call=call) for call in completion.tool_calls)
    return chunks
