"""Embedding blocks, alignment with a missing-gene policy, coverage report, PCA, build_embedding.

PCA is checked against scikit-learn's PCA and numpy's eigendecomposition of the
covariance (independent of our SVD path), up to the sign of each component.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gpllm.data.embeddings.assemble import (
    Embedding,
    align,
    build_embedding,
    concat,
    coverage,
    coverage_report,
    pca,
)
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.errors import DataError, EmbeddingError, InputError, ShapeError


def _source(names, d, seed, source="src"):
    return GeneVectors(tuple(names), np.random.default_rng(seed).normal(size=(len(names), d)), source)


PERTS = ("A", "B", "C", "D", "E", "F")


@pytest.fixture
def sources():
    text = _source(["A", "B", "C", "D", "E", "F", "X"], 12, 0, "genept.pickle")  # X: not perturbed
    seq = _source(["F", "B", "A", "E", "D"], 9, 1, "per-protein.h5")  # no C
    return {"text": text, "sequence": seq}


# ------------------------------------------------------------------ Embedding
def test_embedding_blocks_select_and_block():
    Z = np.arange(12.0).reshape(3, 4)
    e = Embedding(Z, ["a", "b", "c"], [("text", 0, 3), ("sequence", 3, 4)], {"k": 3})
    assert e.dim == 4 and e.block_names == ("text", "sequence")
    assert e.block_slice("sequence") == slice(3, 4)
    t = e.block("text")
    np.testing.assert_array_equal(t.Z, Z[:, :3])
    assert t.blocks == (("text", 0, 3),) and t.names == e.names
    s = e.select(["c", "a"])
    np.testing.assert_array_equal(s.Z, Z[[2, 0]])
    assert s.names == ("c", "a") and s.blocks == e.blocks
    with pytest.raises(ValueError):
        e.Z[0, 0] = 1.0
    with pytest.raises(InputError, match="no block 'image'"):
        e.block("image")
    with pytest.raises(EmbeddingError, match="'zz'"):
        e.select(["a", "zz"])


@pytest.mark.parametrize(
    "blocks, msg",
    [
        ([("t", 0, 2)], "blocks cover 2 columns, Z has 3"),
        ([("t", 0, 2), ("s", 1, 3)], "expected to start at 2"),
        ([("t", 0, 0), ("s", 0, 3)], "non-empty"),
    ],
)
def test_embedding_rejects_bad_blocks(blocks, msg):
    with pytest.raises(ShapeError, match=msg):
        Embedding(np.ones((2, 3)), ["a", "b"], blocks)


def test_embedding_rejects_duplicates_and_nan():
    with pytest.raises(DataError, match="duplicated block names"):
        Embedding(np.ones((2, 2)), ["a", "b"], [("t", 0, 1), ("t", 1, 2)])
    with pytest.raises(DataError, match="duplicated perturbation names: 'a'"):
        Embedding(np.ones((2, 1)), ["a", "a"], [("t", 0, 1)])
    Z = np.ones((2, 1))
    Z[1, 0] = np.nan
    with pytest.raises(InputError, match="'b'"):
        Embedding(Z, ["a", "b"], [("t", 0, 1)])


def test_concat_keeps_block_boundaries():
    a = Embedding(np.ones((2, 3)), ["x", "y"], [("text", 0, 3)], {"source": "g.pickle"})
    b = Embedding(np.zeros((2, 2)), ["x", "y"], [("sequence", 0, 2)], {"source": "p.h5"})
    c = concat(a, b)
    assert c.blocks == (("text", 0, 3), ("sequence", 3, 5))
    np.testing.assert_array_equal(c.block("text").Z, a.Z)
    np.testing.assert_array_equal(c.block("sequence").Z, b.Z)
    assert c.provenance["sequence"]["source"] == "p.h5"
    with pytest.raises(ShapeError, match="align them first"):
        concat(a, b.select(["y", "x"]))
    with pytest.raises(DataError, match="duplicated block names"):
        concat(a, a)


# ---------------------------------------------------------------- alignment
def test_coverage_counts_and_names_missing(sources):
    cov = {c.source: c for c in coverage(PERTS, sources)}
    assert (cov["text"].n_found, cov["text"].missing) == (6, ())
    assert (cov["sequence"].n_found, cov["sequence"].missing) == (5, ("C",))
    report = coverage_report(list(cov.values()), "drop")
    assert "text: 6/6 perturbations embedded (100.0%), 0 missing" in report
    assert "sequence: 5/6 perturbations embedded (83.3%), 1 missing (e.g. 'C')" in report
    assert "1 of 6 perturbations dropped" in report


def test_align_drop_is_default_counted_and_logged(sources, caplog):
    with caplog.at_level(logging.INFO, logger="gpllm.data.embeddings.assemble"):
        kept, X, cov = align(sources, PERTS)
    assert kept == ("A", "B", "D", "E", "F")  # order of the perturbation list, C dropped
    for name, v in sources.items():
        np.testing.assert_array_equal(X[name], v.subset(kept).X)
    assert "1 of 6 perturbations dropped" in caplog.text and "'C'" in caplog.text
    assert [r.levelno for r in caplog.records] == [logging.WARNING]  # missing genes are a warning


def test_align_mean_imputes_with_source_mean(sources, caplog):
    with caplog.at_level(logging.INFO, logger="gpllm.data.embeddings.assemble"):
        kept, X, _ = align(sources, PERTS, missing="mean")
    assert kept == PERTS
    seq = sources["sequence"]
    found = ["A", "B", "D", "E", "F"]
    np.testing.assert_allclose(X["sequence"][2], seq.subset(found).X.mean(axis=0))  # C
    np.testing.assert_array_equal(X["sequence"][[0, 1, 3, 4, 5]], seq.subset(found).X)
    np.testing.assert_array_equal(X["text"], sources["text"].subset(PERTS).X)
    assert "1 row(s) imputed" in caplog.text


def test_align_full_coverage_logs_info_only(sources, caplog):
    with caplog.at_level(logging.INFO, logger="gpllm.data.embeddings.assemble"):
        kept, _, _ = align({"text": sources["text"]}, PERTS)
    assert kept == PERTS
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "0 of 6 perturbations dropped" in caplog.text


def test_align_argument_errors(sources):
    with pytest.raises(InputError, match="'drop' or 'mean'"):
        align(sources, PERTS, missing="zero")
    with pytest.raises(InputError, match="at least one"):
        align({}, PERTS)
    with pytest.raises(DataError, match="duplicated perturbation names: 'A'"):
        align(sources, ["A", "B", "A"])
    disjoint = {"a": _source(["A", "B"], 3, 0), "b": _source(["C", "D"], 3, 1)}
    with pytest.raises(EmbeddingError, match="no perturbation is embedded by every source"):
        align(disjoint, ["A", "B", "C", "D"])


# ---------------------------------------------------------------- PCA
def _sign_align(A, B):
    """B's columns flipped to match A's signs (PCA components are defined up to sign)."""
    s = np.sign(np.sum(A * B, axis=0))
    return B * s


@pytest.mark.parametrize("shape, k", [((40, 30), 5), ((25, 60), 10), ((30, 8), 8)])
def test_pca_matches_sklearn(shape, k):
    from sklearn.decomposition import PCA as SkPCA

    X = np.random.default_rng(3).normal(size=shape) @ np.diag(np.linspace(3, 0.5, shape[1]))
    ours = pca(X, k)
    sk = SkPCA(n_components=k, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.explained_variance, sk.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.mean, sk.mean_, rtol=1e-12)
    np.testing.assert_allclose(ours.components, _sign_align(ours.components.T, sk.components_.T).T, atol=1e-9)
    np.testing.assert_allclose(ours.scores, _sign_align(ours.scores, sk.transform(X)), atol=1e-9)


def test_pca_matches_covariance_eigendecomposition():
    """An independent route: eigenvectors of the sample covariance."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 6)) @ rng.normal(size=(6, 6)) + 10.0
    ours = pca(X, 4)
    w, V = np.linalg.eigh(np.cov(X, rowvar=False))
    order = np.argsort(w)[::-1][:4]
    np.testing.assert_allclose(ours.explained_variance, w[order], rtol=1e-9)
    np.testing.assert_allclose(ours.components.T, _sign_align(ours.components.T, V[:, order]), atol=1e-8)
    # sign convention: the largest-magnitude loading of each component is positive
    C = ours.components
    assert np.all(C[np.arange(4), np.argmax(np.abs(C), axis=1)] > 0)


