"""Results tables compared: same rows in order, floats within a relative tolerance, NaN matching NaN."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from gpllm.evaluate.compare import table_differences


@pytest.fixture
def table() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model": ["gp", "gp", "ridge"],
            "size": [10, 10, 10],
            "pert": ["A", "B", "A"],
            "pearson_de": [0.5, 0.25, 0.125],
            "nll": [1.0, np.nan, np.nan],
            "hyperparameters": ['{"lml": 1.0}', "", ""],
        }
    )


def test_equal_tables_and_rounding_within_tolerance_agree(table):
    nudged = table.with_columns(
        pl.col("pearson_de") * (1 + 1e-9), pl.lit('{"lml": 1.0000001}').alias("hyperparameters")
    )
    assert table_differences(table, table) == []
    assert table_differences(table, nudged) == []  # NaN matches NaN; the record is left out


def test_a_metric_beyond_tolerance_is_named_with_its_count(table):
    moved = table.with_columns(pl.Series("pearson_de", [0.5, 0.26, 0.125]))
    assert table_differences(table, moved) == [
        "pearson_de: 1 of 3 values differ by more than rtol=1e-06 (largest 0.01)"
    ]
    assert table_differences(table, moved, rtol=0.1) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.reverse(), r"rows differ in \['model'\]"),
        (lambda t: t.head(2), "3 rows against 2"),
        (lambda t: t.drop("nll"), "columns differ"),
        (lambda t: t.with_columns(pl.lit(np.nan).alias("pearson_de")), "pearson_de: 3 of 3"),
    ],
)
def test_other_rows_columns_or_nan_against_a_number_are_named(table, change, message):
    (problem,) = table_differences(table, change(table))
    assert re.search(message, problem), problem
