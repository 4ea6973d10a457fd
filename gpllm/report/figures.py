"""Figures 1 / S1, 2 and 3 as PNG, drawn with matplotlib's Agg canvas.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas,
never through pyplot: no global figure state, nothing to close, no GUI backend
picked up from the environment. Each figure has a ``draw_*`` function that
returns the Figure (for tests and notebooks) and a ``figure_*`` function that
draws, writes the PNG and returns its path.

A configuration missing from the results is skipped with a logged note (a
panel with no data says so in the panel); a frame without the needed columns,
or empty, raises :class:`gpllm.errors.InputError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from gpllm.atomic import write_bytes_from
from gpllm.errors import InputError
from gpllm.report.labels import (
    BASELINES,
    EMBEDDINGS,
    HIGHER_IS_BETTER,
    METRIC_AXIS_LABELS,
    METRIC_HEADERS,
    NO_EMBEDDING,
    ModelKey,
    embedding_label,
    model_family,
    model_label,
    paper_figure_1_name,
    row_order,
)
from gpllm.report.tables import ROW_ID, check_results, choose_size, summarize
from gpllm.report.tables import screens as list_screens

log = logging.getLogger(__name__)

DPI = 150
#: Two panels side by side (Figure 1); wider figures scale this per panel.
FIGSIZE = (11.0, 4.5)
#: Sizes chosen to be read at 100% zoom at DPI 150.
RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 13,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
XLABEL = "Number of training perturbations"

#: Figure 3's defaults: the paper compares GEARS with GP+LLM (text+sequence); without
#: GEARS results the strongest simple baseline, the non-control mean, stands in.
FIGURE_3_X = ModelKey("nonctrl_mean", NO_EMBEDDING)
FIGURE_3_Y = ModelKey("gp", "text+sequence")


class LineStyle(NamedTuple):
    color: str
    linestyle: str = "-"
    marker: str = "o"


# Baselines keep one look in every figure; models are coloured by embedding in
# Figure 1 (one GP per embedding) and by model class in Figure 2 (one panel per embedding).
_BASELINE_STYLE = {
    "random_perturbation": LineStyle("goldenrod", "--", "s"),
    "nonctrl_mean": LineStyle("black", "--", "D"),
    "control": LineStyle("0.7", ":", "x"),
    "gears": LineStyle("tab:purple", "-.", "^"),
}
_EMBEDDING_COLOR = {"text": "tab:blue", "sequence": "tab:orange", "text+sequence": "tab:green"}
_FAMILY_STYLE = {
    "knn": LineStyle("tab:red", "-", "v"),
    "linear": LineStyle("tab:brown", "-", "s"),
    "ridge": LineStyle("tab:olive", "-", "P"),
    "gp": LineStyle("tab:green", "-", "o"),
}
_FIGURE_1_OTHERS = ("random_perturbation", "nonctrl_mean", "gears")
#: How Figure 2's title names a model class, from the legend label's first word.
_FAMILY_TITLE = {"kNN": "kNN", "Linear": "linear", "Ridge": "ridge", "GP+LLM": "GP"}


def line_style(key: ModelKey) -> LineStyle:
    """One look per configuration for figures drawing every model on one embedding:
    baselines as everywhere, models by class (Figure 2's colours), variants dashed
    (a tuned kNN, ``gp_*``), anything else grey."""
    if key.model in _BASELINE_STYLE:
        return _BASELINE_STYLE[key.model]
    family = "linear" if key.model == "linear" else model_family(key.model)
    style = _FAMILY_STYLE.get(family, LineStyle("tab:gray", "-", "."))
    variant = (family == "knn" and key.model != "knn_k1") or key.model.startswith("gp_")
    return style._replace(linestyle="--") if variant else style


def model_family_of_label(label: str) -> str:
    """The first word of a legend label (``"GP+LLM, ..."`` -> ``"GP+LLM"``)."""
    return label.split(" ")[0].rstrip(",")


_FALLBACK_COLORS = ("tab:cyan", "tab:pink", "tab:gray", "tab:olive", "tab:brown")


class Line(NamedTuple):
    key: ModelKey
    label: str
    style: LineStyle


# ---------------------------------------------------------------------------- shared


def new_figure(n_panels: int, *, panel_width: float = FIGSIZE[0] / 2, height: float = FIGSIZE[1]):
    """A Figure on an Agg canvas with ``n_panels`` axes in one row -> (fig, [ax...])."""
    fig = Figure(figsize=(panel_width * n_panels, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def save(fig: Figure, path: str | PathLike) -> Path:
    """Write ``fig`` as PNG at :data:`DPI` (parents created); returns the path."""
    with matplotlib.rc_context(RC):
        return write_bytes_from(path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight"))


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, wrap=True, color="0.4")


def _plot_curves(ax: Axes, curves: pl.DataFrame, lines: Sequence[Line], metric: str) -> int:
    """Mean vs size per line with a shaded mean ± half_width band; returns lines drawn.

    curves: the summary (see :func:`gpllm.report.tables.summarize`) of one
    screen, any metrics. A line without rows for ``metric`` is skipped.
    """
    drawn = 0
    for line in lines:
        pts = curves.filter(
            (pl.col("model") == line.key.model)
            & (pl.col("embedding") == line.key.embedding)
            & (pl.col("metric") == metric)
        ).sort("size")
        if pts.height == 0:
            continue
        x, mean, hw = (pts.get_column(c).to_numpy().astype(float) for c in ("size", "mean", "half_width"))
        ax.plot(
            x,
            mean,
            label=line.label,
            color=line.style.color,
            linestyle=line.style.linestyle,
            marker=line.style.marker,
            markersize=4,
            linewidth=1.6,
        )
        ok = np.isfinite(hw)  # one fold: no SE, no band
        if ok.any():
            ax.fill_between(x[ok], (mean - hw)[ok], (mean + hw)[ok], color=line.style.color, alpha=0.12, linewidth=0)
        drawn += 1
    ax.set_xlabel(XLABEL)
    ax.set_ylabel(METRIC_AXIS_LABELS.get(metric, metric))
    sizes = sorted({int(x) for line in ax.lines for x in line.get_xdata()})
    if sizes:  # ticks at the training sizes run, not at matplotlib's round numbers
        ax.set_xticks(sizes, [str(s) for s in sizes], rotation=45 if len(sizes) > 4 else 0)
    return drawn


def _shared_legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend right of the panels, listing each label once (never over the data)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside right center", frameon=False)


def _screen_summary(results: pl.DataFrame, screen: str, metrics: Sequence[str], what: str) -> pl.DataFrame:
    check_results(results, [*ROW_ID, *metrics], what)
    sub = results.filter(pl.col("screen") == screen)
    if sub.height == 0:
        raise InputError(f"{what}: no results for screen {screen!r} (screens: {list_screens(results)})")
    return summarize(sub, metrics)


def _present(summary: pl.DataFrame) -> set[ModelKey]:
    return {ModelKey(*k) for k in summary.select("model", "embedding").unique().iter_rows()}


def _note_missing(what: str, wanted: Sequence[ModelKey], present: set[ModelKey]) -> None:
    for key in wanted:
        if key not in present:
            log.info("%s: no results for %s; line skipped", what, model_label(*key))


# -------------------------------------------------------------------- Figure 1 / S1


def figure_1_lines(present: set[ModelKey]) -> list[Line]:
    """Figure 1's lines among ``present``: the two baselines, GEARS, every GP and embedding.

    GPs are coloured by embedding; ``gp_*`` variants are dashed.
    """
    keys = [k for k in present if k.model in _FIGURE_1_OTHERS or model_family(k.model) == "gp"]
    lines = []
    for i, key in enumerate(sorted(keys, key=row_order)):
        if key.model in _FIGURE_1_OTHERS:
            style = _BASELINE_STYLE[key.model]
        else:
            color = _EMBEDDING_COLOR.get(key.embedding, _FALLBACK_COLORS[i % len(_FALLBACK_COLORS)])
            style = LineStyle(color, "-" if key.model == "gp" else "--")
        lines.append(Line(key, model_label(*key), style))
    return lines


def draw_figure_1(results: pl.DataFrame, *, screen: str, metrics: Sequence[str] = ("pearson_de", "mae_de")) -> Figure:
    """Figure 1 (K562) / S1 (RPE1): one panel per metric vs the number of training perturbations.

    Lines: random-perturbation and non-control-mean baselines, GEARS if
    present, GP+LLM per embedding; band = mean ± 1.96 SE across folds.
    """
    what = f"{paper_figure_1_name(screen)} ({screen})"
    summary = _screen_summary(results, screen, metrics, what)
    present = _present(summary)
    wanted = [ModelKey(b, NO_EMBEDDING) for b in BASELINES[:2]] + [ModelKey("gp", e) for e in EMBEDDINGS]
    _note_missing(what, wanted, present)
    lines = figure_1_lines(present)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(metrics))
        for ax, metric in zip(axes, metrics):
            if not _plot_curves(ax, summary, lines, metric):
                _no_data(ax, f"no results for {METRIC_HEADERS.get(metric, metric)}")
            ax.set_title(f"{screen}: {METRIC_HEADERS.get(metric, metric)}")
        fig.suptitle(f"{what}: baselines vs GP+LLM, mean ± 1.96 SE across folds")
        _shared_legend(fig, axes)
    return fig


def figure_1(results: pl.DataFrame, path: str | PathLike, *, screen: str, **options) -> Path:
    """Draw :func:`draw_figure_1` for ``screen`` and write it to ``path`` (PNG)."""
    return save(draw_figure_1(results, screen=screen, **options), path)


# ------------------------------------------------------------------------- Figure 2


def figure_2_lines(present: set[ModelKey], embedding: str) -> list[Line]:
    """kNN (k=1), linear, ridge variants and the GPs on ``embedding``, in table order.

    Coloured by model class; ``gp_*`` variants dashed.
    """
    keys = [
        k
        for k in present
        if k.embedding == embedding and (k.model in ("knn_k1", "linear") or model_family(k.model) in ("ridge", "gp"))
    ]
    lines = []
    for k in sorted(keys, key=row_order):
        style = _FAMILY_STYLE[model_family(k.model)]
        if k.model.startswith("gp_"):
            style = style._replace(linestyle="--")
        lines.append(Line(k, model_label(k.model, NO_EMBEDDING), style))
    return lines


def draw_figure_2(
    results: pl.DataFrame,
    *,
    screen: str,
    metric: str = "pearson_de",
    embeddings: Sequence[str] = EMBEDDINGS,
) -> Figure:
    """Figure 2: model classes on the same embedding, one panel per embedding.

    Lines: kNN (k=1), linear / ridge, GP+LLM; ``metric`` vs the number of
    training perturbations, band = mean ± 1.96 SE across folds.
    """
    what = f"Figure 2 ({screen})"
    summary = _screen_summary(results, screen, [metric], what)
    present = _present(summary)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(embeddings), panel_width=4.4)
        for ax, embedding in zip(axes, embeddings):
            lines = figure_2_lines(present, embedding)
            _note_missing(f"{what}, {embedding}", [ModelKey(m, embedding) for m in ("knn_k1", "gp")], present)
            if not any(model_family(ln.key.model) in ("linear", "ridge") for ln in lines):
                log.info("%s, %s: no linear or ridge results; line skipped", what, embedding)
            if not _plot_curves(ax, summary, lines, metric):
                _no_data(ax, f"no model results on the {embedding} embedding")
            ax.set_title(f"{screen}: {embedding_label(embedding)}")
        _share_y(axes)
        drawn = [line.get_label() for ax in axes for line in ax.lines]
        names = list(dict.fromkeys(_FAMILY_TITLE.get(model_family_of_label(label), label) for label in drawn))
        fig.suptitle(f"{what}: {' vs '.join(names) or 'models'} on the same embedding, mean ± 1.96 SE")
        _shared_legend(fig, axes)
    return fig


def _share_y(axes: Sequence[Axes]) -> None:
    """Same y-range on every panel with data, so embeddings compare at a glance."""
    lims = [ax.get_ylim() for ax in axes if ax.lines]
    if lims:
        lo, hi = min(low for low, _ in lims), max(high for _, high in lims)
        for ax in axes:
            ax.set_ylim(lo, hi)


def figure_2(results: pl.DataFrame, path: str | PathLike, *, screen: str, **options) -> Path:
    """Draw :func:`draw_figure_2` for ``screen`` and write it to ``path`` (PNG)."""
    return save(draw_figure_2(results, screen=screen, **options), path)


# ------------------------------------------------------------------------- Figure 3


class WinRates(NamedTuple):
    """Share of perturbations where y beats x, x beats y, or they tie; n in total."""

    n: int
    y_wins: float
    x_wins: float
    ties: float


def scatter_points(
    results: pl.DataFrame,
    *,
    screen: str,
    x: ModelKey = FIGURE_3_X,
    y: ModelKey = FIGURE_3_Y,
    size: int | None = None,
    metric: str = "pearson_de",
    top_fraction: float = 0.5,
) -> tuple[pl.DataFrame, int | None]:
    """Figure 3's points for one screen -> (frame pert, x, y, effect_size; the size used).

    Per perturbation, each model's ``metric`` is averaged over the folds it was
    tested in (once in K-fold CV) at one training size: ``size``, else 1400 if
    both models have it, else the largest size both have. Only perturbations
    both models were tested on are kept, then the ceil(top_fraction * n) with
    the largest ``effect_size`` (ties broken by name, so the cut is
    deterministic). Empty frame when a model has no results here.
    """
    x, y = ModelKey(*x), ModelKey(*y)
    if not 0 < top_fraction <= 1:
        raise InputError(f"top_fraction must be in (0, 1], not {top_fraction!r}")
    check_results(results, [*ROW_ID, metric, "effect_size"], "Figure 3")
    sub = results.filter(pl.col("screen") == screen)

    def is_key(k: ModelKey) -> pl.Expr:
        return (pl.col("model") == k.model) & (pl.col("embedding") == k.embedding)

    both = (
        sub.filter(is_key(x) | is_key(y))
        .group_by("size")
        .agg(pl.struct("model", "embedding").n_unique().alias("n"))
        .filter(pl.col("n") == 2)  # x == y would never reach 2: comparing a model with itself is empty
    )
    empty = pl.DataFrame(schema={"pert": pl.String, "x": pl.Float64, "y": pl.Float64, "effect_size": pl.Float64})
    if both.height == 0:
        return empty, None
    size, _ = choose_size(both.get_column("size").to_list(), size)

    def per_pert(key: ModelKey, name: str) -> pl.DataFrame:
        return (
            sub.filter(is_key(key) & (pl.col("size") == size))
            .group_by("pert")
            .agg(pl.col(metric).mean().alias(name), pl.col("effect_size").mean().alias(f"es_{name}"))
        )

    pts = per_pert(x, "x").join(per_pert(y, "y"), on="pert", how="inner")
    pts = pts.select(
        pl.col("pert").cast(pl.String),
        "x",
        "y",
        # effect_size is the measured profile's, the same under both models; average any rounding.
        effect_size=pl.mean_horizontal("es_x", "es_y"),
    ).drop_nulls()
    keep = math.ceil(top_fraction * pts.height)
    pts = pts.sort(["effect_size", "pert"], descending=[True, False]).head(keep)
    return pts, size


def win_rates(points: pl.DataFrame, *, higher_is_better: bool = True) -> WinRates:
    """Fractions of ``points`` (columns x, y) where y is better, x is better, or equal."""
    n = points.height
    if n == 0:
        return WinRates(0, float("nan"), float("nan"), float("nan"))
    _, _, diff = _y_advantage(points, higher_is_better)
    return WinRates(n, float((diff > 0).sum() / n), float((diff < 0).sum() / n), float((diff == 0).sum() / n))


def draw_figure_3(
    results: pl.DataFrame,
    *,
    x: ModelKey = FIGURE_3_X,
    y: ModelKey = FIGURE_3_Y,
    screens: Sequence[str] | None = None,
    size: int | None = None,
    metric: str = "pearson_de",
    top_fraction: float = 0.5,
) -> Figure:
    """Figure 3: per-perturbation ``metric`` of model y vs model x, one panel per screen.

    Points where y is better (above the diagonal for correlations) are blue,
    where x is better red, ties grey; a legend under each panel gives each model's
    share of wins, and the perturbations each model wins by most are named.
    Uses :func:`scatter_points` (top 50% of perturbations by effect size).
    """
    x, y = ModelKey(*x), ModelKey(*y)
    check_results(results, [*ROW_ID, metric, "effect_size"], "Figure 3")
    names = list(screens) if screens is not None else list_screens(results)
    better = HIGHER_IS_BETTER.get(metric) is not False
    xl, yl = model_label(*x), model_label(*y)
    with matplotlib.rc_context(RC):
        fig, axes = new_figure(len(names), panel_width=5.5, height=5.6)
        named = []
        for ax, screen in zip(axes, names):
            pts, used = scatter_points(
                results, screen=screen, x=x, y=y, size=size, metric=metric, top_fraction=top_fraction
            )
            if pts.height == 0:
                log.info("Figure 3 (%s): no perturbations with results for both %s and %s", screen, xl, yl)
                _no_data(ax, f"no results for both\n{xl}\nand {yl}")
                ax.set_title(screen)
                continue
            _scatter_panel(ax, pts, win_rates(pts, higher_is_better=better), xl, yl, better)
            named.append((ax, pts, better))
            ax.set_title(
                f"{screen}: {used} training perturbations\ntop {top_fraction:.0%} by effect size, n = {pts.height}"
            )
            ax.set_xlabel(f"{METRIC_HEADERS.get(metric, metric)}: {xl}")
            ax.set_ylabel(f"{METRIC_HEADERS.get(metric, metric)}: {yl}")
        fig.suptitle(f"Figure 3: {yl} vs {xl}, per perturbation")
        for ax, pts, better in named:  # last: names are placed on the final layout
            _name_largest_wins(ax, pts, better)
    return fig


#: Figure 3 names the perturbations where the two models differ most, this many per model.
FIGURE_3_NAMED_PER_MODEL = 3


def _marker(n: int) -> tuple[float, float]:
    """(area in pt², alpha) of Figure 3's points: smaller and lighter as ``n`` grows, so a
    screen of ~700 shown perturbations reads as a density, not a blot; 20 and 0.8 up to 100."""
    root = math.sqrt(max(n, 1))
    return float(np.clip(200 / root, 6, 20)), float(np.clip(8 / root, 0.35, 0.8))


def _y_advantage(pts: pl.DataFrame, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, how much better y is than x) per point: y - x for a score, x - y for an error."""
    xs, ys = pts.get_column("x").to_numpy(), pts.get_column("y").to_numpy()
    return xs, ys, (ys - xs) * (1 if higher_is_better else -1)


def _scatter_panel(ax: Axes, pts: pl.DataFrame, wins: WinRates, xl: str, yl: str, higher_is_better: bool) -> None:
    """Every point, coloured by which model wins it, and the shares of wins in a legend below
    the axes (never over a point)."""
    xs, ys, diff = _y_advantage(pts, higher_is_better)
    area, alpha = _marker(xs.size)
    for mask, color, label, always in (  # a model's share is shown even when it is 0%, ties only if any
        (diff > 0, "tab:blue", f"{yl} better: {wins.y_wins:.0%}", True),
        (diff < 0, "tab:red", f"{xl} better: {wins.x_wins:.0%}", True),
        (diff == 0, "0.5", f"ties: {wins.ties:.0%}", False),
    ):
        if always or mask.any():
            ax.scatter(xs[mask], ys[mask], s=area, color=color, alpha=alpha, linewidths=0, label=label)
    lo, hi = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    legend = ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.13),
        frameon=False,
        fontsize=10,
        title=f"named: each model's {FIGURE_3_NAMED_PER_MODEL} largest wins",
        title_fontsize=10,
    )
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
        handle.set_sizes([30.0])


