"""The design simulation's learning curves as a PNG (matplotlib Agg, as :mod:`gpllm.report.figures`)."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import matplotlib
import polars as pl
from matplotlib.figure import Figure

from gpllm.active.curves import CURVE_METRICS, learning_curves
from gpllm.report.figures import RC, new_figure, save
from gpllm.report.labels import METRIC_AXIS_LABELS

AXIS_LABELS = {**METRIC_AXIS_LABELS, "strong_found": "Share of the pool's strongest 10% measured"}
XLABEL = "Perturbations measured"
#: Random in black and dashed (the yardstick), the others in matplotlib's cycle.
REFERENCE = "random"


def draw_learning_curves(results: pl.DataFrame, *, metrics: Sequence[str] = CURVE_METRICS, title: str = "") -> Figure:
    """One panel per metric: mean over repeats vs perturbations measured, per acquisition,
    with a band of 1.96 SE across repeats."""
    curves = learning_curves(results, metrics)
    acquisitions = curves["acquisition"].unique(maintain_order=True).to_list()
    repeats = int(curves["repeats"].min())
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(metrics))
        colours = iter(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
        for name in acquisitions:
            rows = curves.filter(pl.col("acquisition") == name)
            n = rows["n_measured"].to_numpy()
            style = dict(color="black", linestyle="--") if name == REFERENCE else dict(color=next(colours))
            for ax, metric in zip(axes, metrics):
                mean, hw = rows[metric].to_numpy(), rows[f"{metric}_hw"].fill_null(0.0).to_numpy()
                ax.plot(n, mean, marker="o", markersize=3, label=name, **style)
                ax.fill_between(n, mean - hw, mean + hw, alpha=0.15, color=style["color"], linewidth=0)
        for ax, metric in zip(axes, metrics):
            ax.set_xlabel(XLABEL)
            ax.set_ylabel(AXIS_LABELS.get(metric, metric))
        axes[0].legend(loc="best")
        band = f"mean ± 1.96 SE over {repeats} repeats" if repeats > 1 else "one repeat"
        fig.suptitle(f"{title}: {band}" if title else band)
    return fig


def learning_curves_png(results: pl.DataFrame, path: str | PathLike, **options) -> Path:
    """Draw :func:`draw_learning_curves` and write it to ``path`` (PNG)."""
    return save(draw_learning_curves(results, **options), path)
