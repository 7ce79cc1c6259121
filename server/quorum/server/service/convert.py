"""Protobuf ⇄ domain, and request validation: the service layer's edge.

Requests are validated here, field by field, into ``BadRequest`` field violations named
by their proto path (``messages[0].role``, ``hints.max_cost_usd``); every violation is
reported at once. Nothing past this module sees a ``_pb2`` object.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from enum import Enum
from typing import Any, TypeVar

from quorum.route.v1 import route_service_pb2 as svc_pb
from quorum.route.v1 import types_pb2 as pb
from quorum.server import domain as d
from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.conversation import tool_turn_problems
from quorum.server.decisions import Feedback, FeedbackKind
from quorum.server.errors import ExecutionFailed, FieldViolation, InvalidRequest, QuorumError
from quorum.server.execute.events import (
    AttemptStarted,
    Chunk,
    Escalated,
    Event,
    FellBack,
    GateEvaluated,
    PlanMade,
    Voted,
)
from quorum.server.names import (
    IMAGE_TYPES,
    MAX_CONTENT_CHARS,
    MAX_IMAGE_BYTES,
    NAME,
    REQUEST_ID,
    TOOL_NAME,
    new_request_id,
)
from quorum.server.resilience.breakers import ProviderHealth

E = TypeVar("E", bound=Enum)


def _enum_map(wrapper: Any, prefix: str, target: type[E]) -> dict[int, E]:
    out: dict[int, E] = {}
    for name, number in wrapper.items():
        short = name.removeprefix(prefix)
        if short != "UNSPECIFIED":
            out[number] = target[short]
    return out


def _reverse(mapping: Mapping[int, E]) -> dict[E, Any]:
    return {v: k for k, v in mapping.items()}


ROLES = _enum_map(pb.Role, "ROLE_", d.Role)
STRATEGIES = _enum_map(pb.Strategy, "STRATEGY_", d.Strategy)
PRIORITIES = _enum_map(pb.Priority, "PRIORITY_", d.Priority)
CAPABILITIES = _enum_map(pb.Capability, "CAPABILITY_", d.Capability)
SENSITIVITIES = _enum_map(pb.Sensitivity, "SENSITIVITY_", d.Sensitivity)
FORMATS = _enum_map(pb.ResponseFormatType, "RESPONSE_FORMAT_TYPE_", d.ResponseFormatType)
DIFFICULTIES = _enum_map(pb.Difficulty, "DIFFICULTY_", d.Difficulty)
BREAKERS = _enum_map(pb.BreakerState, "BREAKER_STATE_", d.BreakerState)
OUTCOMES = _enum_map(pb.AttemptOutcome, "ATTEMPT_OUTCOME_", d.AttemptOutcome)
ROLE_PB = _reverse(ROLES)
STRATEGY_PB = _reverse(STRATEGIES)
CAPABILITY_PB = _reverse(CAPABILITIES)
SENSITIVITY_PB = _reverse(SENSITIVITIES)
DIFFICULTY_PB = _reverse(DIFFICULTIES)
BREAKER_PB = _reverse(BREAKERS)
OUTCOME_PB = _reverse(OUTCOMES)


class _Checker:
    """Collects violations under a path prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(self.prefix + field, description))


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _message(m: pb.Message, path: str, c: _Checker) -> d.Message | None:
    role = ROLES.get(m.role)
    if role is None:
        c.add(
            f"{path}.role",
            "must be one of ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL"
            if m.role == 0
            else f"unknown enum value {m.role}",
        )
    content = m.content  # each read of a protobuf string field decodes it anew
    if len(content) > MAX_CONTENT_CHARS:
        c.add(f"{path}.content", f"is {len(content)} characters, limit {MAX_CONTENT_CHARS}")
    parts: list[d.ContentPart] = []
    for j, part in enumerate(m.parts):
        ppath = f"{path}.parts[{j}]"
        which = part.WhichOneof("part")
        if which == "text":
            if not part.text:
                c.add(f"{ppath}.text", "is empty")
            parts.append(d.ContentPart(text=part.text))
        elif which == "image":
            img = part.image
            if bool(img.url) == bool(img.data):
                c.add(f"{ppath}.image", "set exactly one of url or data")
            elif img.url and not img.url.startswith(("https://", "http://", "data:image/")):
                c.add(f"{ppath}.image.url", "must be an http(s) or data:image/ URL")
            elif img.data and img.media_type not in IMAGE_TYPES:
                c.add(
                    f"{ppath}.image.media_type", f"must be one of {', '.join(sorted(IMAGE_TYPES))}"
                )
            elif len(img.data) > MAX_IMAGE_BYTES:
                c.add(f"{ppath}.image.data", f"is {len(img.data)} bytes, limit {MAX_IMAGE_BYTES}")
            parts.append(d.ContentPart(image=d.ImagePart(img.url, img.data, img.media_type)))
        else:
            c.add(ppath, "set text or image")
    tool_calls = m.tool_calls
    calls = tuple(d.ToolCall(t.id, t.name, t.arguments_json) for t in tool_calls)
    if calls and role is not d.Role.ASSISTANT:
        c.add(f"{path}.tool_calls", "only an assistant message makes tool calls")
    for j, call in enumerate(tool_calls):
        if not call.id:
            c.add(f"{path}.tool_calls[{j}].id", "is required: a tool result answers it by id")
        if not call.name:
            c.add(f"{path}.tool_calls[{j}].name", "is required")
        if call.arguments_json and _json_object(call.arguments_json) is None:
            c.add(f"{path}.tool_calls[{j}].arguments_json", "must be a JSON object")
    if role is d.Role.TOOL and not m.tool_call_id:
        c.add(f"{path}.tool_call_id", "is required for a ROLE_TOOL message")
    if not content and not parts and not calls:
        c.add(f"{path}.content", "is empty: set content, parts or tool_calls")
    if role is None:
        return None
    return d.Message(role, content, tuple(parts), calls, m.tool_call_id, m.name)