def _name_largest_wins(ax: Axes, pts: pl.DataFrame, higher_is_better: bool) -> None:
    """Ring and name the :data:`FIGURE_3_NAMED_PER_MODEL` perturbations each model wins by most."""
    xs, ys, diff = _y_advantage(pts, higher_is_better)
    _name_points(ax, xs, ys, pts.get_column("pert").to_list(), _largest_wins(diff, FIGURE_3_NAMED_PER_MODEL))


def _name_points(ax: Axes, xs: np.ndarray, ys: np.ndarray, names: Sequence[str], which: Sequence[int]) -> None:
    """Ring points ``which`` and name each beside its point on the side facing the diagonal
    (so inside the axes: points above it are named to their right, points below to their
    left), moved just enough that no two names overlap. Call it on the final layout."""
    ax.scatter(xs[list(which)], ys[list(which)], s=40, facecolors="none", edgecolors="black", linewidths=0.8)
    fig = ax.get_figure()
    fig.draw_without_rendering()  # the final layout, so that text extents are measured at their size
    renderer = fig.canvas.get_renderer()
    placed = []
    # Names stack away from the nearest edge: those above the diagonal (top-left) downwards
    # from the top, those below it (bottom-right) upwards from the bottom.
    for i in sorted(which, key=lambda i: (ys[i] < xs[i], -ys[i] if ys[i] > xs[i] else ys[i])):
        above = ys[i] > xs[i]
        note = ax.annotate(
            names[i],
            (xs[i], ys[i]),
            xytext=(6 if above else -6, 0),
            textcoords="offset points",
            ha="left" if above else "right",
            va="center",
            fontsize=10,
            in_layout=False,
            arrowprops={"arrowstyle": "-", "color": "0.4", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 2},
        )
        for _ in range(len(placed) + 1):
            box = _text_extent(note, renderer)
            hit = next((b for b in placed if b.overlaps(box)), None)
            if hit is None:
                break
            dy = (hit.y0 - box.y1 - 2) if above else (hit.y1 - box.y0 + 2)  # pixels
            note.xyann = (note.xyann[0], note.xyann[1] + dy * 72 / fig.dpi)  # xytext is in points
        placed.append(_text_extent(note, renderer))


def _text_extent(note, renderer):
    """The pixel box of an annotation's text alone (its own extent includes the leader line)."""
    note.update_positions(renderer)  # the text's place follows xytext only once updated
    return Text.get_window_extent(note, renderer)


def _largest_wins(diff: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest positive and the ``k`` most negative ``diff``."""
    order = np.argsort(diff, kind="stable")
    return [int(i) for i in order[::-1][:k] if diff[i] > 0] + [int(i) for i in order[:k] if diff[i] < 0]


def figure_3(results: pl.DataFrame, path: str | PathLike, **options) -> Path:
    """Draw :func:`draw_figure_3` (options as there) and write it to ``path`` (PNG)."""
    return save(draw_figure_3(results, **options), path)