def test_pca_caps_k_and_validates(caplog):
    X = np.random.default_rng(5).normal(size=(6, 10))
    with caplog.at_level(logging.INFO):
        res = pca(X, 50)
    assert res.scores.shape == (6, 6) and "using 6 components" in caplog.text
    with pytest.raises(InputError, match="k must be >= 1"):
        pca(X, 0)
    with pytest.raises(ShapeError, match=">= 2 rows"):
        pca(X[:1], 2)


# ---------------------------------------------------------------- build_embedding
def test_build_embedding_pca_blocks_and_provenance(sources):
    e = build_embedding(sources, PERTS, k=3)
    assert e.names == ("A", "B", "D", "E", "F")
    assert e.blocks == (("text", 0, 3), ("sequence", 3, 6))
    assert e.provenance["dropped"] == ("C",) and e.provenance["n_dropped"] == 1
    assert e.provenance["sequence"]["n_missing"] == 1 and e.provenance["text"]["raw_dim"] == 12
    for name in ("text", "sequence"):
        ref = pca(sources[name].subset(e.names).X, 3)
        Zb = e.block(name).Z
        np.testing.assert_allclose(Zb, ref.scores / np.sqrt(ref.explained_variance.sum()), atol=1e-12)
        # 'block' scaling: each block's total variance is 1, whatever its raw scale
        np.testing.assert_allclose(Zb.var(axis=0, ddof=1).sum(), 1.0, rtol=1e-10)


def test_build_embedding_unscaled_raw_and_mean(sources):
    e = build_embedding(sources, PERTS, k=None, scale="none", missing="mean")
    assert e.names == PERTS and e.dim == 12 + 9 and e.provenance["n_dropped"] == 0
    X = align(sources, PERTS, missing="mean")[1]["sequence"]
    np.testing.assert_allclose(e.block("sequence").Z, X - X.mean(axis=0), atol=1e-12)
    with pytest.raises(InputError, match="scale"):
        build_embedding(sources, PERTS, scale="unit")


def test_build_embedding_default_k_is_50():
    rng = np.random.default_rng(6)
    names = [f"G{i}" for i in range(80)]
    v = GeneVectors(tuple(names), rng.normal(size=(80, 100)), "big")
    assert build_embedding({"text": v}, names).blocks == (("text", 0, 50),)
