"""Agents: named task domains with their own system prompt, tools and models.

A request is routed to an agent (by hint or by the classifier), then to a tier by
difficulty — hybrid routing. The agent decides which model serves each tier (the planner
gets a catalog holding only the agent's models), prepends its system prompt when the
caller sent none, and limits tools: a request may only use the tools its agent allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from quorum.server.catalog import Catalog, ModelSpec
from quorum.server.config import Config
from quorum.server.domain import Message, Role, RouteRequest
from quorum.server.errors import PermissionDenied
from quorum.server.values import value_type


@value_type
class Agent:
    name: str
    system_prompt: str
    tools: frozenset[str] | None  # None: any tool
    catalog: Catalog


def restrict_catalog(catalog: Catalog, models: Mapping[str, str]) -> Catalog:
    """A catalog with only ``models`` (tier → model name); tiers without one keep theirs."""
    chosen: dict[str, tuple[ModelSpec, ...]] = {}
    for tier in catalog.tiers:
        name = models.get(tier)
        chosen[tier] = (catalog.models[name],) if name else catalog.by_tier[tier]
    keep = {m.name: m for group in chosen.values() for m in group}
    baseline = catalog.baseline
    return replace(catalog, models=keep, by_tier=chosen, baseline=baseline)


def build_agents(config: Config, catalog: Catalog) -> dict[str, Agent]:
    return {
        name: Agent(
            name=name,
            system_prompt=a.system_prompt,
            tools=frozenset(a.tools) if a.tools is not None else None,
            catalog=restrict_catalog(catalog, a.models),
        )
        for name, a in config.agents.items()
    }


def apply_agent(agent: Agent, request: RouteRequest) -> RouteRequest:
    """Enforce the agent's tools and add its system prompt; raises PermissionDenied."""
    if agent.tools is not None:
        used = {t.name for t in request.params.tools}
        used |= {c.name for m in request.messages for c in m.tool_calls}
        denied = sorted(used - agent.tools)
        if denied:
            raise PermissionDenied(
                f"agent {agent.name} does not allow tools: {', '.join(denied)}",
                metadata={"agent": agent.name, "tools": ",".join(denied)},
            )
    if agent.system_prompt and not any(m.role is Role.SYSTEM for m in request.messages):
        request = replace(
            request, messages=(Message(Role.SYSTEM, agent.system_prompt), *request.messages)
        )
    return request
