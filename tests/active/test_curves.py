"""Learning curves and the measurements-to-reach table on hand-made results."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from gpllm.active.curves import learning_curves, measurements_to_reach, printable
from gpllm.active.figures import learning_curves_png
from gpllm.errors import InputError


def frame(curves: dict[str, list[list[float]]], sizes=(10, 20, 30, 40)) -> pl.DataFrame:
    """Rows of results: curves[acquisition][repeat] = pearson_de at each size."""
    rows = [
        {"acquisition": a, "repeat": r, "n_measured": n, "pearson_de": v, "mae_de": 1 - v, "strong_found": n / 100}
        for a, reps in curves.items()
        for r, values in enumerate(reps)
        for n, v in zip(sizes, values)
    ]
    return pl.DataFrame(rows)


RESULTS = frame(
    {
        # random's mean at the budget (40) is 0.5: targets 0.45 (90%) and 0.475 (95%)
        "random": [[0.1, 0.3, 0.44, 0.5], [0.1, 0.3, 0.46, 0.5]],  # mean 0.45 at 30: reaches 90% there
        "fast": [[0.3, 0.46, 0.49, 0.6], [0.3, 0.48, 0.5, 0.6]],  # 0.47 at 20 (90%), 0.495 at 30 (95%)
        "slow": [[0.1, 0.2, 0.3, 0.44], [0.1, 0.2, 0.3, 0.44]],  # never reaches 0.45
    }
)


def test_measurements_to_reach_on_a_hand_made_case():
    table = measurements_to_reach(RESULTS)
    assert table["acquisition"].to_list() == ["random", "fast", "slow"]
    assert table["n_to_90%"].to_list() == [30, 20, None]
    assert table["n_to_95%"].to_list() == [40, 30, None]
    assert table["pearson_de_at_budget"].to_list() == pytest.approx([0.5, 0.6, 0.44])
    assert table["target_90%"].to_list() == pytest.approx([0.45] * 3)
    shown = printable(table)
    assert shown["n_to_90%"].to_list() == ["30", "20", "not reached"]


def test_table_needs_its_reference():
    with pytest.raises(InputError, match="'random'"):
        measurements_to_reach(RESULTS.filter(pl.col("acquisition") != "random"))


def test_learning_curves_mean_and_band_over_repeats():
    curves = learning_curves(RESULTS, ["pearson_de"])
    row = curves.filter((pl.col("acquisition") == "fast") & (pl.col("n_measured") == 20)).row(0, named=True)
    values = np.array([0.46, 0.48])
    assert row["pearson_de"] == pytest.approx(values.mean())
    assert row["pearson_de_hw"] == pytest.approx(1.96 * values.std(ddof=1) / np.sqrt(2))
    assert row["repeats"] == 2


def test_learning_curves_need_their_columns():
    with pytest.raises(InputError, match="mae_de"):
        learning_curves(RESULTS.drop("mae_de"))


def test_learning_curve_png_is_written(tmp_path):
    path = learning_curves_png(RESULTS, tmp_path / "curves.png", title="hand-made")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # three panels drawn, not an empty canvas
