"""The cascade's quality gate as tables: one completion in, a verdict with its checks out."""

from __future__ import annotations

import json

import pytest

from quorum.server.config import GateConfig
from quorum.server.domain import (
    Completion,
    GateCheck,
    GenerationParams,
    Message,
    ResponseFormat,
    ResponseFormatType,
    Role,
    RouteRequest,
    ToolCall,
)
from quorum.server.execute.gate import (
    GatePolicy,
    evaluate,
    failure_summary,
    find_refusal,
    repeated_share,
    self_repeat_share,
    usable,
)
from quorum.server.policy import build_gate

POLICY = GatePolicy()
SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name", "age"],
    }
)


def _request(
    fmt: ResponseFormatType = ResponseFormatType.TEXT, schema: str = "", max_tokens: int = 0
) -> RouteRequest:
    return RouteRequest(
        "r",
        (Message(Role.USER, "question"),),
        params=GenerationParams(max_tokens=max_tokens, response_format=ResponseFormat(fmt, schema)),
    )


def _failed(verdict_checks: tuple[GateCheck, ...]) -> list[str]:
    return [c.name for c in verdict_checks if not c.passed]


@pytest.mark.parametrize(
    ("content", "extra", "failed"),
    [
        ("The answer is 42.", {}, []),
        ("", {}, ["non_empty"]),
        ("   \n ", {}, ["non_empty"]),
        ("I'm sorry, but I can't help with that request.", {}, ["refusal"]),
        ("I’m sorry, I cannot do that.", {}, ["refusal"]),  # typographic apostrophe
        ("I cannot provide a reliable answer to this question.", {}, ["refusal"]),
        ("As an AI, I don't have opinions.", {}, ["refusal"]),
        ("Je suis désolé, je ne peux pas répondre.", {}, ["refusal"]),
        ("Es tut mir leid, das kann ich nicht beantworten.", {}, ["refusal"]),
        ("Lo siento, no puedo ayudar con eso.", {}, ["refusal"]),
        ("抱歉，我无法回答这个问题。", {}, ["refusal"]),
        ("申し訳ありませんが、お答えできません。", {}, ["refusal"]),
        ("Paris is the capital.", {"finish_reason": "length"}, ["length"]),
        ("ok " * 400, {}, ["length"]),  # degenerate repetition
        ("Good answer.", {"mean_logprob": -0.1}, []),
        ("Shaky answer.", {"mean_logprob": -1.2}, ["logprob"]),
        ("I'm sorry.", {"mean_logprob": -1.6}, ["refusal", "logprob"]),
        # A refusal phrase inside another word is no refusal.
        ("Pi cannot be written as a fraction.", {}, []),
        ("The kiwi cannot fly; Hawaii can not be reached by car.", {}, []),
        ("Use it as an aide-memoire, or as an air filter.", {}, []),
        ("很抱歉，我无法回答这个问题。", {}, ["refusal"]),  # no spaces: no word boundary
        # A long phrase looping: its 4-word shingles each take only a tenth of the text.
        ("I will now compute the result step by step. " * 80, {}, ["length"]),
    ],
)
def test_text_checks(content: str, extra: dict[str, object], failed: list[str]) -> None:
    verdict = evaluate(_request(), Completion(content, **extra), POLICY)  # type: ignore[arg-type]
    assert _failed(verdict.checks) == failed
    assert verdict.passed is (not failed)


def test_refusal_deep_in_a_long_answer_is_not_a_refusal() -> None:
    text = " ".join(f"Point {i} of a thorough answer." for i in range(20))
    text += " I cannot stress this enough."
    assert evaluate(_request(), Completion(text), POLICY).passed


def test_cut_off_at_the_callers_max_tokens_passes() -> None:
    verdict = evaluate(
        _request(max_tokens=5), Completion("Paris is the", finish_reason="length"), POLICY
    )
    assert verdict.passed
    assert "max_tokens" in next(c.reason for c in verdict.checks if c.name == "length")


def test_empty_stops_the_chain() -> None:
    verdict = evaluate(_request(), Completion(""), POLICY)
    assert [c.name for c in verdict.checks] == ["non_empty"]


def test_tool_call_is_an_answer() -> None:
    call = ToolCall("c1", "lookup", "{}")
    verdict = evaluate(_request(), Completion("", tool_calls=(call,)), POLICY)
    assert verdict.passed
    assert [c.name for c in verdict.checks] == ["non_empty"]


def test_checks_not_applicable_are_left_out() -> None:
    verdict = evaluate(_request(), Completion("fine"), POLICY)
    assert [c.name for c in verdict.checks] == ["non_empty", "length", "refusal"]


