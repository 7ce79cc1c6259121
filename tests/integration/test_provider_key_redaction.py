"""A provider key that the vendor repeats in its error reaches no status, failure detail
or log line: the whole path of tests/contract/test_key_redaction.py, through a server."""

from __future__ import annotations

import pytest

from quorum.client import QuorumError
from quorum.server.config import parse_config
from tests.conftest import running_server
from tests.fakes import anthropic_server, gemini_server, openai_server

KEY = "sk-proj-Zq8xW3vN7pR2tY6uK1mB4cL9dF0gH5jT"
SERVE = {"openai": openai_server.serve, "anthropic": anthropic_server.serve}
SERVE["gemini"] = gemini_server.serve


@pytest.mark.parametrize("kind", sorted(SERVE))
@pytest.mark.parametrize("stream", [False, True])
async def test_a_key_the_vendor_repeats_is_redacted_everywhere(
    kind: str, stream: bool, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEAKY_KEY", KEY)
    async with SERVE[kind]() as fake:
        config = parse_config(
            {
                "providers": {
                    "up": {"kind": kind, "base_url": fake.base_url, "api_key_env": "LEAKY_KEY"}
                },
                "tiers": ["cheap"],
                "models": {
                    "m": {
                        "provider": "up",
                        "model_id": "leak-key-mid-stream" if stream else "leak-key",
                        "tier": "cheap",
                        "input_usd_per_mtok": 1,
                        "output_usd_per_mtok": 2,
                    }
                },
                "routing": {
                    "baseline_model": "m",
                    "difficulty_tiers": {"low": "cheap", "medium": "cheap", "high": "cheap"},
                },
            }
        )
        async with running_server(config) as (_, client):
            if stream:  # the failure comes in the stream, as its last event
                events = [event async for event in client.route_stream("hello there")]
                assert events[-1].HasField("error")
                seen = "\n".join(map(str, events))
            else:
                with pytest.raises(QuorumError) as info:
                    await client.route("hello there")
                error = info.value
                seen = f"{error} {error.metadata} {[a.reason for a in error.attempts]}"
    assert "[redacted]" in seen, seen
    out, err = capfd.readouterr()
    for text in (seen, out, err):
        for shown in (KEY, KEY[:12], KEY[-8:], "*" * 4 + KEY[-4:]):
            assert shown not in text, (shown, text[-2000:])
