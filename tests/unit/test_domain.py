"""Domain value helpers that stand in for dataclasses.replace on the request path."""

from __future__ import annotations

import dataclasses

from quorum.server import domain as d


def test_with_hints_copies_every_other_field_as_replace_would() -> None:
    request = d.RouteRequest(
        request_id="r-1",
        messages=(d.Message(d.Role.USER, "hello"),),
        params=d.GenerationParams(max_tokens=7),
        hints=d.Hints(task="chat"),
        tenant="acme",
    )
    hints = d.Hints(task="code", priority=d.Priority.QUALITY)
    # A new field on RouteRequest must be carried over by with_hints too.
    assert [f.name for f in dataclasses.fields(d.RouteRequest)] == [
        "request_id",
        "messages",
        "params",
        "hints",
        "tenant",
    ]
    assert request.with_hints(hints) == dataclasses.replace(request, hints=hints)
    assert request.with_hints(hints, tenant="other") == dataclasses.replace(
        request, hints=hints, tenant="other"
    )


def test_needed_capabilities_adds_what_the_content_implies() -> None:
    plain = d.RouteRequest("r", (d.Message(d.Role.USER, "hi"),))
    assert plain.needed_capabilities() == frozenset()
    asked = d.RouteRequest(
        "r",
        (d.Message(d.Role.USER, "hi"),),
        params=d.GenerationParams(
            response_format=d.ResponseFormat(d.ResponseFormatType.JSON_SCHEMA, "{}"),
            logprobs=True,
        ),
        hints=d.Hints(required_capabilities=frozenset({d.Capability.VISION})),
    )
    assert asked.needed_capabilities() == {
        d.Capability.VISION,
        d.Capability.JSON_SCHEMA,
        d.Capability.LOGPROBS,
    }
