"""benchmarks.compare_results bounds each float column's difference relative to the column's scale."""

from __future__ import annotations

import numpy as np
import polars as pl

from benchmarks.compare_results import compare, float_differences


def _frame(values: list[float]) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame(
        {"screen": ["K562"] * n, "model": ["m"] * n, "pert": [f"p{i}" for i in range(n)], "nll": values}
    )


def test_normwise_difference_is_relative_to_the_column_scale():
    x = np.array([2.0, 1e-14, np.nan, -0.5])
    y = np.array([2.0, 2e-14, np.nan, -0.5])
    d = float_differences(x, y)
    assert d.abs_max == 1e-14
    assert np.isclose(d.normwise, 1e-14 / 2.0)
    assert np.isclose(d.rel_max, 0.5)  # the near-zero entry, elementwise
    assert (d.not_identical, d.same_nan) == (1, True)


def test_compare_passes_a_near_zero_rounding_difference_and_fails_a_large_one():
    before = _frame([1.0, 1e-15, 3.0])
    lines, ok = compare(before, _frame([1.0, 2e-15, 3.0]), rtol=1e-12)
    assert ok, lines
    assert any("normwise" in line and "elementwise rel" in line for line in lines)
    _, ok = compare(before, _frame([1.0, 1e-15, 3.0 + 1e-9]), rtol=1e-12)
    assert not ok
    _, ok = compare(before, _frame([1.0, np.nan, 3.0]), rtol=1e-12)
    assert not ok  # a NaN where a number was
