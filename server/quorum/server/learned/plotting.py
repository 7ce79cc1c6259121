"""PNG of each source's quality/cost curve against random and oracle routing (training-side)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from quorum.server.learned.evaluation import SourceReport


def png_path(out: Path) -> Path:
    """Where a plot asked for at ``out`` is written: ``out`` itself when it ends in ``.png``
    (any case), else ``out`` with ``.png`` appended (``curve`` → ``curve.png``, ``curve.pdf`` →
    ``curve.pdf.png``): the plot is always a PNG, whatever the name says."""
    return out if out.suffix.lower() == ".png" else out.with_name(out.name + ".png")


def plot_reports(reports: Mapping[str, SourceReport], out: Path) -> Path:
    """Draw one panel per source into a PNG at :func:`png_path` of ``out`` (matplotlib, Agg
    backend); returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(reports))
    cols = min(2, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 4.5 * rows), squeeze=False)
    for ax, rep in zip(axes.flat, reports.values(), strict=False):
        p = rep.plot
        if rep.kind == "pair":
            ax.plot(*p["random"], "--", color="grey", label="random")
            ax.plot(*p["oracle"], ":", color="black", label="oracle")
            ax.plot(*p["router"], color="tab:blue", label="learned router")
            if "cascade" in p:
                ax.plot(*p["cascade"], color="tab:orange", label="cascade + verifier")
        else:
            xs, ys = p["router"]
            order = xs.argsort()
            ax.plot(xs[order], ys[order], ".", color="tab:blue", ms=3, alpha=0.4)
            # the best quality reachable within each cost: the operating points' upper envelope
            envelope = np.maximum.accumulate(ys[order])
            ax.plot(xs[order], envelope, "-", color="tab:blue", label="learned router (lambda)")
            ox, oy = p["oracle"]
            o = ox.argsort()
            ax.plot(ox[o], np.maximum.accumulate(oy[o]), ":", color="black", label="oracle")
            singles = p["singles"]
            sx = [v[0] for v in singles.values()]
            sy = [v[1] for v in singles.values()]
            ax.scatter(sx, sy, color="grey", s=14, label="single models (random mixes lie between)")
            if p.get("x_is_fraction", True):  # else dollars: the premium costs nothing
                ax.set_xlim(0, max(1.05, max(sx) * 1.05))
        ax.axhline(p["target"], color="tab:red", lw=0.8, label="95% of premium")
        ax.set_title(f"{rep.source} (n={rep.figures['n']})")
        ax.set_xlabel(p["xlabel"], fontsize=8)
        ax.set_ylabel("mean quality")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(reports) :]:
        ax.axis("off")
    fig.tight_layout()
    path = png_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path
