"""Protobuf ⇄ domain, and request validation: the service layer's edge.

Requests are validated here, field by field, into ``BadRequest`` field violations named
by their proto path (``messages[0].role``, ``hints.max_cost_usd``); every violation is
reported at once. JSON carried in strings (tool schemas, tool call arguments, the
response schema) is parsed as strictly as the providers parse it and bounded in depth,
so that what passes here can be sent to any of them. Nothing past this module sees a
``_pb2`` object.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar, cast

from google.protobuf.message import Message

from quorum.route.v1 import route_service_pb2 as svc_pb
from quorum.route.v1 import types_pb2 as pb
from quorum.server import domain as d
from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.conversation import tool_turn_problems
from quorum.server.decisions import Feedback, FeedbackKind
from quorum.server.errors import (
    ExecutionFailed,
    FieldViolation,
    InvalidRequest,
    QuorumError,
    echo,
)
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
from quorum.server.execute.gate import schema_problem
from quorum.server.names import (
    IMAGE_TYPES,
    MAX_CONTENT_CHARS,
    MAX_IMAGE_BYTES,
    NAME,
    NAME_RULE,
    REQUEST_ID,
    REQUEST_ID_RULE,
    TOOL_NAME,
    base64_size,
    json_object_problem,
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

# An enum member read off its class costs a lookup each time (some 0.2 µs on Python
# 3.11); the members request conversion compares against on every request are bound once.
_ASSISTANT = d.Role.ASSISTANT
_USER = d.Role.USER
_TOOL = d.Role.TOOL
_TEXT = d.ResponseFormatType.TEXT
_JSON_SCHEMA = d.ResponseFormatType.JSON_SCHEMA
_CHOICE_NONE = d.ToolChoiceMode.NONE
_AUTO = d.Strategy.AUTO
_BALANCED = d.Priority.BALANCED


class _Checker:
    """Collects violations under a path prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(self.prefix + field, description))


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
    # Most messages are plain text: parts and tool calls are looked through only if any.
    parts_pb = m.parts
    parts = _parts(parts_pb, role, path, c) if parts_pb else ()
    calls_pb = m.tool_calls
    calls = _tool_calls(calls_pb, role, path, c) if calls_pb else ()
    tool_call_id = m.tool_call_id
    if role is _TOOL and not tool_call_id:
        c.add(f"{path}.tool_call_id", "is required for a ROLE_TOOL message")
    elif tool_call_id and role is not _TOOL and role is not None:
        c.add(f"{path}.tool_call_id", "only a ROLE_TOOL message answers a tool call")
    elif tool_call_id and not tool_call_id.isprintable():
        c.add(f"{path}.tool_call_id", "must be printable: no control characters or line breaks")
    if not content and not parts and not calls:
        c.add(f"{path}.content", "is empty: set content, parts or tool_calls")
    name = m.name
    if name and not TOOL_NAME.match(name):
        c.add(f"{path}.name", "must be 1-64 letters, digits, '_' or '-'")
    if role is None:
        return None
    return d.Message(role, content, parts, calls, tool_call_id, name)


_IMAGE_TYPE_LIST = ", ".join(sorted(IMAGE_TYPES))


def _data_url_type(url: str) -> str:
    """The media type of a ``data:`` URL (``data:image/png;base64,...``), else ""."""
    comma = url.find(",", 5, 261) if url.startswith("data:") else -1
    return url[5:comma].partition(";")[0].strip().lower() if comma > 0 else ""


def _data_url_problem(url: str) -> str:
    """What the vendors would refuse in an image ``data:`` URL of a known type, else "":
    the payload must be base64 (``;base64,``), strictly, of at most MAX_IMAGE_BYTES."""
    header, _, payload = url.partition(",")
    if "base64" not in (p.strip().lower() for p in header.split(";")[1:]):
        return "must be a base64 data URL (data:<type>;base64,...)"
    try:
        size = base64_size(payload)
    except ValueError as exc:
        return str(exc)
    if size > MAX_IMAGE_BYTES:
        return f"holds {size} bytes, limit {MAX_IMAGE_BYTES}"
    return ""