def _params(p: pb.GenerationParams, c: _Checker) -> d.GenerationParams:
    if p.max_tokens > 1_000_000:
        c.add("params.max_tokens", "must be at most 1000000")
    temperature = p.temperature if p.HasField("temperature") else None
    if temperature is not None and not (0.0 <= temperature <= 2.0):
        c.add("params.temperature", "must be within [0, 2]")
    top_p = p.top_p if p.HasField("top_p") else None
    if top_p is not None and not (0.0 < top_p <= 1.0):
        c.add("params.top_p", "must be within (0, 1]")
    if len(p.stop) > 4:
        c.add("params.stop", "at most 4 stop sequences")
    for i, s in enumerate(p.stop):
        if not s or len(s) > 256:
            c.add(f"params.stop[{i}]", "must be 1 to 256 characters")
    fmt_type = d.ResponseFormatType.TEXT
    rf = p.response_format
    if rf.type != 0:
        known = FORMATS.get(rf.type)
        if known is None:
            c.add("params.response_format.type", f"unknown enum value {rf.type}")
        else:
            fmt_type = known
    if fmt_type is d.ResponseFormatType.JSON_SCHEMA:
        if not rf.json_schema:
            c.add("params.response_format.json_schema", "is required for JSON_SCHEMA")
        elif _json_object(rf.json_schema) is None:
            c.add("params.response_format.json_schema", "must be a JSON object")
    elif rf.json_schema:
        c.add("params.response_format.json_schema", "only with RESPONSE_FORMAT_TYPE_JSON_SCHEMA")
    if rf.schema_name and not TOOL_NAME.fullmatch(rf.schema_name):
        c.add("params.response_format.schema_name", "must be 1-64 letters, digits, '_' or '-'")
    tools: list[d.Tool] = []
    seen: set[str] = set()
    for i, t in enumerate(p.tools):
        if not TOOL_NAME.match(t.name):
            c.add(f"params.tools[{i}].name", "must be 1-64 letters, digits, '_' or '-'")
        elif t.name in seen:
            c.add(f"params.tools[{i}].name", f"duplicate tool name {t.name!r}")
        seen.add(t.name)
        if t.parameters_json and _json_object(t.parameters_json) is None:
            c.add(f"params.tools[{i}].parameters_json", "must be a JSON Schema object")
        tools.append(d.Tool(t.name, t.description, t.parameters_json))
    if len(p.tools) > 128:
        c.add("params.tools", "at most 128 tools")
    return d.GenerationParams(
        max_tokens=p.max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=tuple(p.stop),
        response_format=d.ResponseFormat(fmt_type, rf.json_schema, rf.schema_name),
        tools=tuple(tools),
        logprobs=p.logprobs,
        tool_choice=_tool_choice(p.tool_choice, seen, c),
    )


