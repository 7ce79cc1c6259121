"""Routing policy compiled from config: what the planner may do, as frozen values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field

from quorum.server.config import Config, GateConfig
from quorum.server.domain import Priority, Strategy
from quorum.server.execute.gate import DEFAULT_REFUSAL_PHRASES, GatePolicy
from quorum.server.performance import PerformancePolicy
from quorum.server.values import value_type


@value_type
class UseCase:
    """A named policy selected by ``hints.use_case``."""

    name: str
    priority: Priority | None = None
    tier: str | None = None
    strategy: Strategy | None = None


@value_type
class CascadePolicy:
    """How cascades run and when the escalation guard skips a tier."""

    auto: bool = True
    tiers: tuple[str, ...] = ()  # empty: every tier
    models_per_tier: int = 2
    escalation_threshold: float = 0.40
    window: int = 50
    min_samples: int = 20
    probe_share: float = 0.05
    gate: GatePolicy = field(default_factory=GatePolicy)


@value_type
class ConsensusPolicy:
    """How consensus runs: voters, normaliser, weights, tie-break and judge."""

    auto: bool = True
    auto_mode: Strategy = Strategy.CONSENSUS_MAJORITY
    size: int = 3
    max_size: int = 5
    models: tuple[str, ...] = ()
    normalizer: str = "auto"
    weighting: str = "static"
    accuracy_window: int = 200
    accuracy_min_samples: int = 20
    early_exit: bool = True
    tie_break: str = "most_capable"
    judge_model: str | None = None
    judge_timeout_s: float = 20.0
    synthesize: bool = False
    exclude_judge_provider: bool = False
    budget_pressure_above: float = 0.8


@value_type
class RoutingPolicy:
    default_strategy: Strategy = Strategy.AUTO
    max_failover_attempts: int = 3
    max_upstream_calls: int = 8
    ambiguous_below: float = 0.5
    use_cases: Mapping[str, UseCase] = field(default_factory=dict)
    cascade: CascadePolicy = CascadePolicy()
    consensus: ConsensusPolicy = ConsensusPolicy()
    performance: PerformancePolicy = field(default_factory=PerformancePolicy)


def build_gate(gate: GateConfig) -> GatePolicy:
    phrases = tuple(gate.refusal_phrases) if gate.refusal_phrases is not None else None
    return GatePolicy(
        min_chars=gate.min_chars,
        refusal_phrases=(phrases or DEFAULT_REFUSAL_PHRASES) + tuple(gate.extra_refusal_phrases),
        refusal_scan_chars=gate.refusal_scan_chars,
        min_mean_logprob=gate.min_mean_logprob,
        request_logprobs=gate.request_logprobs,
        max_repeated_share=gate.max_repeated_share,
    )


def build_policy(config: Config) -> RoutingPolicy:
    routing = config.routing
    cascade, consensus = routing.cascade, routing.consensus
    return RoutingPolicy(
        default_strategy=Strategy(routing.default_strategy),
        performance=PerformancePolicy(
            enabled=routing.performance.enabled,
            explore_share=routing.performance.explore_share,
            min_samples=routing.performance.min_samples,
        ),
        max_failover_attempts=routing.max_failover_attempts,
        max_upstream_calls=routing.max_upstream_calls,
        ambiguous_below=routing.ambiguous_below,
        use_cases={
            name: UseCase(
                name=name,
                priority=Priority(p.priority) if p.priority else None,
                tier=p.tier,
                strategy=Strategy(p.strategy) if p.strategy else None,
            )
            for name, p in routing.use_cases.items()
        },
        cascade=CascadePolicy(
            auto=cascade.auto,
            tiers=tuple(cascade.tiers),
            models_per_tier=cascade.models_per_tier,
            escalation_threshold=cascade.escalation_threshold,
            window=cascade.window,
            min_samples=cascade.min_samples,
            probe_share=cascade.probe_share,
            gate=build_gate(cascade.gate),
        ),
        consensus=ConsensusPolicy(
            auto=consensus.auto,
            auto_mode=Strategy.CONSENSUS_JUDGE
            if consensus.auto_mode == "judge"
            else Strategy.CONSENSUS_MAJORITY,
            size=consensus.size,
            max_size=consensus.max_size,
            models=tuple(consensus.models),
            normalizer=consensus.normalizer,
            weighting=consensus.weighting,
            accuracy_window=consensus.accuracy_window,
            accuracy_min_samples=consensus.accuracy_min_samples,
            early_exit=consensus.early_exit,
            tie_break=consensus.tie_break,
            judge_model=consensus.judge_model,
            judge_timeout_s=consensus.judge_timeout_s,
            synthesize=consensus.synthesize,
            exclude_judge_provider=consensus.exclude_judge_provider,
            budget_pressure_above=consensus.budget_pressure_above,
        ),
    )
