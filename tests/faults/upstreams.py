"""Configs whose providers are the fake vendor servers, and helpers to read the outcome.

A model's ``model_id`` is the fake's behaviour (``ok``, ``error-503``, ``drip-20``,
``drop-mid-stream``, ...; see :mod:`tests.fakes.common`). Models of one tier are
ordered by price, so the list order below is the failover order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import Config, parse_config

NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def provider(base_url: str, kind: str = "openai", **fields: Any) -> dict[str, Any]:
    """A provider pointing at a fake server, with a key the fake accepts."""
    headers = {
        "openai": {"Authorization": "Bearer test"},
        "gemini": {"x-goog-api-key": "test"},
    }.get(kind, {"x-api-key": "test"})
    return {
        "kind": kind,
        "base_url": base_url,
        "headers": headers,
        "timeout_s": 5,
        "connect_timeout_s": 1,
        **fields,
    }


def config(
    providers: dict[str, dict[str, Any]],
    models: Sequence[tuple[str, str, str]] | dict[str, dict[str, Any]],
    *,
    capabilities: Sequence[str] = ("streaming", "tools"),
    **sections: Any,
) -> Config:
    """A config from providers and models.

    ``models`` as ``(name, provider, model_id)`` triples, all in tier ``cheap`` and in
    failover order; or as full model dicts (``tier`` defaults to cheap).
    """
    entries: dict[str, dict[str, Any]] = {}
    if isinstance(models, dict):
        for i, (name, fields) in enumerate(models.items()):
            entries[name] = _model(i, capabilities) | fields
    else:
        for i, (name, provider_name, model_id) in enumerate(models):
            entries[name] = _model(i, capabilities) | {
                "provider": provider_name,
                "model_id": model_id,
            }
    data: dict[str, Any] = {
        "server": {"log_level": "warning"},
        "providers": providers,
        "tiers": ["cheap"],
        "models": entries,
        "routing": {"default_strategy": "single", "max_failover_attempts": 3},
        "decisions": {"sink": "none"},
    }
    for key, value in sections.items():
        data[key] = value if not isinstance(data.get(key), dict) else data[key] | value
    return parse_config(data)


def _model(index: int, capabilities: Sequence[str]) -> dict[str, Any]:
    return {
        "tier": "cheap",
        "input_usd_per_mtok": 0.1 * (index + 1),
        "output_usd_per_mtok": 0.4 * (index + 1),
        "capabilities": list(capabilities),
    }


def hints(model: str = "", **fields: Any) -> pb.RoutingHints:
    return pb.RoutingHints(model=model, **fields)


async def route_or_error(
    client: AsyncQuorumClient, prompt: str | Sequence[pb.Message] = "Hello there", **kwargs: Any
) -> pb.RouteResponse | QuorumError:
    """The answer, or the error; never lets INTERNAL/UNKNOWN pass."""
    try:
        return await client.route(prompt, **kwargs)
    except QuorumError as exc:
        error = exc
    assert error.code not in NEVER, error
    return error


async def collect(
    client: AsyncQuorumClient, prompt: str = "Hello there", **kwargs: Any
) -> list[svc.RouteStreamResponse]:
    """Every event of a RouteStream."""
    return [event async for event in client.route_stream(prompt, **kwargs)]


def kinds(events: Sequence[svc.RouteStreamResponse]) -> list[str]:
    return [str(e.WhichOneof("event")) for e in events]


def text_of(events: Sequence[svc.RouteStreamResponse]) -> str:
    """The answer as a client rebuilds it: chunks, restarted at each fallback."""
    text = ""
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "fallback":
            assert event.fallback.discarded_prefix_chars == len(text)
            text = ""
        elif kind == "chunk":
            text += event.chunk.text
    return text


def outcomes(attempts: Sequence[pb.Attempt]) -> list[tuple[str, str]]:
    """``(model, OUTCOME)`` per attempt."""
    return [
        (a.model, pb.AttemptOutcome.Name(a.outcome).removeprefix("ATTEMPT_OUTCOME_"))
        for a in attempts
    ]


async def first_events(
    stream: AsyncIterator[svc.RouteStreamResponse], n: int
) -> list[svc.RouteStreamResponse]:
    events = []
    async for event in stream:
        events.append(event)
        if len(events) >= n:
            break
    return events
