"""Agents and semantic routes through a real server: hybrid routing end to end."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from quorum.client import AsyncQuorumClient, QuorumError
from quorum.route.v1 import types_pb2 as pb
from quorum.server.agents import apply_agent, build_agents
from quorum.server.catalog import build_catalog
from quorum.server.config import parse_config
from quorum.server.domain import GenerationParams, Message, Role, RouteRequest, Tool
from quorum.server.errors import PermissionDenied
from tests.conftest import running_server, sim_config
from tests.integration.test_tenants import digest, serving


def agents_config() -> dict[str, Any]:
    return sim_config(
        agents={
            "email_assistant": {
                "examples": [
                    "Draft a reply to this email",
                    "Write an email to my manager",
                    "Summarise my unread emails",
                    "Reply to Sarah about the invoice",
                ],
                "system_prompt": "You write clear, friendly emails.",
                "tools": ["send_email", "search_inbox"],
                "models": {"cheap": "flash-b", "mid": "mid", "premium": "frontier"},
            },
            "calendar_assistant": {
                "examples": [
                    "Schedule a meeting with Bob on Tuesday",
                    "What is on my calendar",
                    "Move my 3pm meeting to Friday",
                    "Book a room for the standup",
                ],
                "tools": ["create_event"],
                "models": {"cheap": "flash"},
            },
        },
        classifier={
            "embedding": {
                "tasks": {
                    "legal": [
                        "Review this contract clause for liability",
                        "Is this NDA enforceable?",
                    ],
                }
            }
        },
    )


async def test_requests_are_routed_to_agents_then_tiers() -> None:
    async with running_server(parse_config(agents_config())) as (_, client):
        email = await client.route("Please write an email reply to Sarah about the invoice")
        meeting = await client.route("Schedule a meeting with Alice next Tuesday at 10")
        other = await client.route("What is 17 * 23?")
    assert email.classification.agent == "email_assistant"
    assert email.model in ("flash-b", "mid", "frontier")
    assert email.model != "flash"  # the agent's cheap tier is flash-b
    assert meeting.classification.agent == "calendar_assistant"
    assert other.classification.agent == ""


async def test_agent_hint_and_tool_enforcement() -> None:
    async with running_server(parse_config(agents_config())) as (_, client):
        params = pb.GenerationParams(tools=[pb.Tool(name="create_event")])
        hints = pb.RoutingHints(agent="email_assistant")
        with pytest.raises(QuorumError) as info:
            await client.route("hello", hints=hints, params=params)
        assert info.value.code is grpc.StatusCode.PERMISSION_DENIED
        assert "create_event" in info.value.message
        ok = await client.route(
            "hello", hints=hints, params=pb.GenerationParams(tools=[pb.Tool(name="send_email")])
        )
        assert ok.classification.agent == "email_assistant"
        with pytest.raises(QuorumError) as bad:
            await client.route("hello", hints=pb.RoutingHints(agent="travel_agent"))
        assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.field_violations[0].field == "hints.agent"


async def test_unknown_semantic_route_is_ambiguous_and_moves_up() -> None:
    async with running_server(parse_config(agents_config())) as (_, client):
        plan = await client.plan("ok")
    # Neither rules nor routes are sure about "ok": the planner picks a more capable tier.
    assert any(r.code == "AMBIGUOUS_UP" for r in plan.plan.reasons)


def test_agent_adds_system_prompt_and_checks_tools() -> None:
    config = parse_config(agents_config())
    agents = build_agents(config, build_catalog(config))
    email = agents["email_assistant"]
    request = RouteRequest("r", (Message(Role.USER, "hi"),))
    prepared = apply_agent(email, request)
    assert prepared.messages[0] == Message(Role.SYSTEM, "You write clear, friendly emails.")
    assert [m.name for m in email.catalog.ordered()] == ["flash-b", "mid", "frontier"]
    with pytest.raises(PermissionDenied):
        apply_agent(
            email,
            RouteRequest(
                "r", (Message(Role.USER, "hi"),), params=GenerationParams(tools=(Tool("rm_rf"),))
            ),
        )


def test_agent_config_errors_name_the_path() -> None:
    from quorum.server.errors import ConfigError

    data = agents_config()
    data["agents"]["email_assistant"]["models"]["cheap"] = "frontier"
    data["classifier"]["llm"] = {"model": "gpt-9"}
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    problems = info.value.problems
    assert 'agents.email_assistant.models.cheap: model "frontier" is in tier "premium"' in problems
    assert any(p.startswith('classifier.llm.model: unknown model "gpt-9"') for p in problems)


@pytest.mark.parametrize("blank", ["   ", "\u200b", "..."])
def test_an_example_without_a_word_is_refused(blank: str) -> None:
    """Blank or invisible text embeds close to every short prompt and would capture it."""
    from quorum.server.errors import ConfigError

    data = agents_config()
    data["agents"]["email_assistant"]["examples"].append(blank)
    data["classifier"]["embedding"]["tasks"]["legal"].insert(0, blank)
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert set(info.value.problems) == {
        "agents.email_assistant.examples[4]: an example needs at least one letter or digit",
        "classifier.embedding.tasks.legal[0]: an example needs at least one letter or digit",
    }


async def test_a_tenant_is_never_routed_to_an_agent_it_may_not_use() -> None:
    # The classifier may pick any agent; a tenant limited to none gets none (its prompt
    # and tools never meet that agent's), and the agent's name is not shown.
    data = agents_config()
    data["tenants"] = {
        "locked": {"token_sha256": digest("tok-locked"), "agents": []},
        "open": {"token_sha256": digest("tok-open")},
    }
    ask = "Please write an email reply to Sarah about the invoice"
    async with serving(data) as running:
        for token, expected in (("tok-locked", ""), ("tok-open", "email_assistant")):
            metadata = [("authorization", f"Bearer {token}")]
            async with AsyncQuorumClient(
                f"127.0.0.1:{running.port}", timeout=10, metadata=metadata
            ) as client:
                answer = await client.route(ask)
            assert answer.classification.agent == expected
            signals = answer.classification.signals
            if not expected:
                assert "agent:not_allowed_for_tenant" in signals
                assert not any("email_assistant" in signal for signal in signals)


async def test_a_pinned_model_outside_the_agents_models() -> None:
    """The classifier's agent gives way to the caller's model; an agent the caller named
    itself and a model it does not use are refused, naming ``hints.model``."""
    prompt = "Please write an email reply to Sarah about the invoice"
    async with running_server(parse_config(agents_config())) as (_, client):
        routed = await client.route(prompt, hints=pb.RoutingHints(model="flash"))
        planned = await client.plan(prompt, hints=pb.RoutingHints(model="flash"))
        with pytest.raises(QuorumError) as info:
            await client.route(
                prompt, hints=pb.RoutingHints(model="flash", agent="email_assistant")
            )
        with pytest.raises(QuorumError) as planning:
            await client.plan(prompt, hints=pb.RoutingHints(model="flash", agent="email_assistant"))
    assert routed.classification.agent == "email_assistant"
    assert routed.model == "flash"  # the email agent's cheap tier is flash-b
    assert planned.plan.stages[0].candidates[0].model == "flash"
    for refused in (info.value, planning.value):
        assert refused.code is grpc.StatusCode.FAILED_PRECONDITION
        assert refused.message.startswith("hints.model: flash is not among the models of agent")
