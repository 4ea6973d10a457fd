"""Table 1 / S1: summaries against numpy, best-in-bold, markdown / CSV / terminal output, errors."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from gpllm.errors import InputError
from gpllm.evaluate.metrics import PerturbationMetrics
from gpllm.report.tables import (
    METRICS,
    REQUIRED_COLUMNS,
    TABLE_METRICS,
    UNDEFINED_FLAGS,
    format_table_for_terminal,
    make_table,
    rich_table,
    screens,
    summarize,
    to_markdown,
    write_csv,
)
from tests.report.helpers import frame_from_folds, reference_summary, with_calibration

# Fold means 0.2, 0.4, 0.6 (pooled mean 0.4333: tells a mean of fold means from a pooled one).
HAND = {
    ("gp", "text", 100): [[0.1, 0.3], [0.4], [0.6, 0.6, 0.6]],
    ("knn_k1", "text", 100): [[0.1], [0.2], [0.3]],
    ("gp", "text", 1400): [[0.5, 0.7], [0.8], [0.2, 0.4]],
    ("knn_k1", "text", 1400): [[0.3], [0.3], [0.3]],
    ("nonctrl_mean", "none", 1400): [[0.7, 0.0], [0.3], [0.8]],
}


def test_metric_names_match_the_evaluation():
    # The report reads the columns perturbation_metrics' fields become in the sweep.
    assert set(TABLE_METRICS) | set(UNDEFINED_FLAGS.values()) <= set(PerturbationMetrics._fields)


def test_summarize_hand_values():
    s = summarize(frame_from_folds(HAND), ["pearson_de"])
    row = s.filter((pl.col("model") == "gp") & (pl.col("size") == 100)).row(0, named=True)
    assert row["mean"] == pytest.approx(0.4)  # not the pooled 0.4333
    assert row["half_width"] == pytest.approx(1.96 * 0.2 / math.sqrt(3))
    assert (row["n_folds"], row["n_perts"], row["n_undefined"]) == (3, 6, 0)
    flat = s.filter((pl.col("model") == "knn_k1") & (pl.col("size") == 1400)).row(0, named=True)
    assert (flat["mean"], flat["half_width"]) == (pytest.approx(0.3), pytest.approx(0.0))


def test_summarize_matches_numpy_on_every_configuration(results):
    results = with_calibration(results)  # every metric the sweep writes
    summary = summarize(results)
    assert set(summary["metric"]) == set(METRICS)
    checked = 0
    for (screen, model, embedding, size), sub in results.group_by("screen", "model", "embedding", "size"):
        for metric in METRICS:
            values = sub[metric].to_numpy().astype(float)
            ok = np.isfinite(values)  # NaN NLL / coverage for models without a variance
            got = summary.filter(
                (pl.col("screen") == screen)
                & (pl.col("model") == model)
                & (pl.col("embedding") == embedding)
                & (pl.col("size") == size)
                & (pl.col("metric") == metric)
            )
            if not ok.any():
                assert got.height == 0, (model, metric)
                continue
            mean, hw = reference_summary(values[ok], sub["fold"].to_numpy()[ok])
            (row,) = got.iter_rows(named=True)
            np.testing.assert_allclose([row["mean"], row["half_width"]], [mean, hw], rtol=1e-12, atol=1e-15)
            assert row["n_perts"] == ok.sum()
            if metric in UNDEFINED_FLAGS:
                assert row["n_undefined"] == sub[UNDEFINED_FLAGS[metric]].sum()
            checked += 1
    assert checked == summary.height  # every summary row was checked, none extra


def test_single_fold_has_no_interval():
    s = summarize(frame_from_folds({("gp", "text", 100): [[0.2, 0.4]]}), ["pearson_de"])
    assert s["mean"][0] == pytest.approx(0.3)
    assert math.isnan(s["half_width"][0])
    table = make_table(frame_from_folds({("gp", "text", 100): [[0.2, 0.4]]}), "K562")
    assert "**0.300** ± n/a" in to_markdown(table)  # the only row is the best


def test_table_uses_1400_and_numpy_values():
    table = make_table(frame_from_folds(HAND), "K562")
    assert table.size == 1400 and "paper's size" in table.size_note
    assert table.rows["label"].to_list() == ["Simple baseline (non-ctrl mean)", "kNN (k=1, text)", "GP+LLM (text)"]
    frame = frame_from_folds(HAND)
    for row in table.rows.iter_rows(named=True):
        sub = frame.filter((pl.col("model") == row["model"]) & (pl.col("size") == 1400))
        for metric in TABLE_METRICS:
            mean, hw = reference_summary(sub[metric].to_numpy(), sub["fold"].to_numpy())
            assert row[f"{metric}_mean"] == pytest.approx(mean, abs=1e-12)
            assert row[f"{metric}_hw"] == pytest.approx(hw, abs=1e-12)


def test_table_falls_back_to_largest_size_or_takes_the_requested_one():
    small = frame_from_folds({k: v for k, v in HAND.items() if k[2] == 100})
    table = make_table(small, "K562")
    assert table.size == 100 and "largest size" in table.size_note
    assert make_table(frame_from_folds(HAND), "K562", size=100).size == 100
    with pytest.raises(InputError, match="size 400"):
        make_table(frame_from_folds(HAND), "K562", size=400)


def test_best_is_bold_higher_pearson_lower_mae(results):
    table = make_table(results, "RPE1")
    md = to_markdown(table)
    for metric in TABLE_METRICS:
        shown = np.round(table.rows[f"{metric}_mean"].to_numpy(), 3)
        best = shown.max() if metric.startswith("pearson") else shown.min()
        expected = shown == best
        assert table.rows[f"{metric}_best"].to_list() == expected.tolist(), metric
        for label, value, is_best in zip(table.rows["label"], shown, expected):
            line = next(ln for ln in md.splitlines() if ln.startswith(f"| {label} |"))
            assert (f"**{value:.3f}**" in line) == bool(is_best), (metric, label)


def test_ties_at_shown_precision_are_all_bold():
    # nonctrl_mean 0.5 and gp 0.5 on pearson_de: both best; on MAE, both too (1 - v).
    tied = {("gp", "text", 1400): [[0.5], [0.5]], ("nonctrl_mean", "none", 1400): [[0.4], [0.6]]}
    table = make_table(frame_from_folds(tied), "K562")
    assert table.rows["pearson_de_best"].to_list() == [True, True]
    assert table.rows["mae_de_best"].to_list() == [True, True]


def test_markdown_layout_and_undefined_footnote(results):
    table = make_table(results, "K562")
    md = to_markdown(table).splitlines()
    assert md[0].startswith("**Table 1: Model performance metrics (400 training perturbations, K562")
    assert "| Model | Cor top 20 | Cor | MAE top 20 | MAE |" in md
    body = [ln for ln in md if ln.startswith("| ") and not ln.startswith("| Model")]
    assert [ln.split(" | ")[0][2:] for ln in body] == table.rows["label"].to_list()
    at = results.filter((pl.col("screen") == "K562") & (pl.col("size") == 400))
    n_de, n_all, n = at["undefined_de"].sum(), at["undefined_all"].sum(), at.height
    assert f"{n_de} of {n} top-20 and {n_all} of {n} all-gene correlations" in md[-1]
    assert make_table(results, "RPE1").caption.startswith("Table S1")


def test_paper_row_order(results):
    labels = make_table(results, "K562").rows["label"].to_list()
    assert labels[:3] == [
        "Simple baseline (random pert)",
        "Simple baseline (non-ctrl mean)",
        "Simple baseline (control)",
    ]
    assert labels[-3:] == ["GP+LLM (text)", "GP+LLM (sequence)", "GP+LLM (text + sequence)"]
    assert labels.index("kNN (k=1, text)") < labels.index("Linear (text)") < labels.index("kNN (k=1, sequence)")


def test_csv_parses_back_to_the_table(results, tmp_path):
    table = make_table(results, "K562")
    back = pl.read_csv(write_csv(table, tmp_path / "t.csv"))
    assert back["screen"].unique().to_list() == ["K562"] and back["size"].unique().to_list() == [400]
    assert back["label"].to_list() == table.rows["label"].to_list()
    for metric in TABLE_METRICS:
        for col in (f"{metric}_mean", f"{metric}_hw"):
            np.testing.assert_allclose(back[col].to_numpy(), table.rows[col].to_numpy(), rtol=1e-12)


def test_terminal_rendering(results):
    table = make_table(results, "K562")
    text = format_table_for_terminal(table)
    assert "\x1b[" not in text  # plain text, no colour codes
    for label in table.rows["label"]:
        assert label in text
    best = table.rows.filter(pl.col("pearson_de_best"))["pearson_de_mean"][0]
    assert f"*{best:.3f}*" in text
    rich = rich_table(table)
    assert rich.row_count == table.rows.height and len(rich.columns) == 1 + len(TABLE_METRICS)


def test_screens_in_paper_order(results):
    extra = results.head(3).with_columns(pl.lit("A549").alias("screen"))
    assert screens(pl.concat([extra, results])) == ["K562", "RPE1", "A549"]


@pytest.mark.parametrize("column", ["pearson_de", "mae_all", "fold", "undefined_de"])
def test_missing_column_is_named(results, column):
    with pytest.raises(InputError, match=column):
        make_table(results.drop(column), "K562")


def test_required_columns_are_what_the_sweep_writes():
    # The sweep's documented row columns (gpllm/evaluate/rows.py) minus the optional extras.
    assert set(REQUIRED_COLUMNS) == {
        "screen",
        "model",
        "embedding",
        "size",
        "fold",
        "pert",
        "pearson_de",
        "pearson_all",
        "mae_de",
        "mae_all",
        "undefined_de",
        "undefined_all",
        "effect_size",
    }


def test_bad_frames_raise_input_error(results):
    with pytest.raises(InputError, match="empty"):
        summarize(results.head(0))
    with pytest.raises(InputError, match="'HeLa'"):
        make_table(results, "HeLa")
    with pytest.raises(InputError, match="more than once"):
        summarize(pl.concat([results.head(2), results.head(1)]))
    with pytest.raises(InputError, match="null"):
        summarize(results.head(4).with_columns(model=pl.lit(None, pl.String)))
    with pytest.raises(InputError, match="DataFrame"):
        summarize({"pearson_de": [0.1]})
    with pytest.raises(InputError, match="none of the metric columns"):
        summarize(results.select("screen", "model", "embedding", "size", "fold", "pert"))


def test_nan_in_a_point_metric_names_the_configuration(results):
    bad = results.with_columns(
        pearson_all=pl.when((pl.col("model") == "linear") & (pl.col("pert") == "K562_g003"))
        .then(float("nan"))
        .otherwise(pl.col("pearson_all"))
    )
    with pytest.raises(InputError, match="model='linear'.*metric='pearson_all'"):
        summarize(bad, ["pearson_all"])
