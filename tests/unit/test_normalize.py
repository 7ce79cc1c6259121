"""Answer normalisers as tables: raw answer text in, canonical vote out."""

from __future__ import annotations

import typing

import pytest

from quorum.server.config import NormalizerName
from quorum.server.domain import (
    GenerationParams,
    Message,
    ResponseFormat,
    ResponseFormatType,
    Role,
    RouteRequest,
)
from quorum.server.execute.normalize import NORMALIZERS, normalize, resolve


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("exact", "  Paris \n", "Paris"),
        ("exact", "paris", "paris"),
        ("text", "  The  Capital is\nPARIS. ", "the capital is paris"),
        ("text", "Paris!", "paris"),
        ("numeric", "Step 1: 20 + 22.\n#### 42", "42"),
        ("numeric", "#### 1,234", "1234"),
        ("numeric", "So the answer is 391.", "391"),
        ("numeric", "The answer is: $1,250.50", "1250.5"),
        ("numeric", "Answer: -7", "-7"),
        ("numeric", "x = 3.0", "3"),
        ("numeric", "There were 3 apples and then 5 more, so 8", "8"),
        ("numeric", "I don't know", ""),
        ("numeric", "The answer is 391. (17 * 23 = 391)", "391"),
        ("choice", "The answer is (C).", "C"),
        ("choice", "Answer: b", "B"),
        ("choice", "B. Because the sky is blue", "B"),
        ("choice", "**D**", "D"),
        ("choice", "I think it is (A) because", "A"),
        ("choice", "a", "A"),
        ("choice", "None of them", ""),
        ("json", '{"b": 1, "a": [1, 2]}', '{"a":[1,2],"b":1}'),
        ("json", '```json\n{"a": 1}\n```', '{"a":1}'),
        ("json", "{'a': 1}", ""),
        ("labels", "spam, Urgent", "spam,urgent"),
        ("labels", "urgent and spam; spam", "spam,urgent"),
        ("labels", '["B", "a"]', "a,b"),
        ("labels", "- billing\n- refund\n", "billing,refund"),
    ],
)
def test_normalizer(name: str, text: str, expected: str) -> None:
    assert normalize(name, text) == expected


def test_equal_answers_in_different_words_normalise_alike() -> None:
    assert normalize("numeric", "#### 42") == normalize("numeric", "The answer is 42.")
    assert normalize("choice", "(b)") == normalize("choice", "The answer is B")
    assert normalize("json", '{"x":1,"y":2}') == normalize("json", '{ "y": 2, "x": 1 }')


def _request(fmt: ResponseFormatType = ResponseFormatType.TEXT) -> RouteRequest:
    return RouteRequest(
        "r",
        (Message(Role.USER, "q"),),
        params=GenerationParams(response_format=ResponseFormat(fmt)),
    )


@pytest.mark.parametrize(
    ("configured", "fmt", "task", "expected"),
    [
        ("auto", ResponseFormatType.TEXT, "math", "numeric"),
        ("auto", ResponseFormatType.TEXT, "classification", "labels"),
        ("auto", ResponseFormatType.TEXT, "chat", "text"),
        ("auto", ResponseFormatType.JSON_OBJECT, "math", "json"),
        ("choice", ResponseFormatType.TEXT, "math", "choice"),
    ],
)
def test_auto_picks_by_request(
    configured: str, fmt: ResponseFormatType, task: str, expected: str
) -> None:
    assert resolve(configured, _request(fmt), task) == expected


def test_config_names_match_the_normalisers() -> None:
    assert set(typing.get_args(NormalizerName)) == {"auto", *NORMALIZERS}