def _tool_choice(p: pb.ToolChoice, tools: set[str], c: _Checker) -> d.ToolChoice:
    mode = p.mode
    if mode == pb.TOOL_CHOICE_MODE_NONE:
        choice = d.ToolChoice(d.ToolChoiceMode.NONE)
    elif mode in (pb.TOOL_CHOICE_MODE_UNSPECIFIED, pb.TOOL_CHOICE_MODE_AUTO):
        choice = d.ToolChoice()
    elif mode == pb.TOOL_CHOICE_MODE_REQUIRED:
        choice = d.ToolChoice(d.ToolChoiceMode.REQUIRED)
    elif mode == pb.TOOL_CHOICE_MODE_TOOL:
        choice = d.ToolChoice(d.ToolChoiceMode.TOOL, p.tool_name)
        if not p.tool_name:
            c.add("params.tool_choice.tool_name", "is required with TOOL_CHOICE_MODE_TOOL")
        elif p.tool_name not in tools:
            c.add("params.tool_choice.tool_name", f"{p.tool_name!r} is not in params.tools")
    else:
        c.add("params.tool_choice.mode", f"unknown enum value {mode}")
        return d.ToolChoice()
    if p.tool_name and mode != pb.TOOL_CHOICE_MODE_TOOL:
        c.add("params.tool_choice.tool_name", "only with TOOL_CHOICE_MODE_TOOL")
    forced = choice.mode in (d.ToolChoiceMode.REQUIRED, d.ToolChoiceMode.TOOL)
    if forced and not tools:
        c.add("params.tool_choice.mode", "a tool call is required but params.tools is empty")
    return choice


def _enum_field(value: int, mapping: Mapping[int, E], default: E, field: str, c: _Checker) -> E:
    if value == 0:
        return default
    found = mapping.get(value)
    if found is None:
        c.add(field, f"unknown enum value {value}")
        return default
    return found


def _hints(
    h: pb.RoutingHints,
    catalog: Catalog,
    use_cases: Mapping[str, object],
    agents: Collection[str],
    c: _Checker,
) -> d.Hints:
    strategy = _enum_field(h.strategy, STRATEGIES, d.Strategy.AUTO, "hints.strategy", c)
    priority = _enum_field(h.priority, PRIORITIES, d.Priority.BALANCED, "hints.priority", c)
    caps: set[d.Capability] = set()
    for i, cap in enumerate(h.required_capabilities):
        found = CAPABILITIES.get(cap)
        if found is None:
            c.add(
                f"hints.required_capabilities[{i}]",
                "must not be CAPABILITY_UNSPECIFIED" if cap == 0 else f"unknown enum value {cap}",
            )
        else:
            caps.add(found)
    sensitivity: d.Sensitivity | None = None
    if h.sensitivity:
        sensitivity = SENSITIVITIES.get(h.sensitivity)
        if sensitivity is None:
            c.add("hints.sensitivity", f"unknown enum value {h.sensitivity}")
    max_cost = h.max_cost_usd if h.HasField("max_cost_usd") else None
    if max_cost is not None and (not math.isfinite(max_cost) or max_cost < 0):
        c.add("hints.max_cost_usd", "must be a finite number >= 0")
        max_cost = None
    # Unknown names are not answered with the configured ones: a tenant may not be
    # allowed to see them all (ListModels lists the models the caller may use).
    if h.model and h.model not in catalog.models:
        c.add("hints.model", f"unknown model {h.model!r} (ListModels lists the models)")
    if h.tier and h.tier not in catalog.tiers:
        c.add("hints.tier", f"unknown tier {h.tier!r} (known: {', '.join(catalog.tiers)})")
    if h.model and h.tier and h.model in catalog.models and catalog.models[h.model].tier != h.tier:
        c.add("hints.tier", f"model {h.model!r} is in tier {catalog.models[h.model].tier!r}")
    if h.use_case and h.use_case not in use_cases:
        c.add("hints.use_case", f"unknown use case {h.use_case!r}")
    if h.agent and NAME.match(h.agent) and h.agent not in agents:
        c.add("hints.agent", f"unknown agent {h.agent!r}")
    for name in ("task", "agent"):
        value = getattr(h, name)
        if value and not NAME.match(value):
            c.add(f"hints.{name}", "must be 1-64 letters, digits or _.:/-")
    if h.consensus_size == 1 or h.consensus_size > 16:
        c.add("hints.consensus_size", "must be 0 (the configured size) or 2-16: a vote needs two")
    return d.Hints(
        strategy=strategy,
        priority=priority,
        task=h.task,
        agent=h.agent,
        use_case=h.use_case,
        required_capabilities=frozenset(caps),
        max_cost_usd=max_cost,
        model=h.model,
        tier=h.tier,
        sensitivity=sensitivity,
        critical=h.critical,
        consensus_size=h.consensus_size,
        allow_cache=h.allow_cache,
    )