@pytest.mark.parametrize(
    ("fmt", "content", "failed"),
    [
        (ResponseFormatType.JSON_OBJECT, '{"a": 1}', []),
        (ResponseFormatType.JSON_OBJECT, '```json\n{"a": 1}\n```', []),
        (ResponseFormatType.JSON_OBJECT, "{'a': 1}", ["json"]),
        (ResponseFormatType.JSON_OBJECT, "[1, 2]", ["json"]),
        (ResponseFormatType.JSON_SCHEMA, '{"name": "Ada", "age": 36}', []),
        (ResponseFormatType.JSON_SCHEMA, '{"name": "Ada"}', ["json_schema"]),
        (ResponseFormatType.JSON_SCHEMA, '{"name": "Ada", "age": -1}', ["json_schema"]),
        (ResponseFormatType.JSON_SCHEMA, "not json", ["json"]),
        (
            ResponseFormatType.JSON_SCHEMA,
            '{"answer": null, "error": "I\'m sorry"}',
            ["refusal", "json_schema"],
        ),
    ],
)
def test_json_checks(fmt: ResponseFormatType, content: str, failed: list[str]) -> None:
    schema = SCHEMA if fmt is ResponseFormatType.JSON_SCHEMA else ""
    verdict = evaluate(_request(fmt, schema), Completion(content), POLICY)
    assert _failed(verdict.checks) == failed


def test_schema_error_names_the_path() -> None:
    verdict = evaluate(
        _request(ResponseFormatType.JSON_SCHEMA, SCHEMA),
        Completion('{"name": "Ada", "age": "old"}'),
        POLICY,
    )
    check = next(c for c in verdict.checks if c.name == "json_schema")
    assert "age" in check.reason


def test_unusable_schema_is_noted_not_failed() -> None:
    verdict = evaluate(
        _request(ResponseFormatType.JSON_SCHEMA, '{"type": 12}'), Completion("{}"), POLICY
    )
    check = next(c for c in verdict.checks if c.name == "json_schema")
    assert check.passed and "not checked" in check.reason


def test_logprob_threshold_off() -> None:
    policy = GatePolicy(min_mean_logprob=None)
    assert evaluate(_request(), Completion("x", mean_logprob=-5.0), policy).passed


class _LengthyVerifier:
    name = "verifier"

    def verify(self, request: RouteRequest, completion: Completion) -> GateCheck:
        ok = len(completion.content) > 10
        return GateCheck(self.name, ok, "score 0.9" if ok else "score 0.1")


def test_pluggable_verifier_runs_last() -> None:
    verdict = evaluate(_request(), Completion("short"), POLICY, [_LengthyVerifier()])
    assert [c.name for c in verdict.checks][-1] == "verifier"
    assert not verdict.passed
    assert failure_summary(verdict) == "gate: verifier (score 0.1)"


def test_configured_phrases_replace_or_extend_the_defaults() -> None:
    only = build_gate(GateConfig(refusal_phrases=["computer says no"]))
    assert find_refusal("Computer says no.", only.refusal_phrases, 100)
    assert not find_refusal("I'm sorry", only.refusal_phrases, 100)
    extended = build_gate(GateConfig(extra_refusal_phrases=["beyond my remit"]))
    assert find_refusal("That is beyond my remit.", extended.refusal_phrases, 100)
    assert find_refusal("I'm sorry", extended.refusal_phrases, 100)


def test_usable_ignores_soft_checks() -> None:
    shaky = evaluate(_request(), Completion("The answer is 7.", mean_logprob=-3.0), POLICY)
    assert not shaky.passed and usable(shaky)
    refused = evaluate(_request(), Completion("I'm sorry, no."), POLICY)
    assert not usable(refused)


def test_self_repeat_share() -> None:
    assert self_repeat_share("short text") == 0.0
    assert self_repeat_share("one two three four five six seven eight nine ten " * 30) > 0.9
    prose = " ".join(f"word{i}" for i in range(300))
    assert self_repeat_share(prose) == 0.0


def test_repeated_share() -> None:
    assert repeated_share("short text") == 0.0
    assert repeated_share("the same words again " * 20) > 0.2
    varied = " ".join(f"word{i}" for i in range(200))
    assert repeated_share(varied) < 0.01


def test_verifiers_read_text_answers_only() -> None:
    # A tool call or a JSON answer is judged by the checks made for it, not by a
    # verifier trained on prose (it would doubt every one of them).
    class Doubting:
        name = "learned_verifier"

        def verify(self, request: RouteRequest, completion: Completion) -> GateCheck:
            return GateCheck(self.name, False, "p(right)=0.00")

    call = Completion("", (ToolCall("c1", "get_weather", "{}"),), "tool_calls")
    assert evaluate(_request(), call, POLICY, (Doubting(),)).passed
    as_json = Completion('{"name": "Ada", "age": 36}')
    verdict = evaluate(
        _request(ResponseFormatType.JSON_SCHEMA, SCHEMA), as_json, POLICY, (Doubting(),)
    )
    assert verdict.passed
    assert not evaluate(_request(), Completion("The answer is 42."), POLICY, (Doubting(),)).passed
