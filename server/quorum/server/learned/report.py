"""Human-readable evaluation report: per source a compact curve and the headline figures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from quorum.server.learned.evaluation import SourceReport


def _pm(figures: Mapping[str, Any], key: str, pct: bool = False) -> str:
    value = figures.get(key)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    se = figures.get(f"{key}_se")
    scale = 100.0 if pct else 1.0
    unit = "%" if pct else ""
    text = f"{value * scale:.3f}{unit}" if not pct else f"{value * scale:.1f}{unit}"
    if isinstance(se, float) and math.isfinite(se):
        text += f" ± {se * scale:.3f}" if not pct else f" ± {se * scale:.1f}"
    return text


def _undefined(value: Any) -> bool:
    """None or a non-finite number: e.g. a cost fraction of a premium model that costs nothing."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _num(value: Any, spec: str, width: int = 0) -> str:
    """``value`` formatted with ``spec`` (right-aligned to ``width``), or ``n/a``."""
    return f"{'n/a':>{width}}" if _undefined(value) else f"{value:>{width}{spec}}"


def _threshold(value: float) -> str:
    """A calibrated threshold; +inf: no prompt reaches it (the cheap model meets the target)."""
    return "none (never routes to the strong model)" if math.isinf(value) else f"{value:.4f}"


def _pct(value: Any) -> str:
    """A fraction as a percentage, or ``n/a``."""
    return "n/a" if _undefined(value) else f"{value * 100:.1f}%"


def format_pair(rep: SourceReport) -> list[str]:
    """Lines for a two-model source."""
    f = rep.figures
    lines = [
        f"[{rep.source}] n={f['n']}  weak={rep.models[0]} ({f['weak_quality']:.3f})  "
        f"strong={rep.models[1]} ({f['strong_quality']:.3f})",
        "  strong share  quality  cost/strong",
    ]
    lines += [
        f"  {row['strong_share']:>12.2f}  {row['quality']:>7.3f}  "
        f"{_num(row['cost_fraction'], '.3f', 11)}"
        for row in rep.curve_table
    ]
    lines.append(
        f"  strong share at 95% of strong quality: {_pm(f, 'strong_share_at_95')}  "
        f"(random {_num(f['random_strong_share_at_95'], '.3f')}, "
        f"oracle {_num(f['oracle_strong_share_at_95'], '.3f')})"
    )
    lines.append(f"  cost saved at 95%: {_pm(f, 'cost_saved_at_95', pct=True)}")
    lines.append(
        f"  strong share at 80% / 50% of the gap: {_pm(f, 'strong_share_at_80')} / "
        f"{_pm(f, 'strong_share_at_50')}"
    )
    lines.append(f"  APGR: {_pm(f, 'apgr')}  (random 0.500)")
    cal = f.get("calibrated")
    if cal:
        lines.append(
            f"  calibrated threshold {_threshold(cal['threshold'])}: "
            f"strong share {cal['strong_share']:.3f}, "
            f"quality {_pct(cal['quality_fraction_of_strong'])} of strong, "
            f"cost {_pct(cal['cost_fraction'])} of strong"
        )
    if "cascade_strong_share_at_95" in f:
        lines.append(
            f"  cascade (verifier reads the cheap answer): escalation share at 95% "
            f"{_pm(f, 'cascade_strong_share_at_95')}, at 50% of the gap "
            f"{_pm(f, 'cascade_strong_share_at_50')}, cost saved at 95% "
            f"{_pm(f, 'cascade_cost_saved_at_95', pct=True)}, APGR {_pm(f, 'cascade_apgr')}"
        )
    return lines


def format_multi(rep: SourceReport) -> list[str]:
    """Lines for a many-model source."""
    f = rep.figures
    lines = [
        f"[{rep.source}] n={f['n']}  {len(rep.models)} models, premium {f['premium']} "
        f"(quality {f['premium_quality']:.3f}, ${f['premium_cost_usd']:.6f} a prompt)",
        "  cost/premium  best quality",
    ]
    lines += [
        f"  {row['cost_fraction']:>12.2f}  {_num(row['quality'], '.3f', 12)}"
        for row in rep.curve_table
    ]
    lines.append(f"  mean score at <= 50% of premium cost: {_pm(f, 'score_at_half_cost')}")
    lines.append(
        f"  premium share at 95% of premium quality: {_pm(f, 'strong_share_at_95')}, "
        f"cost saved {_pm(f, 'cost_saved_at_95', pct=True)}"
    )
    lines.append(f"  APGR over cost: {_pm(f, 'apgr')}")
    if "cost_fraction" in f:
        lines.append(
            f"  calibrated lambda {f['calibrated']['lambda']:.4g}: "
            f"cost {_pm(f, 'cost_fraction', pct=True)} of premium, "
            f"score {f['score_at_calibrated']:.3f}"
        )
    return lines


def format_reports(reports: Mapping[str, SourceReport]) -> str:
    """The whole report as text."""
    blocks = []
    for rep in reports.values():
        blocks.append("\n".join(format_pair(rep) if rep.kind == "pair" else format_multi(rep)))
    return "\n\n".join(blocks) + "\n"
