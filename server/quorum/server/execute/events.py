"""Typed execution events, emitted by every strategy while it runs.

Executors report what they do to an :class:`EventSink`; the unary path ignores them
(:data:`NULL_SINK`), ``RouteStream`` turns them into stream messages. Events are domain
types: the service layer converts them to protobuf.
"""

from __future__ import annotations

from typing import Protocol

from quorum.server.domain import CandidateAnswer, ExecutionPlan, GateVerdict, ToolCall
from quorum.server.values import value_type


@value_type
class PlanMade:
    plan: ExecutionPlan


@value_type
class AttemptStarted:
    model: str
    provider: str
    role: str


@value_type
class Chunk:
    model: str
    text: str = ""
    tool_call: ToolCall | None = None


@value_type
class GateEvaluated:
    model: str
    verdict: GateVerdict


@value_type
class Escalated:
    from_tier: str
    to_tier: str
    reason: str


@value_type
class Voted:
    answer: CandidateAnswer


@value_type
class FellBack:
    from_model: str
    to_model: str
    reason: str
    discarded_prefix_chars: int = 0


Event = PlanMade | AttemptStarted | Chunk | GateEvaluated | Escalated | Voted | FellBack


class EventSink(Protocol):
    """Receives events in the order they happen; ``emit`` must not block.

    A producer of many events (a streamed answer's chunks) awaits :meth:`drained`
    after each one, so a reader that falls behind pauses it instead of letting the
    events pile up in memory.
    """

    def emit(self, event: Event) -> None: ...

    async def drained(self) -> None: ...


class _NullSink:
    def emit(self, event: Event) -> None:
        return None

    async def drained(self) -> None:
        return None


NULL_SINK: EventSink = _NullSink()