def route_request_from_pb(
    msg: pb.RouteRequest,
    *,
    catalog: Catalog,
    use_cases: Mapping[str, object],
    max_messages: int,
    max_request_bytes: int,
    agents: Collection[str] = (),
    prefix: str = "",
) -> d.RouteRequest:
    """Validate and convert; raise :class:`InvalidRequest` listing every bad field."""
    c = _Checker(prefix)
    size = msg.ByteSize()
    if size > max_request_bytes:
        c.add("messages", f"request is {size} bytes, limit {max_request_bytes}")
        raise InvalidRequest(c.violations)
    request_id = msg.request_id
    if request_id and not REQUEST_ID.match(request_id):
        c.add("request_id", "must be 1-128 characters: letters, digits or ._:/- ")
    if not msg.messages:
        c.add("messages", "at least one message is required")
    elif len(msg.messages) > max_messages:
        c.add("messages", f"has {len(msg.messages)} messages, limit {max_messages}")
    messages = [_message(m, f"messages[{i}]", c) for i, m in enumerate(msg.messages)]
    # Most requests set no params or no hints: their conversion is the same every time.
    params = _params(msg.params, c) if msg.HasField("params") else _DEFAULT_PARAMS
    if any(m is not None and (m.tool_calls or m.role is d.Role.TOOL) for m in messages):
        for field, problem in tool_turn_problems(messages, params):
            c.add(field, problem)
    if msg.HasField("hints"):
        hints = _hints(msg.hints, catalog, use_cases, agents, c)
    else:
        hints = _default_hints(catalog)
    tenant = msg.tenant
    if tenant and not NAME.match(tenant):
        c.add("tenant", "must be 1-64 letters, digits or _.:/-")
    if c.violations:
        raise InvalidRequest(c.violations)
    turns = tuple(m for m in messages if m is not None)
    return d.RouteRequest(
        request_id=request_id or new_request_id(),
        messages=turns,
        params=d.settle_tool_choice(params, turns),
        hints=hints,
        tenant=tenant,
    )


_DEFAULT_PARAMS = _params(pb.GenerationParams(), _Checker(""))
_DEFAULT_HINTS: list[d.Hints] = []


def _default_hints(catalog: Catalog) -> d.Hints:
    """What an unset ``hints`` converts to (no field set, so no catalog lookup)."""
    if not _DEFAULT_HINTS:
        _DEFAULT_HINTS.append(_hints(pb.RoutingHints(), catalog, {}, (), _Checker("")))
    return _DEFAULT_HINTS[0]