def _parts(
    parts_pb: Iterable[pb.ContentPart], role: d.Role | None, path: str, c: _Checker
) -> tuple[d.ContentPart, ...]:
    parts: list[d.ContentPart] = []
    for j, part in enumerate(parts_pb):
        ppath = f"{path}.parts[{j}]"
        which = part.WhichOneof("part")
        if which == "text":
            if not part.text:
                c.add(f"{ppath}.text", "is empty")
            parts.append(d.ContentPart(text=part.text))
        elif which == "image":
            img = part.image
            url, media_type = img.url, img.media_type
            if role is not _USER and role is not None:  # the vendors take images from users
                c.add(f"{ppath}.image", "only a ROLE_USER message carries images")
            if bool(url) == bool(img.data):
                c.add(f"{ppath}.image", "set exactly one of url or data")
            elif url:
                if url.startswith("https://"):
                    if " " in url or not url.isprintable():
                        c.add(
                            f"{ppath}.image.url",
                            "must not contain whitespace or control characters"
                            " (percent-encode them)",
                        )
                elif _data_url_type(url) not in IMAGE_TYPES:
                    c.add(
                        f"{ppath}.image.url",
                        f"must be an https URL or a data URL of {_IMAGE_TYPE_LIST}",
                    )
                else:
                    problem = _data_url_problem(url)
                    if problem:
                        c.add(f"{ppath}.image.url", problem)
                if media_type and media_type not in IMAGE_TYPES:
                    c.add(
                        f"{ppath}.image.media_type",
                        f"must be empty or one of {_IMAGE_TYPE_LIST} (it describes the image)",
                    )
            elif media_type not in IMAGE_TYPES:
                c.add(f"{ppath}.image.media_type", f"must be one of {_IMAGE_TYPE_LIST}")
            elif len(img.data) > MAX_IMAGE_BYTES:
                c.add(f"{ppath}.image.data", f"is {len(img.data)} bytes, limit {MAX_IMAGE_BYTES}")
            parts.append(d.ContentPart(image=d.ImagePart(url, img.data, media_type)))
        else:
            c.add(ppath, "set text or image")
    return tuple(parts)


def _tool_calls(
    calls_pb: Iterable[pb.ToolCall], role: d.Role | None, path: str, c: _Checker
) -> tuple[d.ToolCall, ...]:
    calls = tuple(d.ToolCall(t.id, t.name, t.arguments_json) for t in calls_pb)
    if role is not _ASSISTANT:
        c.add(f"{path}.tool_calls", "only an assistant message makes tool calls")
    for j, call in enumerate(calls):
        call_id, name, arguments_json = call.id, call.name, call.arguments_json
        if not call_id:
            c.add(f"{path}.tool_calls[{j}].id", "is required: a tool result answers it by id")
        elif not call_id.isprintable():
            c.add(
                f"{path}.tool_calls[{j}].id",
                "must be printable: no control characters or line breaks",
            )
        if not name:
            c.add(f"{path}.tool_calls[{j}].name", "is required")
        elif not TOOL_NAME.match(name):  # the rule of params.tools[i].name
            c.add(f"{path}.tool_calls[{j}].name", "must be 1-64 letters, digits, '_' or '-'")
        if arguments_json:
            problem = json_object_problem(arguments_json, "a JSON object")
            if problem:
                c.add(f"{path}.tool_calls[{j}].arguments_json", problem)
    return calls


