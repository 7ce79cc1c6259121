"""Frozen domain types of the request path.

The service layer converts protobuf messages into these and back; nothing past it sees
a ``_pb2`` object. Enums mirror the proto enums by name so conversion is mechanical.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import field, replace

from quorum.server.values import value_type


class Role(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Strategy(enum.Enum):
    AUTO = "auto"
    SINGLE = "single"
    CASCADE = "cascade"
    CONSENSUS_MAJORITY = "consensus_majority"
    CONSENSUS_JUDGE = "consensus_judge"


class Priority(enum.Enum):
    LATENCY = "latency"
    BALANCED = "balanced"
    QUALITY = "quality"
    COST = "cost"


class Capability(enum.Enum):
    TOOLS = "tools"
    VISION = "vision"
    JSON_MODE = "json_mode"
    JSON_SCHEMA = "json_schema"
    STREAMING = "streaming"
    LOGPROBS = "logprobs"


class Sensitivity(enum.IntEnum):
    """Ordered: a model cleared for a level may receive every lower level."""

    PUBLIC = 1
    INTERNAL = 2
    RESTRICTED = 3


class Difficulty(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3


class ResponseFormatType(enum.Enum):
    TEXT = "text"
    JSON_OBJECT = "json_object"
    JSON_SCHEMA = "json_schema"


class ToolChoiceMode(enum.Enum):
    AUTO = "auto"  # the model decides
    NONE = "none"  # it must answer in text
    REQUIRED = "required"  # it must call one of the tools
    TOOL = "tool"  # it must call the named tool


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    COOLING_DOWN = "cooling_down"


class AttemptOutcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    OUTVOTED = "outvoted"


@value_type
class ImagePart:
    url: str = ""
    data: bytes = b""
    media_type: str = ""


@value_type
class ContentPart:
    """Exactly one of ``text`` or ``image`` is set."""

    text: str | None = None
    image: ImagePart | None = None


@value_type
class ToolCall:
    id: str
    name: str
    arguments_json: str


@value_type
class Message:
    role: Role
    content: str = ""
    parts: tuple[ContentPart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    name: str = ""

    @property
    def text(self) -> str:
        """All text of the message, parts included."""
        if not self.parts:
            return self.content
        texts = [p.text for p in self.parts if p.text]
        return "\n".join([self.content, *texts]) if self.content else "\n".join(texts)

    @property
    def has_image(self) -> bool:
        return any(p.image is not None for p in self.parts)


@value_type
class Tool:
    name: str
    description: str = ""
    parameters_json: str = ""


@value_type
class ToolChoice:
    """Whether the model must call a tool; ``tool`` names it with mode TOOL."""

    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    tool: str = ""


@value_type
class ResponseFormat:
    type: ResponseFormatType = ResponseFormatType.TEXT
    json_schema: str = ""
    schema_name: str = ""


@value_type
class GenerationParams:
    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    response_format: ResponseFormat = ResponseFormat()
    tools: tuple[Tool, ...] = ()
    logprobs: bool = False
    tool_choice: ToolChoice = ToolChoice()


def settle_tool_choice(params: GenerationParams, messages: tuple[Message, ...]) -> GenerationParams:
    """Tool choice NONE without tool calls in the conversation: the tools need not be sent
    at all (and the request then needs no tools capability). With tool calls or results
    in it the vendors need the tools defined, so they are sent with a choice of none."""
    if params.tool_choice.mode is not ToolChoiceMode.NONE:
        return params
    if any(m.tool_calls or m.role is Role.TOOL for m in messages):
        return params
    return replace(params, tools=(), tool_choice=ToolChoice())


def missing_forced_call(params: GenerationParams, calls: Sequence[ToolCall]) -> str:
    """Why an answer making ``calls`` lacks the tool call ``params`` forces; ``""`` if it
    has it (or none is forced)."""
    choice = params.tool_choice
    if choice.mode is ToolChoiceMode.REQUIRED and not calls:
        return "answered without the required tool call"
    if choice.mode is ToolChoiceMode.TOOL and all(call.name != choice.tool for call in calls):
        return f"answered without calling the required tool {choice.tool!r}"
    return ""


@value_type
class Hints:
    strategy: Strategy = Strategy.AUTO
    priority: Priority = Priority.BALANCED
    task: str = ""
    agent: str = ""
    use_case: str = ""
    required_capabilities: frozenset[Capability] = frozenset()
    max_cost_usd: float | None = None
    model: str = ""
    tier: str = ""
    sensitivity: Sensitivity | None = None
    critical: bool = False
    consensus_size: int = 0
    allow_cache: bool = False


@value_type
class RouteRequest:
    """A validated request. ``deadline_s`` is the caller's remaining time, when given."""

    request_id: str
    messages: tuple[Message, ...]
    params: GenerationParams = GenerationParams()
    hints: Hints = Hints()
    tenant: str = ""

    def with_hints(self, hints: Hints, *, tenant: str | None = None) -> RouteRequest:
        """A copy with other hints (and tenant); what ``dataclasses.replace`` would
        give, without introspecting the fields on every request."""
        return RouteRequest(
            self.request_id,
            self.messages,
            self.params,
            hints,
            self.tenant if tenant is None else tenant,
        )

    @property
    def prompt_text(self) -> str:
        """The text the classifier reads: the last user message."""
        for message in reversed(self.messages):
            if message.role is Role.USER:
                return message.text
        return self.messages[-1].text if self.messages else ""

    @property
    def has_image(self) -> bool:
        return any(m.has_image for m in self.messages)

    def needed_capabilities(self) -> frozenset[Capability]:
        """Capabilities asked for explicitly or implied by the request's content."""
        implied: list[Capability] = []
        params = self.params
        if params.tools or any(m.tool_calls for m in self.messages):
            implied.append(Capability.TOOLS)
        if self.has_image:
            implied.append(Capability.VISION)
        fmt = params.response_format.type
        if fmt is ResponseFormatType.JSON_OBJECT:
            implied.append(Capability.JSON_MODE)
        elif fmt is ResponseFormatType.JSON_SCHEMA:
            implied.append(Capability.JSON_SCHEMA)
        if params.logprobs:
            implied.append(Capability.LOGPROBS)
        asked = self.hints.required_capabilities
        return asked.union(implied) if implied else asked