_FEEDBACK_KINDS: dict[int, FeedbackKind] = {
    svc_pb.FEEDBACK_KIND_REGENERATED: "regenerated",
    svc_pb.FEEDBACK_KIND_THUMBS_UP: "thumbs_up",
    svc_pb.FEEDBACK_KIND_THUMBS_DOWN: "thumbs_down",
    svc_pb.FEEDBACK_KIND_SCORE: "score",
    svc_pb.FEEDBACK_KIND_LABEL: "label",
}


def feedback_from_pb(msg: svc_pb.FeedbackRequest) -> Feedback:
    """Validate and convert a FeedbackRequest."""
    c = _Checker("")
    if not msg.request_id:
        c.add("request_id", "is required")
    elif not REQUEST_ID.match(msg.request_id):
        c.add("request_id", "must be 1-128 characters: letters, digits or ._:/- ")
    kind = _FEEDBACK_KINDS.get(msg.kind)
    if kind is None:
        c.add(
            "kind",
            "must be one of FEEDBACK_KIND_REGENERATED, _THUMBS_UP, _THUMBS_DOWN, _SCORE, _LABEL"
            if msg.kind == 0
            else f"unknown enum value {msg.kind}",
        )
    score: float | None = None
    if kind == "score":
        if not (math.isfinite(msg.score) and 0.0 <= msg.score <= 1.0):
            c.add("score", "must be within [0, 1]")
        score = msg.score
    elif msg.score:
        c.add("score", "only with FEEDBACK_KIND_SCORE")
    if kind == "label" and not msg.label:
        c.add("label", "is required for FEEDBACK_KIND_LABEL")
    if len(msg.label) > 128:
        c.add("label", "at most 128 characters")
    if len(msg.comment) > 2000:
        c.add("comment", "at most 2000 characters")
    if c.violations or kind is None:
        raise InvalidRequest(c.violations)
    return Feedback(msg.request_id, kind, score, msg.label, msg.comment)


# ---- domain → protobuf -------------------------------------------------------------


# The response is built from nested dicts: protobuf fills nested messages from a dict
# in place, where a message argument is built on its own and then copied in.
Fields = dict[str, Any]


def _usage(u: d.Usage) -> Fields:
    fields: Fields = {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}
    if u.cached_input_tokens:
        fields["cached_input_tokens"] = u.cached_input_tokens
    if u.cache_write_tokens:
        fields["cache_write_tokens"] = u.cache_write_tokens
    return fields


def usage_pb(u: d.Usage) -> pb.Usage:
    return pb.Usage(**_usage(u))


def _classification(c: d.Classification) -> Fields:
    return {
        "task": c.task,
        "difficulty": DIFFICULTY_PB[c.difficulty],
        "confidence": c.confidence,
        "agent": c.agent,
        "classifier": c.classifier,
        "signals": list(c.signals),
    }


def classification_pb(c: d.Classification) -> pb.Classification:
    return pb.Classification(**_classification(c))


def _candidate(c: d.Candidate) -> Fields:
    return {
        "model": c.model,
        "provider": c.provider,
        "tier": c.tier,
        "estimated_cost_usd": c.estimated_cost_usd,
        "breaker_state": BREAKER_PB[c.breaker_state],
        "weight": c.weight,
        "note": c.note,
    }


def candidate_pb(c: d.Candidate) -> pb.Candidate:
    return pb.Candidate(**_candidate(c))


def _plan(p: d.ExecutionPlan) -> Fields:
    return {
        "strategy": STRATEGY_PB[p.strategy],
        "stages": [
            {"role": s.role, "candidates": [_candidate(c) for c in s.candidates], "note": s.note}
            for s in p.stages
        ],
        "estimated_cost_min_usd": p.estimated_cost_min_usd,
        "estimated_cost_max_usd": p.estimated_cost_max_usd,
        "reasons": [{"code": r.code, "message": r.message} for r in p.reasons],
        "max_upstream_calls": p.max_upstream_calls,
    }


def plan_pb(p: d.ExecutionPlan) -> pb.ExecutionPlan:
    return pb.ExecutionPlan(**_plan(p))