def _params(p: pb.GenerationParams, c: _Checker) -> d.GenerationParams:
    max_tokens = p.max_tokens
    if max_tokens > 1_000_000:
        c.add("params.max_tokens", "must be at most 1000000")
    temperature = p.temperature if p.HasField("temperature") else None
    if temperature is not None and not (0.0 <= temperature <= 2.0):
        c.add("params.temperature", "must be within [0, 2]")
    top_p = p.top_p if p.HasField("top_p") else None
    if top_p is not None and not (0.0 < top_p <= 1.0):
        c.add("params.top_p", "must be within (0, 1]")
    stop = tuple(p.stop)
    if len(stop) > 4:
        c.add("params.stop", "at most 4 stop sequences")
    for i, s in enumerate(stop):
        if not s or len(s) > 256:
            c.add(f"params.stop[{i}]", "must be 1 to 256 characters")
    # An unset message converts as one at its defaults would (and finds nothing wrong).
    if p.HasField("response_format"):
        response_format = _response_format(p.response_format, c)
    else:
        response_format = _DEFAULT_FORMAT
    tools: list[d.Tool] = []
    seen: set[str] = set()
    tools_pb = p.tools
    for i, t in enumerate(tools_pb):
        name = t.name
        if not TOOL_NAME.match(name):
            c.add(f"params.tools[{i}].name", "must be 1-64 letters, digits, '_' or '-'")
        elif name in seen:
            c.add(f"params.tools[{i}].name", f"duplicate tool name {name!r}")
        seen.add(name)
        parameters_json = t.parameters_json
        if parameters_json:
            problem = json_object_problem(parameters_json, "a JSON Schema object")
            if problem:
                c.add(f"params.tools[{i}].parameters_json", problem)
        tools.append(d.Tool(name, t.description, parameters_json))
    if len(tools_pb) > 128:
        c.add("params.tools", "at most 128 tools")
    if p.HasField("tool_choice"):
        tool_choice = _tool_choice(p.tool_choice, seen, c)
    else:
        tool_choice = _DEFAULT_CHOICE
    return d.GenerationParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=stop,
        response_format=response_format,
        tools=tuple(tools),
        logprobs=p.logprobs,
        tool_choice=tool_choice,
    )


def _response_format(rf: pb.ResponseFormat, c: _Checker) -> d.ResponseFormat:
    fmt_type = _TEXT
    rf_type = rf.type
    if rf_type != 0:
        known = FORMATS.get(rf_type)
        if known is None:
            c.add("params.response_format.type", f"unknown enum value {rf_type}")
        else:
            fmt_type = known
    json_schema = rf.json_schema
    if fmt_type is _JSON_SCHEMA:
        if not json_schema:
            c.add("params.response_format.json_schema", "is required for JSON_SCHEMA")
        else:
            problem = schema_problem(json_schema)
            if problem is not None:
                c.add("params.response_format.json_schema", problem)
    elif json_schema:
        c.add("params.response_format.json_schema", "only with RESPONSE_FORMAT_TYPE_JSON_SCHEMA")
    schema_name = rf.schema_name
    if schema_name and not TOOL_NAME.fullmatch(schema_name):
        c.add("params.response_format.schema_name", "must be 1-64 letters, digits, '_' or '-'")
    return d.ResponseFormat(fmt_type, json_schema, schema_name)


