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
from quorum.server.execute.normalize import NORMALIZERS, canonical_json, normalize, resolve


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
        # An explicit statement of the answer wins over an equation met on the way.
        ("numeric", "The answer is 42. (Note: 2 + 2 = 4)", "42"),
        ("numeric", "The answer is 18. Janet sells 16 - 3 - 4 = 9 eggs", "18"),
        ("numeric", "Final answer: 40. Check: 4 * 10 = 40, and 2 + 2 = 4", "40"),
        ("numeric", "answer: 7, since 3 + 4 equals 7 and 1 = 1", "7"),
        ("numeric", "The result is 12; 3 * 4 = 12 and 5 = 5", "12"),
        ("numeric", "The answer is: 9. Note 1 = 1", "9"),
        ("numeric", "The answer is **15**. 5 + 5 = 10", "15"),
        ("numeric", "The answer is 5. Wait, the answer is 6. (2 = 2)", "6"),  # the last
        ("numeric", "The answer is 42. (Note: 2 + 2 = 4)\n#### 41", "41"),  # #### first
        ("numeric", "Step 1: 2+2=4. Step 2: 4*10=40", "40"),  # no statement: last equation
        ("numeric", "I think 42 but 41 = 41", "41"),
        # Scientific notation is a number, read whole.
        ("numeric", "The answer is 1e3", "1000"),
        ("numeric", "The answer is 2.5E-4", "0.00025"),
        ("numeric", "The answer is -1.2e+3.", "-1200"),
        ("numeric", "#### 6.02e23", "602000000000000000000000"),
        ("numeric", "Answer 12e4ab: here is a response", "4"),  # no exponent: as before
        ("numeric", "The answer is -0.0", "0"),
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
        # Numbers equal in value are one number, wherever they are.
        ("json", '{"a": 1.0}', '{"a":1}'),
        ("json", '{"a": [1.0, 2.5, {"b": 3e0}], "c": -0.0}', '{"a":[1,2.5,{"b":3}],"c":0}'),
        ("json", "[1E+2, 1.50, 0.10]", "[100,1.5,0.1]"),
        (
            "json",
            '{"t": true, "f": false, "n": null, "one": 1}',
            '{"f":false,"n":null,"one":1,"t":true}',
        ),
        ("json", '{"big": 12345678901234567891.0}', '{"big":12345678901234567891}'),
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


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("The answer is 1000.", "The answer is 1e3"),
        ("#### 1,000", "Final answer: 1.0e3"),
        ("The answer is 0.00025", "answer: 2.5e-4"),
    ],
)
def test_numbers_equal_in_value_normalise_alike(left: str, right: str) -> None:
    assert normalize("numeric", left) == normalize("numeric", right) != ""


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ('{"a": 1.0}', '{"a": 1}'),
        ('{"a": [1.0, {"b": 2.000}]}', '{"a": [1, {"b": 2}]}'),
        ('{"a": 1e2}', '{"a": 100}'),
        ('{"a": 1e30}', '{"a": 1' + "0" * 30 + "}"),
    ],
)
def test_json_numbers_equal_in_value_normalise_alike(left: str, right: str) -> None:
    assert normalize("json", left) == normalize("json", right) != ""


def test_json_booleans_are_not_numbers() -> None:
    assert normalize("json", '{"a": true}') != normalize("json", '{"a": 1.0}')
    assert normalize("json", "[false]") != normalize("json", "[0.0]")


def test_huge_exponents_stay_cheap_and_exact() -> None:
    # Written out these would be gigabytes; they stay one string per value.
    assert normalize("numeric", "#### 1e999999999") == "1E+999999999"
    assert normalize("numeric", "#### 10e999999998") == "1E+999999999"
    assert normalize("numeric", "#### 1e-999999999") == "1E-999999999"
    assert normalize("numeric", "#### " + "9" * 5000) == "9" * 5000  # no int() digit limit
    assert normalize("json", '{"a": 1e999999999}') == '{"a":Infinity}'


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


def test_huge_json_exponents_do_not_grow_an_answer() -> None:
    # Each "1e999" written out exactly would be a thousand digits: a voter's 16 KB answer
    # became megabytes of canonical text and a tenth of a second on the event loop.
    for big in ("1e999", "1e308", "1e41"):
        answer = "[" + ", ".join([big] * 3000) + "]"
        assert len(canonical_json(answer)) < 2 * len(answer), big
    # Past the exact range an integer and the same value with an exponent still agree.
    assert canonical_json('{"a": 1e41}') == canonical_json('{"a": 1' + "0" * 41 + "}")
