"""Plain-text rendering of responses for the CLI."""

from __future__ import annotations

from quorum.client import QuorumError
from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb


def _enum(wrapper: object, value: int, prefix: str) -> str:
    name: str = wrapper.Name(value)  # type: ignore[attr-defined]
    return name.removeprefix(prefix).lower()


def _plan_lines(plan: pb.ExecutionPlan) -> list[str]:
    lines = [
        f"strategy {_enum(pb.Strategy, plan.strategy, 'STRATEGY_')}, "
        f"est. cost ${plan.estimated_cost_min_usd:.6f}–${plan.estimated_cost_max_usd:.6f}, "
        f"at most {plan.max_upstream_calls} upstream calls"
    ]
    for stage in plan.stages:
        lines.append(f"  {stage.role}: {stage.note}")
        for c in stage.candidates:
            state = _enum(pb.BreakerState, c.breaker_state, "BREAKER_STATE_")
            note = f" — {c.note}" if c.note else ""
            lines.append(
                f"    {c.model} ({c.provider}, tier {c.tier})"
                f"{' [simulated]' if c.simulated else ''} "
                f"est. ${c.estimated_cost_usd:.6f}, breaker {state}{note}"
            )
    lines.append("  why:")
    lines.extend(f"    [{r.code}] {r.message}" for r in plan.reasons)
    return lines


def _classification(c: pb.Classification) -> str:
    difficulty = _enum(pb.Difficulty, c.difficulty, "DIFFICULTY_")
    agent = f", agent {c.agent}" if c.agent else ""
    return (
        f"{c.task}, {difficulty} difficulty, confidence {c.confidence:.2f} ({c.classifier}{agent})"
    )


def route_response(r: pb.RouteResponse) -> str:
    saving = r.baseline_cost_usd - r.cost_usd
    lines = [
        r.content if r.content else "(no text; tool calls below)",
        "",
        f"model      {r.model} ({r.provider}){' [simulated]' if r.simulated else ''}",
        f"class      {_classification(r.classification)}",
        f"cost       ${r.cost_usd:.6f} (baseline {r.baseline_model} ${r.baseline_cost_usd:.6f}, "
        f"saved ${saving:.6f})",
        f"tokens     {r.usage.input_tokens} in / {r.usage.output_tokens} out",
        f"timings    classify {r.timings.classify_ms:.2f} ms, plan {r.timings.plan_ms:.2f} ms, "
        f"execute {r.timings.execute_ms:.1f} ms, total {r.timings.total_ms:.1f} ms",
        "plan       " + "\n           ".join(_plan_lines(r.plan)),
        "attempts",
    ]
    for a in r.attempts:
        outcome = _enum(pb.AttemptOutcome, a.outcome, "ATTEMPT_OUTCOME_")
        lines.append(
            f"  {a.role:<9} {a.model:<16} {outcome:<9} {a.latency_ms:8.1f} ms "
            f"${a.cost_usd:.6f}  {a.reason}"
        )
    for t in r.tool_calls:
        lines.append(f"tool call  {t.name}({t.arguments_json}) id={t.id}")
    return "\n".join(lines)


def plan_response(p: svc.PlanResponse) -> str:
    lines = [f"class      {_classification(p.classification)}"]
    lines.append("plan       " + "\n           ".join(_plan_lines(p.plan)))
    lines.append(f"baseline   {p.baseline_model}, est. ${p.baseline_estimated_cost_usd:.6f}")
    lines.append("providers")
    for s in p.providers:
        state = _enum(pb.BreakerState, s.breaker_state, "BREAKER_STATE_")
        cool = f", cooling {s.cooldown_remaining_s:.1f}s" if s.cooldown_remaining_s else ""
        lines.append(f"  {s.provider}: {state}, {s.failure_count} failures{cool}")
    return "\n".join(lines)


def models(r: svc.ListModelsResponse) -> str:
    lines = [
        f"{'model':<18} {'tier':<9} {'provider':<10} {'$/Mtok in':>9} {'$/Mtok out':>10}  "
        "capabilities"
    ]
    for m in r.models:
        caps = ",".join(_enum(pb.Capability, c, "CAPABILITY_") for c in m.capabilities)
        sim = " [simulated]" if m.simulated else ""
        lines.append(
            f"{m.name:<18} {m.tier:<9} {m.provider:<10} {m.input_usd_per_mtok:>9.2f} "
            f"{m.output_usd_per_mtok:>10.2f}  {caps}{sim}"
        )
    return "\n".join(lines)


def error(e: QuorumError) -> str:
    what = f"{e.code.name} {e.reason}" if e.reason else e.code.name
    lines = [f"error: {what}: {e.message}"]
    lines.extend(f"  {v.field}: {v.description}" for v in e.field_violations)
    if e.retry_after_s is not None:
        lines.append(f"  retry after {e.retry_after_s:.1f}s")
    for a in e.attempts:
        lines.append(f"  attempt {a.model}: {a.reason}")
    return "\n".join(lines)