@value_type
class Classification:
    task: str
    difficulty: Difficulty
    confidence: float
    classifier: str
    agent: str = ""
    signals: tuple[str, ...] = ()


@value_type
class Usage:
    """Tokens of one or more calls. ``input_tokens`` counts every input token; of them,
    ``cached_input_tokens`` were read from the provider's prompt cache and
    ``cache_write_tokens`` written to it (both priced apart)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


@value_type
class Candidate:
    model: str
    provider: str
    tier: str
    estimated_cost_usd: float
    breaker_state: BreakerState = BreakerState.CLOSED
    weight: float = 1.0
    note: str = ""
    simulated: bool = False


@value_type
class PlanStage:
    role: str
    candidates: tuple[Candidate, ...]
    note: str = ""


@value_type
class Reason:
    code: str
    message: str


@value_type
class ExecutionPlan:
    strategy: Strategy
    stages: tuple[PlanStage, ...]
    estimated_cost_min_usd: float
    estimated_cost_max_usd: float
    reasons: tuple[Reason, ...]
    max_upstream_calls: int

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        return tuple(c for s in self.stages for c in s.candidates)


@value_type
class GateCheck:
    name: str
    passed: bool
    reason: str


@value_type
class GateVerdict:
    passed: bool
    checks: tuple[GateCheck, ...]


@value_type
class Attempt:
    model: str
    provider: str
    tier: str
    role: str
    outcome: AttemptOutcome
    reason: str
    error_reason: str = ""
    latency_ms: float = 0.0
    usage: Usage = Usage()
    cost_usd: float = 0.0
    started_ms: float = 0.0
    gate: GateVerdict | None = None


@value_type
class StageTimings:
    classify_ms: float = 0.0
    plan_ms: float = 0.0
    execute_ms: float = 0.0
    total_ms: float = 0.0


@value_type
class CascadeDetail:
    tiers_tried: tuple[str, ...]
    escalation_reason: str = ""
    wasted_cost_usd: float = 0.0
    route_escalation_rate: float = 0.0
    deadline_limited: bool = False


@value_type
class CandidateAnswer:
    model: str
    normalized: str
    group: int
    weight: float
    cancelled: bool = False
    judge_score: float | None = None


@value_type
class VoteGroup:
    normalized: str
    weight: float
    models: tuple[str, ...]


@value_type
class JudgeDetail:
    model: str
    seed: int
    presented_order: tuple[str, ...]
    rationale: str = ""
    fallback_reason: str = ""
    synthesized: bool = False


@value_type
class ConsensusDetail:
    answers: tuple[CandidateAnswer, ...]
    groups: tuple[VoteGroup, ...]
    winner_group: int
    agreement: float
    early_exit: bool
    normalizer: str
    judge: JudgeDetail | None = None
    tie_break: str = ""


@value_type
class Completion:
    """What one provider call produced."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    usage: Usage = Usage()
    mean_logprob: float | None = None


@value_type
class ExecutionResult:
    """What an executor produced: the chosen completion and the account of how."""

    completion: Completion
    model: str
    provider: str
    attempts: tuple[Attempt, ...]
    cascade: CascadeDetail | None = None
    consensus: ConsensusDetail | None = None
    simulated: bool = False


@value_type
class RouteResult:
    """The full account returned to the caller."""

    request_id: str
    completion: Completion
    model: str
    provider: str
    strategy: Strategy
    classification: Classification
    plan: ExecutionPlan
    attempts: tuple[Attempt, ...]
    usage: Usage
    cost_usd: float
    baseline_cost_usd: float
    baseline_model: str
    timings: StageTimings
    cascade: CascadeDetail | None = None
    consensus: ConsensusDetail | None = None
    cached: bool = False
    guards: tuple[str, ...] = field(default_factory=tuple)
    simulated: bool = False
