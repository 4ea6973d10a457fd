"""Figures 1-3: plotted values against numpy, readable PNGs, Figure 3's win shares by hand."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import polars as pl
import pytest
from matplotlib.text import Text

from gpllm.errors import InputError
from gpllm.report.figures import (
    DPI,
    draw_figure_1,
    draw_figure_2,
    draw_figure_3,
    figure_1,
    scatter_points,
    win_rates,
)
from gpllm.report.labels import ModelKey
from tests.report.helpers import frame_from_folds, reference_summary

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GP_TS = ModelKey("gp", "text+sequence")
NONCTRL = ModelKey("nonctrl_mean", "none")


def _texts(fig) -> list[Text]:
    fig.canvas.draw()  # creates the tick labels
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _assert_readable(fig) -> None:
    small = [(t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < 10]
    assert not small, small
    assert fig.dpi == DPI


def test_figure_1_lines_are_the_fold_summaries(results):
    fig = draw_figure_1(results, screen="K562")
    _assert_readable(fig)
    cor, mae = fig.axes[:2]
    expected = [
        "Simple baseline (random pert)",
        "Simple baseline (non-ctrl mean)",
        "GP+LLM (text)",
        "GP+LLM (sequence)",
        "GP+LLM (text + sequence)",
    ]
    for ax, metric in ((cor, "pearson_de"), (mae, "mae_de")):
        assert [ln.get_label() for ln in ax.lines] == expected
        assert len(ax.collections) == len(expected)  # one shaded band per line
        line = ax.lines[expected.index("GP+LLM (text)")]
        sub = results.filter((pl.col("screen") == "K562") & (pl.col("model") == "gp") & (pl.col("embedding") == "text"))
        sizes = sorted(sub["size"].unique())
        want = [
            reference_summary(*(sub.filter(pl.col("size") == s)[c].to_numpy() for c in (metric, "fold")))[0]
            for s in sizes
        ]
        np.testing.assert_allclose(line.get_xdata(), sizes)
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-12)
        band = ax.collections[expected.index("GP+LLM (text)")].get_paths()[0].vertices
        hw = reference_summary(*(sub.filter(pl.col("size") == 400)[c].to_numpy() for c in (metric, "fold")))[1]
        at_400 = band[np.isclose(band[:, 0], 400), 1]
        np.testing.assert_allclose(sorted(at_400)[0], want[-1] - hw, rtol=1e-9)
        np.testing.assert_allclose(sorted(at_400)[-1], want[-1] + hw, rtol=1e-9)
    assert "Figure 1" in fig._suptitle.get_text()
    assert "Figure S1" in draw_figure_1(results, screen="RPE1")._suptitle.get_text()


def test_figure_1_png_is_valid_and_large_enough(results, tmp_path):
    path = figure_1(results, tmp_path / "sub" / "f1.png", screen="RPE1")
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE and len(raw) > 10_000
    height, width, channels = matplotlib.image.imread(path).shape
    # 11 x 4.5 inches at 150 dpi, give or take the tight bounding box.
    assert 1300 < width < 2200 and 500 < height < 900 and channels in (3, 4)


def test_figure_2_panels_per_embedding(results):
    fig = draw_figure_2(results, screen="K562")
    _assert_readable(fig)
    text, sequence, both = fig.axes[:3]
    assert [ln.get_label() for ln in text.lines] == ["kNN (k=1)", "Linear", "Ridge", "GP+LLM"]
    assert [ln.get_label() for ln in sequence.lines] == ["kNN (k=1)", "GP+LLM"]  # no linear run on it
    assert [ln.get_label() for ln in both.lines] == ["kNN (k=1)", "Ridge", "GP+LLM"]
    assert text.get_ylim() == sequence.get_ylim() == both.get_ylim()  # shared scale
    # The title names the classes drawn, as the legend does; ticks sit at the sizes run.
    assert "kNN vs linear vs ridge vs GP on the same embedding" in fig._suptitle.get_text()
    sizes = sorted(set(results.filter(screen="K562")["size"]))
    assert [int(x) for x in text.get_xticks()] == sizes


def test_figure_3_falls_back_to_the_gp_the_run_has(results):
    from gpllm.report.write import figure_3_subject

    assert figure_3_subject(results) == ModelKey("gp", "text+sequence")
    text_only = results.filter((pl.col("model") != "gp") | (pl.col("embedding") == "text"))
    assert figure_3_subject(text_only) == ModelKey("gp", "text")


def test_figures_note_missing_models_instead_of_failing(results):
    only_knn = results.filter(pl.col("model") == "knn_k1")
    fig1 = draw_figure_1(only_knn, screen="K562")
    assert all(not ax.lines for ax in fig1.axes) and any("no results" in t.get_text() for t in _texts(fig1))
    baselines = results.filter(pl.col("embedding") == "none")
    fig2 = draw_figure_2(baselines, screen="K562")
    assert sum("no model results" in t.get_text() for t in _texts(fig2)) == 3
    fig3 = draw_figure_3(results.filter(pl.col("model") != "gp"))
    assert sum("no results for both" in t.get_text() for t in _texts(fig3)) == 2


def test_win_rates_by_hand():
    pts = pl.DataFrame({"x": [0.1, 0.2, 0.3, 0.4], "y": [0.2, 0.1, 0.3, 0.5]})
    assert win_rates(pts) == (4, 0.5, 0.25, 0.25)
    assert win_rates(pts, higher_is_better=False) == (4, 0.25, 0.5, 0.25)  # errors: lower wins
    assert win_rates(pts.head(0)).n == 0


def test_scatter_keeps_the_top_half_by_effect_size():
    # Effect size of p{f}_{i} is 10 f + i; 5 perturbations -> ceil(2.5) = 3 kept: p2_1, p2_0, p1_0.
    # The GP wins clearly on the two weak perturbations left out.
    frame = frame_from_folds(
        {
            ("gp", "text+sequence", 1400): [[0.9, 0.9], [0.5], [0.2, 0.6]],
            ("nonctrl_mean", "none", 1400): [[0.1, 0.1], [0.4], [0.3, 0.6]],
        }
    )
    pts, size = scatter_points(frame, screen="K562")
    assert size == 1400
    assert pts["pert"].to_list() == ["p2_1", "p2_0", "p1_0"]
    assert pts["x"].to_list() == [0.6, 0.3, 0.4] and pts["y"].to_list() == [0.6, 0.2, 0.5]
    wins = win_rates(pts)
    assert (wins.y_wins, wins.x_wins, wins.ties) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    everything, _ = scatter_points(frame, screen="K562", top_fraction=1.0)
    assert everything.height == 5


def test_figure_3_shares_match_a_numpy_count(results):
    fig = draw_figure_3(results, x=NONCTRL, y=GP_TS)
    _assert_readable(fig)
    texts = [t.get_text() for t in _texts(fig)]
    for screen in ("K562", "RPE1"):
        at = results.filter((pl.col("screen") == screen) & (pl.col("size") == 400))
        per_pert = {}
        for key, name in ((NONCTRL, "x"), (GP_TS, "y")):
            sub = at.filter((pl.col("model") == key.model) & (pl.col("embedding") == key.embedding))
            for pert, value, effect in zip(sub["pert"], sub["pearson_de"], sub["effect_size"]):
                per_pert.setdefault(pert, {})[name] = value
                per_pert[pert]["effect"] = effect
        ranked = sorted(per_pert, key=lambda p: (-per_pert[p]["effect"], p))
        top = ranked[: math.ceil(len(ranked) / 2)]
        x = np.array([per_pert[p]["x"] for p in top])
        y = np.array([per_pert[p]["y"] for p in top])
        pts, _ = scatter_points(results, screen=screen)
        assert sorted(pts["pert"]) == sorted(top)
        y_share, x_share = np.mean(y > x), np.mean(x > y)
        assert win_rates(pts)[1:3] == pytest.approx((y_share, x_share))
        assert f"GP+LLM (text + sequence) better: {y_share:.0%}" in texts
        assert f"Simple baseline (non-ctrl mean) better: {x_share:.0%}" in texts


def test_figure_errors(results):
    with pytest.raises(InputError, match="effect_size"):
        draw_figure_3(results.drop("effect_size"))
    with pytest.raises(InputError, match="top_fraction"):
        scatter_points(results, screen="K562", top_fraction=0.0)
    with pytest.raises(InputError, match="'HeLa'"):
        draw_figure_1(results, screen="HeLa")
    with pytest.raises(InputError, match="mae_de"):
        draw_figure_1(results.drop("mae_de"), screen="K562")
    with pytest.raises(InputError, match="empty"):
        draw_figure_2(results.head(0), screen="K562")


def test_figure_3_names_each_models_largest_wins_without_overlap():
    from matplotlib.text import Annotation

    from gpllm.report.figures import FIGURE_3_NAMED_PER_MODEL
    from tests.report.helpers import make_example_results

    # a screen of the paper's size: ~1,450 perturbations, half of them shown
    results = make_example_results(
        sizes=(1400,),
        n_folds=5,
        perts_per_fold=290,
        configs=(("nonctrl_mean", "none", 0.40), ("gp", "text+sequence", 0.45)),
    )
    fig = draw_figure_3(results)
    _assert_readable(fig)
    renderer = fig.canvas.get_renderer()
    for ax, screen in zip(fig.axes, ("K562", "RPE1")):
        pts, _ = scatter_points(results, screen=screen)
        diff = pts["y"].to_numpy() - pts["x"].to_numpy()
        names = np.array(pts["pert"].to_list())
        k = FIGURE_3_NAMED_PER_MODEL
        want = {*names[np.argsort(-diff)[:k]], *names[np.argsort(diff)[:k]]}
        notes = [c for c in ax.get_children() if isinstance(c, Annotation)]
        assert {n.get_text() for n in notes} == want
        boxes = [Text.get_window_extent(n, renderer) for n in notes]  # the text, not its leader line
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
        inside = ax.get_window_extent(renderer)
        assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 for b in boxes)  # never over the axis labels
        # the shares of wins sit in a legend under the axes, not over the points
        legend = ax.get_legend()
        assert legend.get_window_extent(renderer).y1 < inside.y0
        assert any("better" in t.get_text() for t in legend.get_texts())
