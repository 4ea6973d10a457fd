"""GeneVectors: validation on construction, immutability, subset, dimension check, placeholders."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.errors import DataError, EmbeddingError, NonFiniteError, ShapeError


def _vec(n: int = 4, d: int = 3, source: str = "toy.pickle") -> GeneVectors:
    X = np.arange(n * d, dtype=float).reshape(n, d) + 1.0  # no all-zero row
    return GeneVectors(tuple(f"G{i}" for i in range(n)), X, source)


def test_stores_float64_copy_read_only():
    X = np.ones((2, 3), dtype=np.float32)
    v = GeneVectors(["A", "B"], X)
    X[0, 0] = 5.0
    assert v.X.dtype == np.float64 and v.X[0, 0] == 1.0  # a copy, not a view of the caller's array
    assert v.names == ("A", "B") and isinstance(v.names, tuple)
    assert (len(v), v.dim) == (2, 3)
    with pytest.raises(ValueError):
        v.X[0, 0] = 2.0


def test_subset_reorders_rows_with_their_names():
    v = _vec()
    s = v.subset(["G3", "G1"])
    assert s.names == ("G3", "G1")
    np.testing.assert_array_equal(s.X, v.X[[3, 1]])
    assert s.source == v.source


def test_subset_names_the_missing_gene_and_source():
    with pytest.raises(EmbeddingError, match=r"toy\.pickle.*'NOPE'"):
        _vec().subset(["G0", "NOPE"])


def test_check_dim():
    v = _vec(d=3)
    assert v.check_dim(3) is v and v.check_dim(None) is v
    with pytest.raises(EmbeddingError, match=r"toy\.pickle: vectors are 3-dimensional, expected 1536"):
        v.check_dim(1536)


def test_drop_zero_rows_logs_what_went(caplog):
    X = np.array([[0.0, 0.0], [1.0, 2.0], [0.0, 0.0], [0.0, -1.0]])
    v = GeneVectors(["ctrl", "A", "pad", "B"], X, "f.csv")
    with caplog.at_level(logging.WARNING):
        out = v.drop_zero_rows()
    assert out.names == ("A", "B")
    np.testing.assert_array_equal(out.X, X[[1, 3]])
    assert "dropped 2 all-zero" in caplog.text and "'ctrl'" in caplog.text and "'pad'" in caplog.text
    assert out.drop_zero_rows() is out  # nothing left to drop


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_gene_and_source(bad):
    X = np.ones((3, 2))
    X[1, 0] = bad
    with pytest.raises(NonFiniteError, match=r"toy\.h5.*'B'"):
        GeneVectors(["A", "B", "C"], X, "toy.h5")


def test_duplicate_names_refused():
    with pytest.raises(DataError, match=r"toy\.csv: 1 duplicated gene names: 'A'"):
        GeneVectors(["A", "B", "A"], np.ones((3, 2)), "toy.csv")


@pytest.mark.parametrize("X", [np.ones(3), np.ones((2, 2)), np.ones((3, 2, 1))])
def test_shape_mismatch(X):
    with pytest.raises(ShapeError, match="expected \\(3, D\\)"):
        GeneVectors(["A", "B", "C"], X)
