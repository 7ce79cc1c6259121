"""``RouteRequest.request_id`` is the caller's id for correlation, not an idempotency key: a
repeat is executed and billed again, and the documentation says so."""

from __future__ import annotations

import re
from pathlib import Path

from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import parse_config
from tests.conftest import running_server, sim_config

ROOT = Path(__file__).resolve().parents[2]


async def test_a_repeated_request_id_is_served_and_billed_again() -> None:
    request = pb.RouteRequest(
        request_id="order-42", messages=[pb.Message(role=pb.ROLE_USER, content="hi")]
    )
    async with running_server(parse_config(sim_config())) as (_, client):
        first, second = await client.route(request), await client.route(request)
    for response in (first, second):
        assert response.request_id == "order-42"
        assert len(response.attempts) == 1 and response.cost_usd > 0
    assert not second.cached


def test_the_documentation_does_not_promise_idempotency() -> None:
    # The README and operations guide said nothing, while the API reference (from the
    # proto) called it an "idempotency and correlation id".
    for name in ("README.md", "docs/operations.md"):
        text = " ".join((ROOT / name).read_text().split())
        assert "idempotency id" not in text and "idempotency and correlation" not in text
        assert re.search(r"request_id`.{0,300}not an idempotency key", text), name
        assert "executed and" in text, name
