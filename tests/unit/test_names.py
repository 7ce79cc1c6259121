"""The identifier shapes match whole strings: ``$`` would let a trailing newline through."""

from __future__ import annotations

import re

import pytest

from quorum.server.names import NAME, REQUEST_ID, TOOL_NAME


@pytest.mark.parametrize(
    ("pattern", "good"),
    [(REQUEST_ID, "req-7/a.b:c_d"), (NAME, "acme.eu:prod/1"), (TOOL_NAME, "get_weather-2")],
    ids=["request_id", "name", "tool_name"],
)
def test_whole_string_only(pattern: re.Pattern[str], good: str) -> None:
    assert pattern.match(good) and pattern.fullmatch(good)
    for bad in (good + "\n", good + "\n\n", "\n" + good, good + " ", good + "\r\n", ""):
        assert not pattern.match(bad), repr(bad)
        assert not pattern.fullmatch(bad), repr(bad)


def test_lengths_are_bounded() -> None:
    assert REQUEST_ID.match("a" * 128) and not REQUEST_ID.match("a" * 129)
    assert NAME.match("a" * 64) and not NAME.match("a" * 65)
    assert TOOL_NAME.match("a" * 64) and not TOOL_NAME.match("a" * 65)
