"""The calibration table and reliability diagram, against a plain-numpy summary of the rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gpllm.errors import InputError
from gpllm.evaluate.metrics import COVERAGE_LEVELS
from gpllm.report.calibration import (
    ALL_GENES,
    DE_GENES,
    calibration_markdown,
    calibration_notes,
    calibration_table,
    draw_reliability,
    reliability_points,
)
from gpllm.report.write import write_report
from tests.report.helpers import make_example_results, reference_summary, with_calibration


@pytest.fixture(scope="module")
def results():
    return with_calibration(make_example_results())


def test_table_cells_are_the_mean_and_1_96_se_of_fold_means(results):
    table = calibration_table(results, "K562", size=200)
    row = table.rows.filter(model="gp", embedding="text").row(0, named=True)
    rows = results.filter(screen="K562", model="gp", embedding="text", size=200)
    for metric in (*ALL_GENES, *DE_GENES):
        mean, hw = reference_summary(rows[metric].to_numpy(), rows["fold"].to_numpy())
        assert np.isclose(row[f"{metric}_mean"], mean) and np.isclose(row[f"{metric}_hw"], hw), metric


def test_models_without_a_variance_or_recalibration_are_named(results):
    table = calibration_table(results, "K562", size=200)
    assert "control" not in table.rows["model"].to_list()
    knn = table.rows.filter(model="knn_k1", embedding="text").row(0, named=True)
    assert knn["nll_mean"] is not None and knn["nll_recal_mean"] is None
    notes = calibration_notes(results, "K562", 200)
    assert any("No predictive variance" in n and "Simple baseline (control)" in n for n in notes)
    assert any("Not recalibrated" in n and "kNN (k=1, text)" in n for n in notes)
    text = calibration_markdown(table, notes)
    assert "*All genes*" in text and "*Top 20 DE genes*" in text and "Not recalibrated" in text
    assert text.count("| GP+LLM (text) |") == 2  # a row in each block


def test_no_variance_anywhere_is_a_clear_error(results):
    no_var = results.with_columns(pl.lit(float("nan")).alias("nll"))
    with pytest.raises(InputError, match="no model on screen 'K562' has a predictive variance"):
        calibration_table(no_var, "K562")


def test_reliability_points_are_fold_means_per_level(results):
    pts = reliability_points(results, "RPE1", 400, recalibrated=True)
    rows = results.filter(screen="RPE1", model="ridge", embedding="text", size=400)
    got = pts.filter(model="ridge", embedding="text").sort("level")
    want = [
        reference_summary(rows[f"coverage{round(100 * lv)}_recal"].to_numpy(), rows["fold"].to_numpy())[0]
        for lv in COVERAGE_LEVELS
    ]
    np.testing.assert_allclose(got["coverage"].to_numpy(), want)
    assert pts.filter(model="knn_k1").height == 0  # not recalibrated: no line


def test_reliability_figure_has_a_raw_and_a_recalibrated_row_per_embedding(results):
    fig = draw_reliability(results, screen="K562")
    axes = fig.get_axes()
    assert len(axes) == 2 * 3
    top_text = axes[0]
    labels = [line.get_label() for line in top_text.lines if not line.get_label().startswith("_")]
    # Baselines with a variance, and every model on the text embedding (the diagonal is unlabelled).
    assert set(labels) == {
        "Simple baseline (random pert)",
        "Simple baseline (non-ctrl mean)",
        "kNN (k=1)",
        "Linear",
        "Ridge",
        "GP+LLM",
    }
    bottom_text = axes[3]
    assert "kNN (k=1)" not in [line.get_label() for line in bottom_text.lines]


def test_write_report_adds_calibration_outputs_only_when_the_columns_exist(results, tmp_path):
    paths = write_report(results, tmp_path / "with")
    for screen in ("K562", "RPE1"):
        for key in (f"calibration_{screen}_md", f"calibration_{screen}_csv", f"reliability_{screen}"):
            assert paths[key].is_file() and paths[key].stat().st_size > 0
    csv = pl.read_csv(paths["calibration_K562_csv"])
    assert {"nll_mean", "crps_de_recal_mean", "var_scale_mean"} <= set(csv.columns)
    older = write_report(make_example_results(), tmp_path / "without")
    assert not any(key.startswith(("calibration", "reliability")) for key in older)
