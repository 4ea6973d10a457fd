"""Chunked pseudobulk against scanpy/numpy/scipy references, and bounded reads."""

from __future__ import annotations

import numpy as np
import pytest
import scanpy as sc
import scipy.stats

from gpllm.data.screens.de import top_k_abs, welch_t
from gpllm.data.screens.hvg import hvg_from_moments, moment_space
from gpllm.data.screens.labels import ObsSpec, parse_labels
from gpllm.data.screens.perturbseq import read_screen, screen_from_anndata
from gpllm.data.screens.pseudobulk import accumulate_moments, make_groups, normalise_log1p
from tests.data.conftest import dense, groupby_mean, nb_screen, scanpy_lognorm

# the reference rank_genes_groups fills its table column by column
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")


@pytest.mark.filterwarnings("ignore:Some cells have zero counts")
@pytest.mark.filterwarnings("ignore::scipy.sparse.SparseEfficiencyWarning")
@pytest.mark.parametrize("sparse", [True, False])
def test_normalise_log1p_matches_scanpy(sparse):
    a = nb_screen(n_per=5, n_ctrl=5, n_genes=40, sparse=sparse)
    a.X[3] = 0  # a zero-total cell stays zero, as in scanpy
    got, _, n_zero = normalise_log1p(a.X, 1e4)
    assert n_zero == 1
    np.testing.assert_allclose(dense(got), dense(scanpy_lognorm(a).X), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 37, 10_000])
