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


def format_pair(rep: SourceReport) -> list[str]:
    """Lines for a two-model source."""
    f = rep.figures
    lines = [
        f"[{rep.source}] n={f['n']}  weak={rep.models[0]} ({f['weak_quality']:.3f})  "
        f"strong={rep.models[1]} ({f['strong_quality']:.3f})",
        "  strong share  quality  cost/strong",
    ]
    lines += [
        f"  {row['strong_share']:>12.2f}  {row['quality']:>7.3f}  {row['cost_fraction']:>11.3f}"
        for row in rep.curve_table
    ]
    lines.append(
        f"  strong share at 95% of strong quality: {_pm(f, 'strong_share_at_95')}  "
        f"(random {f['random_strong_share_at_95']:.3f}, "
        f"oracle {f['oracle_strong_share_at_95']:.3f})"
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
            f"  calibrated threshold {cal['threshold']:.4f}: "
            f"strong share {cal['strong_share']:.3f}, "
            f"quality {cal['quality_fraction_of_strong'] * 100:.1f}% of strong, "
            f"cost {cal['cost_fraction'] * 100:.1f}% of strong"
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
        f"  {row['cost_fraction']:>12.2f}  {row['quality']:>12.3f}" for row in rep.curve_table
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