def _gate(g: d.GateVerdict) -> Fields:
    return {
        "passed": g.passed,
        "checks": [{"name": c.name, "passed": c.passed, "reason": c.reason} for c in g.checks],
    }


def gate_pb(g: d.GateVerdict) -> pb.GateVerdict:
    return pb.GateVerdict(**_gate(g))


def _attempt(a: d.Attempt) -> Fields:
    fields: Fields = {
        "model": a.model,
        "provider": a.provider,
        "tier": a.tier,
        "role": a.role,
        "outcome": OUTCOME_PB[a.outcome],
        "reason": a.reason,
        "error_reason": a.error_reason,
        "latency_ms": a.latency_ms,
        "usage": _usage(a.usage),
        "cost_usd": a.cost_usd,
        "started_ms": a.started_ms,
    }
    if a.gate is not None:
        fields["gate"] = _gate(a.gate)
    return fields


def attempt_pb(a: d.Attempt) -> pb.Attempt:
    return pb.Attempt(**_attempt(a))


def tool_call_pb(t: d.ToolCall) -> pb.ToolCall:
    return pb.ToolCall(id=t.id, name=t.name, arguments_json=t.arguments_json)


def cascade_pb(c: d.CascadeDetail) -> pb.CascadeDetail:
    return pb.CascadeDetail(
        tiers_tried=list(c.tiers_tried),
        escalation_reason=c.escalation_reason,
        wasted_cost_usd=c.wasted_cost_usd,
        route_escalation_rate=c.route_escalation_rate,
        deadline_limited=c.deadline_limited,
    )


def candidate_answer_pb(a: d.CandidateAnswer) -> pb.CandidateAnswer:
    msg = pb.CandidateAnswer(
        model=a.model,
        normalized=a.normalized,
        group=a.group,
        weight=a.weight,
        cancelled=a.cancelled,
    )
    if a.judge_score is not None:
        msg.judge_score = a.judge_score
    return msg


def consensus_pb(c: d.ConsensusDetail) -> pb.ConsensusDetail:
    msg = pb.ConsensusDetail(
        answers=[candidate_answer_pb(a) for a in c.answers],
        groups=[
            pb.VoteGroup(normalized=g.normalized, weight=g.weight, models=list(g.models))
            for g in c.groups
        ],
        winner_group=c.winner_group,
        agreement=c.agreement,
        early_exit=c.early_exit,
        normalizer=c.normalizer,
        tie_break=c.tie_break,
    )
    if c.judge is not None:
        j = c.judge
        msg.judge.CopyFrom(
            pb.JudgeDetail(
                model=j.model,
                seed=j.seed,
                presented_order=list(j.presented_order),
                rationale=j.rationale,
                fallback_reason=j.fallback_reason,
                synthesized=j.synthesized,
            )
        )
    return msg


def route_response_pb(r: d.RouteResult) -> pb.RouteResponse:
    fields: Fields = {
        "request_id": r.request_id,
        "content": r.completion.content,
        "tool_calls": [
            {"id": t.id, "name": t.name, "arguments_json": t.arguments_json}
            for t in r.completion.tool_calls
        ],
        "finish_reason": r.completion.finish_reason,
        "model": r.model,
        "provider": r.provider,
        "strategy": STRATEGY_PB[r.strategy],
        "classification": _classification(r.classification),
        "plan": _plan(r.plan),
        "attempts": [_attempt(a) for a in r.attempts],
        "usage": _usage(r.usage),
        "cost_usd": r.cost_usd,
        "baseline_cost_usd": r.baseline_cost_usd,
        "baseline_model": r.baseline_model,
        "timings": {
            "classify_ms": r.timings.classify_ms,
            "plan_ms": r.timings.plan_ms,
            "execute_ms": r.timings.execute_ms,
            "total_ms": r.timings.total_ms,
        },
        "cached": r.cached,
        "guards": list(r.guards),
        "simulated": r.simulated,
    }
    msg = pb.RouteResponse(**fields)
    if r.cascade is not None:
        msg.cascade.CopyFrom(cascade_pb(r.cascade))
    if r.consensus is not None:
        msg.consensus.CopyFrom(consensus_pb(r.consensus))
    return msg


