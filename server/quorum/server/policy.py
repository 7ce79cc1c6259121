"""Routing policy compiled from config: what the planner may do, as frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from quorum.server.config import Config
from quorum.server.domain import Priority, Strategy


@dataclass(frozen=True, slots=True)
class UseCase:
    """A named policy selected by ``hints.use_case``."""

    name: str
    priority: Priority | None = None
    tier: str | None = None
    strategy: Strategy | None = None


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    default_strategy: Strategy = Strategy.AUTO
    max_failover_attempts: int = 3
    max_upstream_calls: int = 8
    ambiguous_below: float = 0.5
    use_cases: Mapping[str, UseCase] = field(default_factory=dict)


def build_policy(config: Config) -> RoutingPolicy:
    routing = config.routing
    return RoutingPolicy(
        default_strategy=Strategy(routing.default_strategy),
        max_failover_attempts=routing.max_failover_attempts,
        max_upstream_calls=routing.max_upstream_calls,
        use_cases={
            name: UseCase(
                name=name,
                priority=Priority(p.priority) if p.priority else None,
                tier=p.tier,
                strategy=Strategy(p.strategy) if p.strategy else None,
            )
            for name, p in routing.use_cases.items()
        },
    )