_DEFAULT_FORMAT = d.ResponseFormat()
_DEFAULT_CHOICE = d.ToolChoice()


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
            c.add("params.tool_choice.tool_name", f"{echo(p.tool_name)} is not in params.tools")
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
    strategy = _enum_field(h.strategy, STRATEGIES, _AUTO, "hints.strategy", c)
    priority = _enum_field(h.priority, PRIORITIES, _BALANCED, "hints.priority", c)
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
    sensitivity_pb = h.sensitivity
    if sensitivity_pb:
        sensitivity = SENSITIVITIES.get(sensitivity_pb)
        if sensitivity is None:
            c.add("hints.sensitivity", f"unknown enum value {sensitivity_pb}")
    max_cost = h.max_cost_usd if h.HasField("max_cost_usd") else None
    if max_cost is not None:
        if not math.isfinite(max_cost) or max_cost < 0:
            c.add("hints.max_cost_usd", "must be a finite number >= 0")
            max_cost = None
        elif max_cost == 0.0:  # -0.0 too: a ceiling of $0 as 0 is, never shown as "$-0"
            max_cost = 0.0
    # Each read of a protobuf string field decodes it anew: each is read once.
    task, agent, use_case, model, tier = h.task, h.agent, h.use_case, h.model, h.tier
    # Unknown names are not answered with the configured ones: a tenant may not be
    # allowed to see them all (ListModels lists the models the caller may use).
    models = catalog.models
    if model and model not in models:
        c.add("hints.model", f"unknown model {echo(model)} (ListModels lists the models)")
    if tier and tier not in catalog.tiers:
        c.add("hints.tier", f"unknown tier {echo(tier)} (known: {', '.join(catalog.tiers)})")
    if model and tier and model in models and models[model].tier != tier:
        c.add("hints.tier", f"model {model!r} is in tier {models[model].tier!r}")
    if use_case and use_case not in use_cases:
        c.add("hints.use_case", f"unknown use case {echo(use_case)}")
    if agent and NAME.match(agent) and agent not in agents:
        c.add("hints.agent", f"unknown agent {agent!r}")
    if task and not NAME.match(task):
        c.add("hints.task", NAME_RULE)
    if agent and not NAME.match(agent):
        c.add("hints.agent", NAME_RULE)
    consensus_size = h.consensus_size
    if consensus_size == 1 or consensus_size > 16:
        c.add("hints.consensus_size", "must be 0 (the configured size) or 2-16: a vote needs two")
    return d.Hints(
        strategy=strategy,
        priority=priority,
        task=task,
        agent=agent,
        use_case=use_case,
        required_capabilities=frozenset(caps),
        max_cost_usd=max_cost,
        model=model,
        tier=tier,
        sensitivity=sensitivity,
        critical=h.critical,
        consensus_size=consensus_size,
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
        c.add("request_id", REQUEST_ID_RULE)
    messages_pb = msg.messages
    count = len(messages_pb)
    if not count:
        c.add("messages", "at least one message is required")
    elif count > max_messages:
        c.add("messages", f"has {count} messages, limit {max_messages}")
    messages = [_message(m, f"messages[{i}]", c) for i, m in enumerate(messages_pb)]
    # Most requests set no params or no hints: their conversion is the same every time.
    params = _params(msg.params, c) if msg.HasField("params") else _DEFAULT_PARAMS
    for m in messages:
        if m is not None and (m.tool_calls or m.role is _TOOL):
            for field, problem in tool_turn_problems(messages, params):
                c.add(field, problem)
            break
    if msg.HasField("hints"):
        hints = _hints(msg.hints, catalog, use_cases, agents, c)
    else:
        hints = _default_hints(catalog)
    tenant = msg.tenant
    if tenant and not NAME.match(tenant):
        c.add("tenant", NAME_RULE)
    if c.violations:
        raise InvalidRequest(c.violations)
    # No violations: every message converted (one that does not is a violation).
    turns = tuple(cast("list[d.Message]", messages))
    if params.tool_choice.mode is _CHOICE_NONE:  # what settle_tool_choice may change
        params = d.settle_tool_choice(params, turns)
    return d.RouteRequest(
        request_id=request_id or new_request_id(),
        messages=turns,
        params=params,
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
        c.add("request_id", REQUEST_ID_RULE)
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
    elif msg.label and kind not in ("label", None):
        c.add("label", "only with FEEDBACK_KIND_LABEL")
    if len(msg.label) > 128:
        c.add("label", "at most 128 characters")
    elif not msg.label.isprintable():
        c.add("label", "must be printable text (no control characters)")
    if len(msg.comment) > 2000:
        c.add("comment", "at most 2000 characters")
    if c.violations or kind is None:
        raise InvalidRequest(c.violations)
    return Feedback(msg.request_id, kind, score, msg.label, msg.comment)


# ---- domain → protobuf -------------------------------------------------------------


# Messages are filled in place, field by field, inside their parent: with the upb backend
# that is the cheapest way in (a constructor's keyword arguments or a dict for a nested
# message cost more per field, and a message built on its own is copied again into its
# parent). A string, integer, boolean or repeated field that is often at its default is
# set only when it is not: protobuf would not serialise the default, so setting it is
# only a cost. Floats are always set: -0.0 is serialised (its bits are not zero).
# Setting a field of a sub-message, even to its default, marks the sub-message present,
# as building it from a dict did: each ``_fill_*`` sets one field unconditionally, so a
# sub-message at all defaults is still sent, empty.


_M = TypeVar("_M", bound=Message)
_V = TypeVar("_V")


def _built(message: Callable[[], _M], fill: Callable[[_M, _V], None], value: _V) -> _M:
    """A new message filled from ``value`` (the ``*_pb`` functions: one message alone)."""
    m = message()
    fill(m, value)
    return m


def _fill_usage(m: pb.Usage, u: d.Usage) -> None:
    m.input_tokens = u.input_tokens  # always set: marks the message present
    m.output_tokens = u.output_tokens
    if u.cached_input_tokens:
        m.cached_input_tokens = u.cached_input_tokens
    if u.cache_write_tokens:
        m.cache_write_tokens = u.cache_write_tokens


def _fill_classification(m: pb.Classification, c: d.Classification) -> None:
    m.task = c.task  # always set: marks the message present
    m.difficulty = DIFFICULTY_PB[c.difficulty]
    m.confidence = c.confidence
    if c.agent:
        m.agent = c.agent
    m.classifier = c.classifier
    if c.signals:
        m.signals.extend(c.signals)


def classification_pb(c: d.Classification) -> pb.Classification:
    return _built(pb.Classification, _fill_classification, c)


def _fill_candidate(m: pb.Candidate, c: d.Candidate) -> None:
    m.model = c.model
    m.provider = c.provider
    m.tier = c.tier
    m.estimated_cost_usd = c.estimated_cost_usd
    m.breaker_state = BREAKER_PB[c.breaker_state]
    m.weight = c.weight
    if c.note:
        m.note = c.note
    if c.simulated:
        m.simulated = True


def _fill_plan(m: pb.ExecutionPlan, p: d.ExecutionPlan) -> None:
    m.strategy = STRATEGY_PB[p.strategy]  # always set: marks the message present
    stages = m.stages
    for s in p.stages:
        stage = stages.add()
        stage.role = s.role
        candidates = stage.candidates
        for c in s.candidates:
            _fill_candidate(candidates.add(), c)
        if s.note:
            stage.note = s.note
    m.estimated_cost_min_usd = p.estimated_cost_min_usd
    m.estimated_cost_max_usd = p.estimated_cost_max_usd
    reasons = m.reasons
    for r in p.reasons:
        reason = reasons.add()
        reason.code = r.code
        reason.message = r.message
    if p.max_upstream_calls:
        m.max_upstream_calls = p.max_upstream_calls


def plan_pb(p: d.ExecutionPlan) -> pb.ExecutionPlan:
    return _built(pb.ExecutionPlan, _fill_plan, p)


def _fill_gate(m: pb.GateVerdict, g: d.GateVerdict) -> None:
    m.passed = g.passed  # always set: marks the message present
    checks = m.checks
    for c in g.checks:
        check = checks.add()
        check.name = c.name
        check.passed = c.passed
        if c.reason:
            check.reason = c.reason


def gate_pb(g: d.GateVerdict) -> pb.GateVerdict:
    return _built(pb.GateVerdict, _fill_gate, g)


def _fill_attempt(m: pb.Attempt, a: d.Attempt) -> None:
    m.model = a.model
    m.provider = a.provider
    m.tier = a.tier
    m.role = a.role
    m.outcome = OUTCOME_PB[a.outcome]
    m.reason = a.reason
    if a.error_reason:
        m.error_reason = a.error_reason
    m.latency_ms = a.latency_ms
    _fill_usage(m.usage, a.usage)
    m.cost_usd = a.cost_usd
    m.started_ms = a.started_ms
    if a.gate is not None:
        _fill_gate(m.gate, a.gate)


def attempt_pb(a: d.Attempt) -> pb.Attempt:
    return _built(pb.Attempt, _fill_attempt, a)


def _fill_tool_call(m: pb.ToolCall, t: d.ToolCall) -> None:
    m.id = t.id
    m.name = t.name
    m.arguments_json = t.arguments_json


def tool_call_pb(t: d.ToolCall) -> pb.ToolCall:
    return _built(pb.ToolCall, _fill_tool_call, t)


def _fill_cascade(m: pb.CascadeDetail, c: d.CascadeDetail) -> None:
    if c.tiers_tried:
        m.tiers_tried.extend(c.tiers_tried)
    if c.escalation_reason:
        m.escalation_reason = c.escalation_reason
    m.wasted_cost_usd = c.wasted_cost_usd  # always set: marks the message present
    m.route_escalation_rate = c.route_escalation_rate
    if c.deadline_limited:
        m.deadline_limited = c.deadline_limited


def _fill_candidate_answer(m: pb.CandidateAnswer, a: d.CandidateAnswer) -> None:
    m.model = a.model
    m.normalized = a.normalized
    if a.group:
        m.group = a.group
    m.weight = a.weight
    if a.cancelled:
        m.cancelled = a.cancelled
    if a.judge_score is not None:
        m.judge_score = a.judge_score


def candidate_answer_pb(a: d.CandidateAnswer) -> pb.CandidateAnswer:
    return _built(pb.CandidateAnswer, _fill_candidate_answer, a)


def _fill_judge(m: pb.JudgeDetail, j: d.JudgeDetail) -> None:
    m.model = j.model  # always set: marks the message present
    if j.seed:
        m.seed = j.seed
    if j.presented_order:
        m.presented_order.extend(j.presented_order)
    if j.rationale:
        m.rationale = j.rationale
    if j.fallback_reason:
        m.fallback_reason = j.fallback_reason
    if j.synthesized:
        m.synthesized = j.synthesized


def _fill_consensus(m: pb.ConsensusDetail, c: d.ConsensusDetail) -> None:
    answers = m.answers
    for a in c.answers:
        _fill_candidate_answer(answers.add(), a)
    groups = m.groups
    for g in c.groups:
        group = groups.add()
        group.normalized = g.normalized
        group.weight = g.weight
        if g.models:
            group.models.extend(g.models)
    if c.winner_group:
        m.winner_group = c.winner_group
    m.agreement = c.agreement  # always set: marks the message present
    if c.early_exit:
        m.early_exit = c.early_exit
    m.normalizer = c.normalizer
    if c.judge is not None:
        _fill_judge(m.judge, c.judge)
    if c.tie_break:
        m.tie_break = c.tie_break


def route_response_pb(r: d.RouteResult) -> pb.RouteResponse:
    msg = pb.RouteResponse()
    completion = r.completion
    msg.request_id = r.request_id
    msg.content = completion.content
    if completion.tool_calls:
        tool_calls = msg.tool_calls
        for call in completion.tool_calls:
            _fill_tool_call(tool_calls.add(), call)
    msg.finish_reason = completion.finish_reason
    msg.model = r.model
    msg.provider = r.provider
    msg.strategy = STRATEGY_PB[r.strategy]
    _fill_classification(msg.classification, r.classification)
    _fill_plan(msg.plan, r.plan)
    attempts = msg.attempts
    for a in r.attempts:
        _fill_attempt(attempts.add(), a)
    _fill_usage(msg.usage, r.usage)
    msg.cost_usd = r.cost_usd
    msg.baseline_cost_usd = r.baseline_cost_usd
    msg.baseline_model = r.baseline_model
    timings, t = msg.timings, r.timings
    timings.classify_ms = t.classify_ms  # always set: marks the message present
    timings.plan_ms = t.plan_ms
    timings.execute_ms = t.execute_ms
    timings.total_ms = t.total_ms
    if r.cascade is not None:
        _fill_cascade(msg.cascade, r.cascade)
    if r.consensus is not None:
        _fill_consensus(msg.consensus, r.consensus)
    if r.cached:
        msg.cached = r.cached
    if r.guards:
        msg.guards.extend(r.guards)
    if r.simulated:
        msg.simulated = r.simulated
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
