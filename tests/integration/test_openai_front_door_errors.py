"""The front door's tables: every error mapped, every model name and hint understood.

No server here: these check the one error mapping and the request translation directly,
so that a new error class or hint cannot slip through unmapped.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import orjson
import pytest
import structlog

from quorum.server import domain as d
from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.errors import (
    AllAttemptsFailed,
    ConfigError,
    FieldViolation,
    InvalidRequest,
    NotFound,
    ProviderError,
    ProviderRateLimited,
    QuorumError,
    ResourceExhausted,
    StrategyInfeasible,
    all_error_classes,
)
from quorum.server.frontdoor import errors as frontdoor_errors
from quorum.server.frontdoor.errors import (
    HTTP_STATUS,
    http_error,
    log_internal_error,
    loggable,
    violation_count,
)
from quorum.server.frontdoor.naming import MAX_MODEL_ECHO_CHARS, resolve
from quorum.server.frontdoor.translate import (
    IGNORED,
    MAX_SURROGATE_REPORTS,
    SERVICE_TIERS,
    parse_chat_request,
)
from quorum.server.policy import build_policy
from quorum.server.service.status import MAX_VIOLATIONS
from tests.conftest import sim_config

CONFIG = parse_config(sim_config())
CATALOG = build_catalog(CONFIG)
POLICY = build_policy(CONFIG)
AGENTS = ("email_assistant",)


def _instance(cls: type[QuorumError]) -> QuorumError:
    if issubclass(cls, InvalidRequest):
        return cls([FieldViolation("temperature", "bad")])
    if cls is ConfigError:
        return ConfigError(["x: bad"])
    return cls("something went wrong")


def test_every_grpc_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_is_mapped(cls: type[QuorumError]) -> None:
    error = http_error(_instance(cls), request_id="r1")
    body = error.body["error"]
    assert set(body) >= {"message", "type", "param", "code"}
    assert body["code"] == cls.reason.lower()
    assert body["quorum"]["request_id"] == "r1"
    if cls is QuorumError:
        assert error.status == 500
    elif issubclass(cls, ProviderError):
        # A provider fault is an availability, rate or request problem, never a bare 500.
        assert error.status in (400, 429, 503, 504)
    else:
        assert error.status != 500


def test_rate_limits_carry_retry_after() -> None:
    error = http_error(ResourceExhausted("slow down", retry_after_s=2.2, reason="OVERLOADED"))
    assert error.status == 429
    assert error.headers == {"Retry-After": "3", "retry-after-ms": "2200"}
    assert error.body["error"]["code"] == "overloaded"
    upstream = http_error(ProviderRateLimited("429", retry_after_s=0.2))
    assert upstream.headers["Retry-After"] == "1"


def test_budget_exhaustion_is_insufficient_quota() -> None:
    error = http_error(ResourceExhausted("spent", reason="BUDGET_EXHAUSTED"))
    assert (error.status, error.body["error"]["type"]) == (429, "insufficient_quota")


def test_failed_execution_lists_attempts() -> None:
    attempt = d.Attempt("flash", "sim", "cheap", "primary", d.AttemptOutcome.FAILED, "503")
    error = http_error(AllAttemptsFailed("all failed", attempts=[attempt]))
    assert error.status == 503
    (listed,) = error.body["error"]["quorum"]["attempts"]
    assert (listed["model"], listed["outcome"]) == ("flash", "failed")


def test_strategy_errors_name_where_the_strategy_came_from() -> None:
    error = StrategyInfeasible("not enabled")
    assert http_error(error).body["error"]["param"] == "model"
    origins = {"strategy": "quorum.strategy"}
    assert http_error(error, origins=origins).body["error"]["param"] == "quorum.strategy"


# --- model names and hints ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "extension", "expected"),
    [
        ("quorum:auto", {}, d.Hints()),
        ("flash", {}, d.Hints(model="flash")),
        ("quorum:cheap", {}, d.Hints(tier="cheap")),
        ("quorum:legal_review", {}, d.Hints(use_case="legal_review")),
        ("quorum:email_assistant", {}, d.Hints(agent="email_assistant")),
        (
            "quorum:auto?strategy=cascade&priority=cost",
            {},
            d.Hints(strategy=d.Strategy.CASCADE, priority=d.Priority.COST),
        ),
        (
            "quorum:auto",
            {"strategy": "consensus_majority", "consensus_size": 3, "critical": True},
            d.Hints(strategy=d.Strategy.CONSENSUS_MAJORITY, consensus_size=3, critical=True),
        ),
        (
            "quorum:auto?max_cost_usd=0.01&sensitivity=restricted&required_capabilities=tools,vision",
            {},
            d.Hints(
                max_cost_usd=0.01,
                sensitivity=d.Sensitivity.RESTRICTED,
                required_capabilities=frozenset({d.Capability.TOOLS, d.Capability.VISION}),
            ),
        ),
        (
            "quorum:auto?agent=email_assistant",
            {"task": "code"},
            d.Hints(agent="email_assistant", task="code"),
        ),
        (
            "quorum:auto?priority=quality",
            {"priority": "quality"},
            d.Hints(priority=d.Priority.QUALITY),
        ),
        # Query-string text read as the JSON values the quorum object carries.
        (
            "quorum:auto?critical=true&allow_cache=FALSE&consensus_size=3&max_cost_usd=.5",
            {"critical": True, "max_cost_usd": 0.5},
            d.Hints(critical=True, consensus_size=3, max_cost_usd=0.5),
        ),
        ("quorum:auto?max_cost_usd=1e-3", {}, d.Hints(max_cost_usd=0.001)),
    ],
)
def test_model_names_become_hints(model: str, extension: dict[str, Any], expected: d.Hints) -> None:
    assert resolve(model, extension, CATALOG, POLICY, AGENTS).hints == expected


@pytest.mark.parametrize(
    ("model", "extension", "field"),
    [
        ("quorum:auto?strategy=psychic", {}, "model"),
        ("quorum:auto?colour=blue", {}, "model"),
        ("quorum:auto?priority=cost", {"priority": "quality"}, "quorum.priority"),
        ("quorum:cheap?tier=mid", {}, "model"),
        ("quorum:auto", {"tier": "gold"}, "quorum.tier"),
        ("flash", {"tier": "premium"}, "quorum.tier"),
        ("quorum:auto", {"max_cost_usd": -1}, "quorum.max_cost_usd"),
        ("quorum:auto", {"consensus_size": 99}, "quorum.consensus_size"),
        ("quorum:auto", {"consensus_size": 1}, "quorum.consensus_size"),
        ("quorum:auto", {"consensus_size": "²"}, "quorum.consensus_size"),
        ("quorum:auto", {"agent": "no spaces"}, "quorum.agent"),
        ("quorum:auto?agent=travel_agent", {}, "model"),
        ("quorum:email_assistant?agent=other", {}, "model"),
        # A trailing newline is not part of a name.
        ("quorum:auto", {"task": "code\n"}, "quorum.task"),
        ("quorum:auto", {"agent": "email_assistant\n"}, "quorum.agent"),
        ("quorum:auto?task=code%0A", {}, "model"),
        # A number too large for a float is still just out of range.
        ("quorum:auto", {"max_cost_usd": 10**400}, "quorum.max_cost_usd"),
        ("quorum:auto", {"max_cost_usd": -(10**400)}, "quorum.max_cost_usd"),
        ("quorum:auto?max_cost_usd=1e400", {}, "model"),
        # Text Python's float() reads as a number, a query string does not.
        ("quorum:auto?max_cost_usd=1_0", {}, "model"),
        ("quorum:auto?max_cost_usd=%D9%A1", {}, "model"),  # ARABIC-INDIC DIGIT ONE
        ("quorum:auto?max_cost_usd=%201", {}, "model"),
        ("quorum:auto?max_cost_usd=infinity", {}, "model"),
        # A flag is true or false, as the docs say: not yes, no, 1 or 0.
        ("quorum:auto?critical=yes", {}, "model"),
        ("quorum:auto?critical=1", {}, "model"),
        ("quorum:auto?allow_cache=no", {}, "model"),
        ("quorum:auto?consensus_size=3.0", {}, "model"),
        ("quorum:auto?consensus_size=" + "9" * 5000, {}, "model"),
        # In the body, JSON types: a string is not a boolean, number or list.
        ("quorum:auto", {"critical": "true"}, "quorum.critical"),
        ("quorum:auto", {"allow_cache": 1}, "quorum.allow_cache"),
        ("quorum:auto", {"max_cost_usd": "0.01"}, "quorum.max_cost_usd"),
        ("quorum:auto", {"max_cost_usd": True}, "quorum.max_cost_usd"),
        ("quorum:auto", {"consensus_size": "3"}, "quorum.consensus_size"),
        ("quorum:auto", {"consensus_size": 3.0}, "quorum.consensus_size"),
        ("quorum:auto", {"required_capabilities": "tools"}, "quorum.required_capabilities"),
    ],
)
def test_bad_hints_name_their_field(model: str, extension: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve(model, extension, CATALOG, POLICY, AGENTS)
    assert caught.value.violations[0].field == field


@pytest.mark.parametrize(
    ("model", "extension", "description"),
    [
        ("quorum:auto?max_cost_usd=1_0", {}, "hint 'max_cost_usd' must be a number"),
        ("quorum:auto?critical=yes", {}, "hint 'critical' must be true or false"),
        ("quorum:auto?colour=blue", {}, "unknown hint 'colour'; known: strategy, "),
        ("quorum:auto", {"critical": "yes"}, "must be true or false"),
        ("quorum:auto", {"colour": "blue"}, "unknown hint; known: strategy, "),
    ],
)
def test_a_bad_hint_in_the_query_says_which(
    model: str, extension: dict[str, Any], description: str
) -> None:
    """In the query string the field is ``model`` itself, so the description names the
    hint; in the body the field (``quorum.critical``) already does."""
    with pytest.raises(InvalidRequest) as caught:
        resolve(model, extension, CATALOG, POLICY, AGENTS)
    assert caught.value.violations[0].description.startswith(description)


def _parse(**body: Any) -> Any:
    body.setdefault("model", "quorum:auto")
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    return parse_chat_request(
        body, catalog=CATALOG, policy=POLICY, max_messages=4, request_id="r1", agents=AGENTS
    )


def test_messages_map_to_domain() -> None:
    chat = _parse(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "name": "ann",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "look", "arguments": '{"at": "a"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"}]},
        ],
        tools=[
            {"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}
        ],
        max_tokens=50,
        stop="END",
        response_format={"type": "json_object"},
        logprobs=True,
    )
    system, user, assistant, tool = chat.route.messages
    assert (system.role, system.content) == (d.Role.SYSTEM, "Be brief.")
    assert user.name == "ann"
    assert user.parts == (
        d.ContentPart(text="Look:"),
        d.ContentPart(image=d.ImagePart(url="https://x.test/a.png")),
    )
    assert assistant.tool_calls == (d.ToolCall("c1", "look", '{"at": "a"}'),)
    assert (tool.tool_call_id, tool.text) == ("c1", "ok")
    params = chat.route.params
    assert params.tools == (d.Tool("look", "", '{"type": "object"}'),)
    assert (params.max_tokens, params.stop, params.logprobs) == (50, ("END",), True)
    assert params.response_format.type is d.ResponseFormatType.JSON_OBJECT
    assert chat.route.request_id == "r1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": [{"role": "user", "content": "x"}] * 5}, "messages"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Weather?"},
                    {"role": "tool", "tool_call_id": "c9", "content": "18C"},
                ]
            },
            "messages[1].tool_call_id",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "Weather?"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "get_tide", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "high at noon"},
                ],
                "tools": [{"type": "function", "function": {"name": "get_weather"}}],
            },
            "messages[1].tool_calls[0].name",
        ),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        (
            {"messages": [{"role": "system", "content": "x", "tool_call_id": "c"}]},
            "messages[0].tool_call_id",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/tiff;base64,AAAA"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_tokens"),
        ({"top_logprobs": 3, "logprobs": True}, "top_logprobs"),
        ({"functions": []}, "functions"),
        ({"quorum": "fast"}, "quorum"),
        ({"model": 42}, "model"),
        # Trailing newlines in names.
        (
            {"tools": [{"type": "function", "function": {"name": "abc\n"}}]},
            "tools[0].function.name",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x\n", "schema": {"type": "object"}},
                }
            },
            "response_format.json_schema.name",
        ),
        # Integers too large for a float.
        ({"temperature": 10**400}, "temperature"),
        ({"top_p": 10**400}, "top_p"),
        ({"temperature": -(10**400), "stream": True}, "temperature"),
        ({"quorum": {"max_cost_usd": 10**400}}, "quorum.max_cost_usd"),
        # Lone UTF-16 surrogates (valid JSON escapes, not text UTF-8 can carry).
        ({"messages": [{"role": "user", "content": "hi \ud800"}]}, "messages[0].content"),
        ({"model": "x\ud800"}, "model"),
        ({"model": "quorum:auto\udfff", "stream": True}, "model"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "\udc00!"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "description": "\ud800"}}]},
            "tools[0].function.description",
        ),
        ({"metadata": {"\ud800": "x"}}, "metadata"),
        ({"user": "\ud800"}, "user"),
        # OpenAI's types, strictly: a bool is not an integer, 1.0 is not one, and 0 or ""
        # is not a boolean.
        ({"n": True}, "n"),
        ({"n": 1.0}, "n"),
        ({"n": "1"}, "n"),
        ({"stream": 0}, "stream"),
        ({"stream": ""}, "stream"),
        ({"stream": "false"}, "stream"),
        ({"logprobs": 0}, "logprobs"),
        ({"logprobs": ""}, "logprobs"),
        ({"top_logprobs": False}, "top_logprobs"),
        ({"top_logprobs": 0.0}, "top_logprobs"),
        (
            {"stream": True, "stream_options": {"include_usage": True, "foo": 1}},
            "stream_options.foo",
        ),
        ({"stream": True, "stream_options": [1]}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": 1}}, "stream_options.include_usage"),
        (
            {"stream": True, "stream_options": {"include_obfuscation": "no"}},
            "stream_options.include_obfuscation",
        ),
    ],
)
def test_bad_bodies_name_their_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _parse(**body)
    assert caught.value.violations[0].field == field


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string"}
    for _ in range(depth - 1):
        value = {"type": "object", "properties": {"a": value}}
    return value


def _deep_arguments(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_tool_and_schema_json_is_bounded_as_on_grpc() -> None:
    """What the gRPC door refuses in tool schemas, arguments and response schemas, the HTTP
    door refuses too, naming its own field, rather than failing every provider later."""
    deep_tool = {"type": "function", "function": {"name": "f", "parameters": _nested(40)}}
    call = {"id": "c1", "type": "function", "function": {"name": "f"}}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"tools": [deep_tool]}, "tools[0].function.parameters", "more than 64 deep"),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            call | {"function": {"name": "f", "arguments": _deep_arguments(80)}}
                        ],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
            "more than 64 deep",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"$ref": "#"}},
                }
            },
            "response_format.json_schema.schema",
            "reference loop",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": _nested(40)},
                }
            },
            "response_format.json_schema.schema",
            "deep",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"pattern": "(?=a)"}},
                }
            },
            "response_format.json_schema.schema",
            "pattern",
        ),
    ]
    for body, field, words in cases:
        with pytest.raises(InvalidRequest) as caught:
            _parse(**body)
        (violation,) = caught.value.violations
        assert violation.field == field and words in violation.description, violation


def test_openai_types_are_accepted() -> None:
    """What OpenAI takes, Quorum takes: null for an optional field, its stream options."""
    chat = _parse(n=1, stream=None, logprobs=None, top_logprobs=0)
    assert (chat.stream, chat.route.params.logprobs) == (False, False)
    chat = _parse(
        n=None,
        stream=True,
        logprobs=True,
        stream_options={"include_usage": True, "include_obfuscation": False},
    )
    assert (chat.stream, chat.include_usage, chat.route.params.logprobs) == (True, True, True)


# Fields Quorum accepts and ignores, with values OpenAI refuses: each is a 400 naming the
# field (or the entry within it), not silently dropped.
BAD_IGNORED: list[tuple[dict[str, Any], str]] = [
    ({"seed": "x"}, "seed"),
    ({"seed": 1.0}, "seed"),
    ({"seed": True}, "seed"),
    ({"seed": 2**63}, "seed"),
    ({"seed": -(2**63) - 1}, "seed"),
    ({"store": "yes"}, "store"),
    ({"store": 0}, "store"),
    ({"parallel_tool_calls": 1}, "parallel_tool_calls"),
    ({"parallel_tool_calls": "true"}, "parallel_tool_calls"),
    ({"presence_penalty": "x"}, "presence_penalty"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"presence_penalty": True}, "presence_penalty"),
    ({"frequency_penalty": 99}, "frequency_penalty"),
    ({"frequency_penalty": -2.01}, "frequency_penalty"),
    ({"frequency_penalty": 10**400}, "frequency_penalty"),
    ({"user": 5}, "user"),
    ({"user": ["ann"]}, "user"),
    ({"metadata": [1]}, "metadata"),
    ({"metadata": "k=v"}, "metadata"),
    ({"metadata": {"k": 1}}, "metadata.k"),
    ({"metadata": {"k": None}}, "metadata.k"),
    ({"metadata": {"ok": "v", "k": "v" * 513}}, "metadata.k"),
    ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"logit_bias": "x"}, "logit_bias"),
    ({"logit_bias": [50256]}, "logit_bias"),
    ({"logit_bias": {"50256": 101}}, "logit_bias.50256"),
    ({"logit_bias": {"50256": -100.5}}, "logit_bias.50256"),
    ({"logit_bias": {"50256": "-100"}}, "logit_bias.50256"),
    ({"logit_bias": {"50256": True}}, "logit_bias.50256"),
    ({"logit_bias": {"hello": 1}}, "logit_bias.hello"),
    ({"logit_bias": {"-1": 1}}, "logit_bias.-1"),
    ({"logit_bias": {"١": 1}}, "logit_bias.١"),  # ARABIC-INDIC DIGIT ONE
    ({"service_tier": 7}, "service_tier"),
    ({"service_tier": "premium"}, "service_tier"),
    ({"service_tier": "AUTO"}, "service_tier"),
    ({"safety_identifier": 7}, "safety_identifier"),
    ({"safety_identifier": "u" * 129}, "safety_identifier"),
    ({"prompt_cache_key": ["k"]}, "prompt_cache_key"),
    ({"prompt_cache_retention": "1h"}, "prompt_cache_retention"),
    ({"prompt_cache_options": "explicit"}, "prompt_cache_options"),
    ({"moderation": {"model": "omni-moderation-latest"}}, "moderation"),
]


@pytest.mark.parametrize(("body", "field"), BAD_IGNORED, ids=[f for _, f in BAD_IGNORED])
def test_ignored_fields_are_checked_as_openai_checks_them(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _parse(**body)
    assert [v.field for v in caught.value.violations] == [field]
    error = http_error(caught.value).body["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", field)


def test_every_ignored_field_is_checked() -> None:
    """A field added to IGNORED gets a check: none takes a value of every JSON type."""
    for key in IGNORED:
        refused = 0
        for value in ("x", 1.5, 10**20, True, [1], {"k": [1]}):
            try:
                _parse(**{key: value})
            except InvalidRequest:
                refused += 1
        assert refused >= 4, key


def test_ignored_fields_take_what_openai_takes() -> None:
    """Valid values, limits included, and null for each: accepted, and still ignored."""
    valid: dict[str, Any] = {
        "seed": -(2**63),
        "store": False,
        "parallel_tool_calls": True,
        "presence_penalty": -2,
        "frequency_penalty": 2.0,
        "user": "",
        "metadata": {f"{i:064d}": "v" * 512 for i in range(16)},
        "logit_bias": {"50256": -100, "0": 100, "7": 0.5},
        "service_tier": "flex",
        "safety_identifier": "u" * 128,
        "prompt_cache_key": "tenant-a:chat",
        "prompt_cache_retention": "24h",
        "prompt_cache_options": {"mode": "explicit", "ttl": "30m"},
    }
    plain = _parse()
    assert _parse(**valid).route == plain.route
    assert _parse(**dict.fromkeys(IGNORED)).route == plain.route
    for tier in SERVICE_TIERS:
        _parse(seed=2**63 - 1, service_tier=tier, metadata={}, logit_bias={})


def test_an_error_lists_at_most_max_violations() -> None:
    """However many violations an error holds, the body lists MAX_VIOLATIONS of them (as
    the gRPC door's BadRequest does) and says how many more there were."""
    error = InvalidRequest([FieldViolation(f"f{i}", "bad") for i in range(MAX_VIOLATIONS + 7)])
    body = http_error(error).body["error"]
    listed = body["quorum"]["violations"]
    assert [v["field"] for v in listed] == [f"f{i}" for i in range(MAX_VIOLATIONS)]
    assert body["quorum"]["more_violations"] == 7
    assert "metadata" not in body["quorum"]
    few = http_error(InvalidRequest([FieldViolation("f", "bad")])).body["error"]["quorum"]
    assert "more_violations" not in few


def test_a_body_of_many_bad_keys_keeps_only_what_it_lists() -> None:
    """200,000 unknown keys: the check keeps MAX_VIOLATIONS violations, counts the rest,
    and the error is small and names the first fields (in sorted order)."""
    keys = [f"k{i:06d}" for i in range(200_000)]
    with pytest.raises(InvalidRequest) as caught:
        _parse(**dict.fromkeys(reversed(keys), 1))
    error = caught.value
    assert [v.field for v in error.violations] == keys[:MAX_VIOLATIONS]
    assert violation_count(error) == 200_000
    assert error.message.endswith("; and 199990 more")
    assert len(error.message) < 1000
    body = http_error(error).body["error"]
    assert body["param"] == "k000000"
    assert body["quorum"]["more_violations"] == 200_000 - MAX_VIOLATIONS
    assert len(json.dumps(body)) < 8000


def test_violations_are_counted_across_checks() -> None:
    """Bad fields after the kept ones are still counted: unknown keys, then the rest."""
    with pytest.raises(InvalidRequest) as caught:
        _parse(
            temperature=9,
            seed="x",
            quorum={f"h{i}": 1 for i in range(100)},
            **{f"k{i:03d}": 1 for i in range(100)},
        )
    error = caught.value
    assert len(error.violations) == MAX_VIOLATIONS
    assert error.violations[0].field == "k000"
    assert violation_count(error) == 100 + 1 + 1 + 100  # keys, seed, temperature, hints


def test_many_bad_hints_keep_only_what_an_error_lists() -> None:
    with pytest.raises(InvalidRequest) as caught:
        resolve("quorum:auto", {f"h{i}": 1 for i in range(10_000)}, CATALOG, POLICY, AGENTS)
    assert len(caught.value.violations) == MAX_VIOLATIONS
    assert caught.value.violations[0].field == "quorum.h0"
    assert violation_count(caught.value) == 10_000


def test_an_unknown_model_is_echoed_clipped() -> None:
    """A model name of megabytes is not echoed whole, in the message or the metadata."""
    name = "x" * 4_000_000
    with pytest.raises(NotFound) as caught:
        _parse(model=name)
    error = caught.value
    assert len(error.message) < 400
    assert error.metadata["model"] == "x" * (MAX_MODEL_ECHO_CHARS - 1) + "…"
    assert error.metadata["model"] in error.message
    body = http_error(error).body["error"]
    assert (body["code"], body["param"]) == ("model_not_found", "model")
    assert len(json.dumps(body)) < 1000
    # A name that fits is echoed whole.
    with pytest.raises(NotFound) as caught:
        _parse(model="quorum:no-such-route?strategy=cascade")
    assert "`quorum:no-such-route?strategy=cascade`" in caught.value.message


def test_a_lone_surrogate_is_named_before_anything_else() -> None:
    with pytest.raises(InvalidRequest) as caught:
        _parse(
            model="nope\ud800",
            temperature=9,
            messages=[{"role": "user", "content": "ok"}, {"role": "user", "content": "\ud83d"}],
        )
    violations = caught.value.violations
    assert [v.field for v in violations] == ["model", "messages[1].content"]
    assert "\\ud800" in violations[0].description  # says what is wrong, in plain ASCII
    assert "surrogate" in caught.value.message


def test_surrogate_pairs_are_text() -> None:
    # JSON's escapes for one astral character: a pair, decoded to the character itself.
    chat = _parse(messages=json.loads(r'[{"role": "user", "content": "smile \ud83d\ude00"}]'))
    assert chat.route.messages[0].content == "smile \U0001f600"


def test_surrogate_reports_are_bounded() -> None:
    with pytest.raises(InvalidRequest) as caught:
        _parse(metadata={"k": ["\ud800"] * 1000})
    assert len(caught.value.violations) == MAX_SURROGATE_REPORTS
    assert caught.value.violations[0].field == "metadata.k[0]"


def test_huge_numbers_in_range_checks_are_not_floats() -> None:
    chat = _parse(temperature=1, top_p=1, quorum={"max_cost_usd": 10**20})
    assert (chat.route.params.temperature, chat.route.params.top_p) == (1.0, 1.0)
    assert chat.route.hints.max_cost_usd == 1e20


def test_error_logging_survives_text_utf8_cannot_carry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's renderer (orjson) refuses lone surrogates; the report must still go out."""
    captured = structlog.testing.CapturingLogger()
    renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
    logger = structlog.wrap_logger(
        captured, processors=[structlog.processors.format_exc_info, renderer]
    )
    monkeypatch.setattr(frontdoor_errors, "log", logger)
    try:
        raise ValueError("bad model x\ud800")
    except ValueError as exc:
        log_internal_error(exc, "r1")
    (call,) = captured.calls
    line = json.loads(call.args[0])
    assert line["event"] == "http_internal_error" and line["request_id"] == "r1"
    assert "bad model x\\ud800" in line["exception"]
    assert loggable("x\ud800y") == "x\\ud800y" and loggable("plain") == "plain"