def test_moments_equal_numpy_group_mean_and_variance(sparse, chunk_size):
    a = nb_screen(n_per=9, n_ctrl=12, n_genes=30, sparse=sparse, seed=1)
    groups = make_groups(parse_labels(a.obs, ObsSpec()))
    K = len(groups.names)
    mom = accumulate_moments(a.X, groups.codes, K, genes=list(a.var_names), lognorm=False, chunk_size=chunk_size)
    ref = dense(scanpy_lognorm(a).X)
    mean, var = mom.mean_var()
    for k in range(K):
        rows = ref[groups.codes == k]
        assert mom.n[k] == rows.shape[0]
        np.testing.assert_allclose(mean[k], rows.mean(axis=0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(var[k], rows.var(axis=0, ddof=1), rtol=1e-8, atol=1e-10)
    gm, gv = mom.gene_moments("expm1")
    np.testing.assert_allclose(gm, np.expm1(ref).mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(gv, np.expm1(ref).var(axis=0, ddof=1), rtol=1e-8)


def test_moments_skip_rows_outside_the_selection():
    a = nb_screen(n_per=6, n_ctrl=8, n_genes=20, seed=2)
    rows = np.arange(0, a.n_obs, 3)
    codes = np.arange(rows.size) % 2
    mom = accumulate_moments(a.X, codes, 2, genes=list(a.var_names), lognorm=False, chunk_size=4, rows=rows)
    ref = dense(scanpy_lognorm(a).X)[rows]
    np.testing.assert_allclose(mom.mean_var()[0], groupby_mean(ref, codes).to_numpy(), rtol=1e-10)


class _RowsOnly:
    """A matrix that records every row slice read and refuses anything larger than ``limit``."""

    def __init__(self, X, limit):
        self.X, self.limit, self.reads = X, limit, []
        self.shape = X.shape

    def __getitem__(self, key):
        assert isinstance(key, slice), f"non-slice read {key!r}"
        n = len(range(*key.indices(self.shape[0])))
        assert n <= self.limit, f"read {n} rows at once, limit {self.limit}"
        self.reads.append(n)
        return self.X[key]


def test_streaming_reads_at_most_chunk_size_rows_and_reports_progress():
    a = nb_screen(n_per=10, n_ctrl=10, n_genes=20, seed=3)
    groups = make_groups(parse_labels(a.obs, ObsSpec()))
    X = _RowsOnly(a.X, limit=16)
    progress = []
    accumulate_moments(
        X,
        groups.codes,
        len(groups.names),
        genes=list(a.var_names),
        lognorm=False,
        chunk_size=16,
        on_chunk=lambda done, total: progress.append((done, total)),
    )
    assert sum(X.reads) == a.n_obs and max(X.reads) == 16
    assert progress[-1] == (a.n_obs, a.n_obs)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_welch_t_matches_scipy():
    rng = np.random.default_rng(4)
    x0 = rng.normal(size=(40, 6))
    groups = [rng.normal(0.3 * k, 1 + k, size=(10 + 5 * k, 6)) for k in range(3)]
    t = welch_t(
        np.stack([g.mean(0) for g in groups]),
        np.stack([g.var(0, ddof=1) for g in groups]),
        np.array([len(g) for g in groups]),
        x0.mean(0),
        x0.var(0, ddof=1),
        len(x0),
    )
    ref = np.stack([scipy.stats.ttest_ind(g, x0, equal_var=False).statistic for g in groups])
    np.testing.assert_allclose(t, ref, rtol=1e-12)


def test_top_k_abs_ranks_by_magnitude():
    scores = np.array([[0.1, -5.0, 3.0, -0.2], [2.0, 0.0, -2.5, 1.0]])
    np.testing.assert_array_equal(top_k_abs(scores, 3), [[1, 2, 3], [2, 0, 3]])


@pytest.mark.parametrize("k", [1, 5, 20, 40])
@pytest.mark.parametrize("values", ["continuous", "ties"])
def test_top_k_abs_is_the_stable_full_sort_in_blocks(k, values, monkeypatch):
    """Partition + sort of the chosen equals the stable full argsort, ties at the k-th place included."""
    from gpllm.data.screens import de

    monkeypatch.setattr(de, "TOP_K_BLOCK_ROWS", 7)  # several blocks and a ragged last one
    rng = np.random.default_rng(k)
    scores = rng.standard_normal((30, 40))
    if values == "ties":  # few distinct magnitudes: most rows tie across the k-th place
        scores = np.round(scores * 2) / 2
    want = np.argsort(-np.abs(scores), axis=1, kind="stable")[:, :k]
    got = top_k_abs(scores, k)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.filterwarnings("ignore::scipy.sparse.SparseEfficiencyWarning")
@pytest.mark.parametrize("flavor", ["seurat", "cell_ranger"])
def test_hvg_from_moments_matches_scanpy(flavor):
    a = nb_screen(n_per=10, n_ctrl=20, n_genes=200, seed=5)
    a.X[:, 7] = 0  # an unexpressed gene: undefined dispersion, never selected
    ref = scanpy_lognorm(a)
    want = sc.pp.highly_variable_genes(ref, n_top_genes=50, flavor=flavor, inplace=False)["highly_variable"]
    X = dense(ref.X)
    vals = np.expm1(X) if moment_space(flavor) == "expm1" else X
    got = hvg_from_moments(vals.mean(0), vals.var(0, ddof=1), 50, flavor)
    np.testing.assert_array_equal(got, np.asarray(want))
    assert not got[7]


def _reference(adata, n_hvg, flavor):
    """scanpy end to end: normalise, log1p, HVG, groupby mean, rank_genes_groups t-test."""
    ref = scanpy_lognorm(adata)
    hvg = sc.pp.highly_variable_genes(ref, n_top_genes=n_hvg, flavor=flavor, inplace=False)
    ref = ref[:, np.asarray(hvg["highly_variable"])].copy()
    ref.obs["g"] = ref.obs["gene"].astype("category")
    sc.tl.rank_genes_groups(ref, "g", reference="non-targeting", method="t-test", rankby_abs=True, n_genes=20)
    return ref, groupby_mean(ref.X, ref.obs["gene"])


@pytest.mark.parametrize("flavor", ["seurat", "cell_ranger"])
@pytest.mark.parametrize("sparse", [True, False])
def test_backed_chunked_equals_in_memory_and_scanpy(tmp_path, flavor, sparse):
    a = nb_screen(n_genes=300, sparse=sparse, seed=6)
    path = tmp_path / "cells.h5ad"
    a.write_h5ad(path)
    kw = dict(n_hvg=100, hvg_flavor=flavor)
    streamed = read_screen(path, chunked=True, chunk_size=29, **kw).singles
    memory = screen_from_anndata(a, **kw).singles
    ref, means = _reference(a, 100, flavor)

    assert streamed.provenance["chunked"] and not memory.provenance["chunked"]
    assert streamed.genes == memory.genes == tuple(ref.var_names)
    assert streamed.perts == memory.perts
    want_Y = means.loc[list(memory.perts)].to_numpy()
    for got in (streamed, memory):
        np.testing.assert_allclose(got.Y, want_Y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got.ctrl, means.loc["non-targeting"].to_numpy(), rtol=1e-10, atol=1e-12)
        want_de = [[got.genes.index(g) for g in ref.uns["rank_genes_groups"]["names"][p]] for p in got.perts]
        np.testing.assert_array_equal(got.de, want_de)
        assert got.provenance["de_method"] == "t-test"