def provider_status_pb(name: str, h: ProviderHealth) -> svc_pb.ProviderStatus:
    return svc_pb.ProviderStatus(
        provider=name,
        breaker_state=BREAKER_PB[h.state],
        failure_count=h.failure_count,
        cooldown_remaining_s=h.cooldown_remaining_s,
    )


def model_info_pb(m: ModelSpec, health: ProviderHealth) -> pb.ModelInfo:
    return pb.ModelInfo(
        name=m.name,
        provider=m.provider,
        provider_kind=m.provider_kind,
        provider_model=m.model_id,
        tier=m.tier,
        input_usd_per_mtok=m.input_usd_per_mtok,
        output_usd_per_mtok=m.output_usd_per_mtok,
        context_window=m.context_window,
        capabilities=sorted(CAPABILITY_PB[c] for c in m.capabilities),
        max_sensitivity=SENSITIVITY_PB[m.max_sensitivity],
        simulated=m.simulated is not None,
        breaker_state=BREAKER_PB[health.state],
    )


# ---- stream events → protobuf ------------------------------------------------------


def stream_event_pb(item: Event | d.RouteResult) -> svc_pb.RouteStreamResponse:
    """One RouteStream message for an execution event or the final account."""
    if isinstance(item, d.RouteResult):
        return svc_pb.RouteStreamResponse(final=route_response_pb(item))
    if isinstance(item, PlanMade):
        return svc_pb.RouteStreamResponse(plan=plan_pb(item.plan))
    if isinstance(item, AttemptStarted):
        return svc_pb.RouteStreamResponse(
            attempt_started=svc_pb.AttemptStartedEvent(
                model=item.model, provider=item.provider, role=item.role
            )
        )
    if isinstance(item, Chunk):
        chunk = svc_pb.ChunkEvent(model=item.model, text=item.text)
        if item.tool_call is not None:
            chunk.tool_call.CopyFrom(tool_call_pb(item.tool_call))
        return svc_pb.RouteStreamResponse(chunk=chunk)
    if isinstance(item, GateEvaluated):
        return svc_pb.RouteStreamResponse(
            gate=svc_pb.GateEvent(model=item.model, verdict=gate_pb(item.verdict))
        )
    if isinstance(item, Escalated):
        return svc_pb.RouteStreamResponse(
            escalation=svc_pb.EscalationEvent(
                from_tier=item.from_tier, to_tier=item.to_tier, reason=item.reason
            )
        )
    if isinstance(item, Voted):
        return svc_pb.RouteStreamResponse(
            vote=svc_pb.VoteEvent(answer=candidate_answer_pb(item.answer))
        )
    if isinstance(item, FellBack):
        return svc_pb.RouteStreamResponse(
            fallback=svc_pb.FallbackEvent(
                from_model=item.from_model,
                to_model=item.to_model,
                reason=item.reason,
                discarded_prefix_chars=item.discarded_prefix_chars,
            )
        )
    raise TypeError(f"no stream message for {type(item).__name__}")


def stream_error_pb(error: QuorumError) -> svc_pb.RouteStreamResponse:
    """The last message of a stream that failed after it started."""
    attempts = error.attempts if isinstance(error, ExecutionFailed) else ()
    event = svc_pb.ErrorEvent(
        code=error.code.name,
        reason=error.reason,
        message=error.message,
        attempts=[attempt_pb(a) for a in attempts],
    )
    if error.retry_after_s is not None:
        event.retry_delay.FromNanoseconds(int(error.retry_after_s * 1e9))
    return svc_pb.RouteStreamResponse(error=event)


def stream_internal_error_pb(request_id: str) -> svc_pb.RouteStreamResponse:
    """The last message of a stream that failed on a bug: generic, details in the log."""
    message = "internal error; see server logs" + (
        f" for request {request_id}" if request_id else ""
    )
    return svc_pb.RouteStreamResponse(
        error=svc_pb.ErrorEvent(code="INTERNAL", reason="INTERNAL", message=message)
    )
