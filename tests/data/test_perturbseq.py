"""Screens from AnnData: single cells, Replogle-style pseudobulk, real Norman 2019 cells."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

from gpllm.data.screens.labels import NORMAN19, REPLOGLE_BULK, ObsSpec
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.data.screens.perturbseq import detect_lognorm, read_screen, screen_from_anndata
from gpllm.errors import InputError
from tests.data.conftest import dense, groupby_mean, nb_screen, scanpy_lognorm

# the reference rank_genes_groups fills its table column by column
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")

CONTROL_ID = "_non-targeting_non-targeting_non-targeting"


def replogle_bulk(cells: ad.AnnData) -> tuple[ad.AnnData, pd.DataFrame]:
    """Replogle-style bulk rows from cells: two guides per target (2/5 and 3/5 of its cells).

    Returns the bulk AnnData (X = mean raw counts per guide, obs index gene_transcript,
    obs num_cells_filtered, var index Ensembl IDs with var['gene_name']) and the
    reference: raw counts summed per target divided by its cell count.
    """
    rows, ids, ncells = [], [], []
    X = dense(cells.X)
    for t, (target, idx) in enumerate(cells.obs.groupby("gene", observed=True).indices.items()):
        cut = 2 * len(idx) // 5
        for g, part in enumerate((idx[:cut], idx[cut:])):
            rows.append(X[part].mean(axis=0))
            ncells.append(len(part))
            ids.append(f"{t}{g}{CONTROL_ID}" if target == "non-targeting" else f"{t}_{target}_P{g}_ENSG{t:08d}")
    obs = pd.DataFrame({"num_cells_filtered": ncells}, index=pd.Index(ids, name="gene_transcript"))
    var = pd.DataFrame({"gene_name": list(cells.var_names)}, index=[f"ENSG9{j:07d}" for j in range(cells.n_vars)])
    # float64 (Replogle stores float32) so that the comparison below can be exact
    bulk = ad.AnnData(X=np.stack(rows), obs=obs, var=var)
    return bulk, pd.DataFrame(X).groupby(cells.obs["gene"].to_numpy()).mean()


def test_replogle_bulk_pools_guides_weighted_then_normalises():
    cells = nb_screen(n_genes=200, seed=11)
    bulk, pooled = replogle_bulk(cells)
    got = screen_from_anndata(bulk, REPLOGLE_BULK, n_hvg=80, source="bulk.h5ad").singles

    ref = ad.AnnData(
        X=pooled.to_numpy(),
        obs=pd.DataFrame(index=pooled.index.astype(str)),
        var=pd.DataFrame(index=list(cells.var_names)),
    )
    ref = scanpy_lognorm(ref)
    hvg = sc.pp.highly_variable_genes(ref, n_top_genes=80, inplace=False)["highly_variable"].to_numpy()
    ref = ref[:, hvg]
    want = pd.DataFrame(dense(ref.X), index=ref.obs_names, columns=ref.var_names)
    assert got.genes == tuple(want.columns)
    assert sorted(got.perts) == sorted(p for p in want.index if p != "non-targeting")
    delta = want.loc[list(got.perts)].to_numpy() - want.loc["non-targeting"].to_numpy()
    np.testing.assert_allclose(got.Y - got.ctrl, delta, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(got.de, np.argsort(-np.abs(delta), axis=1, kind="stable")[:, :20])
    prov = got.provenance
    assert (prov["input_kind"], prov["de_method"]) == ("bulk", "abs-delta")
    assert "num_cells_filtered" in prov["row_pooling"]
    assert "mean counts" in prov["normalisation"]


def test_bulk_h5ad_read_backed_equals_in_memory(tmp_path):
    bulk, _ = replogle_bulk(nb_screen(n_genes=60, seed=12))
    path = tmp_path / "K562_bulk.h5ad"
    bulk.write_h5ad(path)
    want = screen_from_anndata(bulk, REPLOGLE_BULK, n_hvg=30).singles
    for chunked in (False, True):
        got = read_screen(path, REPLOGLE_BULK, chunked=chunked, n_hvg=30).singles
        assert got.perts == want.perts and got.genes == want.genes
        np.testing.assert_array_equal(got.Y, want.Y)
        np.testing.assert_array_equal(got.de, want.de)
        assert got.provenance["source"] == str(path)


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"de_method": "t-test"}, "'t-test' needs single cells"),
        ({"hvg_flavor": "seurat_v3", "n_hvg": 10}, "'seurat_v3' needs single-cell counts"),
    ],
)
def test_bulk_refuses_single_cell_methods(option, match):
    bulk, _ = replogle_bulk(nb_screen(n_genes=40))
    with pytest.raises(InputError, match=f"bulk.h5ad: .*{match}"):
        screen_from_anndata(bulk, REPLOGLE_BULK, source="bulk.h5ad", **option)


def test_already_lognormalised_input_is_detected_and_gives_the_same_screen(cells):
    from_counts = screen_from_anndata(cells, n_hvg=60).singles
    lognorm = scanpy_lognorm(cells)
    del lognorm.uns["log1p"]  # detection from the values alone
    from_log = screen_from_anndata(lognorm, n_hvg=60).singles
    assert "detected: non-integer" in from_log.provenance["normalisation"]
    assert "detected: integer values" in from_counts.provenance["normalisation"]
    assert from_log.genes == from_counts.genes
    np.testing.assert_allclose(from_log.Y, from_counts.Y, rtol=1e-12)
    np.testing.assert_array_equal(from_log.de, from_counts.de)
    declared = screen_from_anndata(lognorm, lognorm=True, n_hvg=60).singles
    assert declared.provenance["normalisation"].endswith("(declared)")
    np.testing.assert_array_equal(declared.Y, from_log.Y)


def test_detect_lognorm_rules():
    assert detect_lognorm(np.array([[0.0, 3.0, 12.0]]), {}, "f")[0] is False
    assert detect_lognorm(np.array([[0.0, 0.7, 2.3]]), {}, "f")[0] is True
    assert detect_lognorm(np.array([[0.5, 310.2]]), {}, "f")[0] is False  # Replogle mean counts
    assert detect_lognorm(np.array([[1.0]]), {"log1p": {}}, "f")[0] is True


def test_two_gene_perturbations_are_kept_apart(make_screen, caplog):
    a = make_screen(combos=("AAK1+BRCA1", "CDK2+FOXO1"), n_genes=120)
    with caplog.at_level(logging.INFO, logger="gpllm.data.screens.perturbseq"):
        screen = screen_from_anndata(a, n_hvg=100)
    singles, combos = screen
    assert set(singles.perts) == {"AAK1", "BRCA1", "CDK2", "DDX3X", "EIF3A", "FOXO1"}
    assert set(combos.perts) == {"AAK1+BRCA1", "CDK2+FOXO1"}
    assert sorted(singles.provenance["combo_perturbations_excluded"]) == ["AAK1+BRCA1", "CDK2+FOXO1"]
    assert singles.provenance["n_combo_rows"] == 50
    assert "2 two-gene perturbation(s) kept apart" in caplog.text
    # each screen's rows are the means of its own cells only; ctrl is the control cells'
    ref = groupby_mean(scanpy_lognorm(a)[:, list(singles.genes)].X, a.obs["gene"])
    for got in screen:
        np.testing.assert_allclose(got.Y, ref.loc[list(got.perts)].to_numpy(), rtol=1e-10)
        np.testing.assert_allclose(got.ctrl, ref.loc["non-targeting"].to_numpy(), rtol=1e-10)


def test_min_cells_drops_are_counted(make_screen, caplog):
    a = make_screen()
    few = np.flatnonzero(a.obs["gene"].to_numpy() == "CDK2")[3:]
    a = a[np.setdiff1d(np.arange(a.n_obs), few)].copy()
    with caplog.at_level(logging.WARNING):
        got = screen_from_anndata(a, min_cells=5, n_hvg=50).singles
    assert "CDK2" not in got.perts and got.n_perts == 5
    assert got.provenance["n_dropped_min_cells"] == 1 and got.provenance["dropped_min_cells"] == ["CDK2"]
    assert "dropped 1 perturbation(s) with fewer than 5 cells: 'CDK2'" in caplog.text


def test_gene_symbols_from_a_var_column_and_duplicates_made_unique(cells):
    cells.var["symbol"] = ["DUP" if j < 2 else f"S{j}" for j in range(cells.n_vars)]
    got = screen_from_anndata(cells, ObsSpec(gene_col="symbol"), n_hvg=500, duplicate_genes="make_unique").singles
    assert got.genes[:3] == ("DUP", "DUP-1", "S2")


def test_custom_obs_column_and_control_label(make_screen):
    a = make_screen(pert_col="target", control="ctrl")
    got = screen_from_anndata(a, ObsSpec(pert_col="target", control_labels=("ctrl",)), n_hvg=50).singles
    assert got.n_perts == 6 and got.provenance["n_control_rows"] == 60


def test_result_round_trips_through_h5ad(cells, tmp_path):
    got = screen_from_anndata(cells, n_hvg=50).singles
    assert PerturbationData.load(got.save(tmp_path / "screen.h5ad")) == got


# ------------------------------------------------------------------ real data
NORMAN_FILE = "norman19_mcfaline23_devel.h5ad"


@pytest.fixture
def norman_cells(shared_data):
    """(path, the norman19 cells of the shared perturbench devel file, read by scanpy)."""
    path = shared_data / NORMAN_FILE
    if not path.is_file():
        pytest.skip(f"{NORMAN_FILE} not found in {shared_data}")
    adata = sc.read_h5ad(path)
    return path, adata[adata.obs["dataset"] == "norman19"].copy()


def test_norman19_single_gene_screen_from_real_cells(norman_cells):
    path, cells = norman_cells
    screen = read_screen(path, NORMAN19)
    singles, combos = screen
    cond = cells.obs["condition"].astype(str)
    single_conds = {c for c in cond if c != "control" and "+" not in c}
    combo_conds = {"+".join(sorted(c.split("+"))) for c in cond if "+" in c}  # a pair's genes sorted
    assert set(singles.perts) == single_conds and len(single_conds) == 18
    assert set(combos.perts) == combo_conds and len(combo_conds) == 15
    assert sorted(singles.provenance["combo_perturbations_excluded"]) == sorted(combo_conds)
    assert singles.provenance["n_rows_outside_subset"] == 2586  # the mcfaline23 cells
    assert "already log-normalised" in singles.provenance["normalisation"]

    # independent reference: pandas means of the stored log-normalised values, scanpy DE
    means = groupby_mean(cells[:, list(singles.genes)].X, cond)
    np.testing.assert_allclose(singles.Y, means.loc[list(singles.perts)].to_numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(singles.ctrl, means.loc["control"].to_numpy(), rtol=1e-10, atol=1e-12)
    ref = cells.copy()
    ref.obs["c"] = cond.astype("category").to_numpy()
    sc.tl.rank_genes_groups(ref, "c", reference="control", method="t-test", rankby_abs=True, n_genes=20)
    pos = {g: i for i, g in enumerate(singles.genes)}
    want = [[pos[g] for g in ref.uns["rank_genes_groups"]["names"][p]] for p in singles.perts]
    np.testing.assert_array_equal(singles.de, want)

    streamed = read_screen(path, NORMAN19, chunked=True, chunk_size=700).singles
    assert streamed.perts == singles.perts and streamed.genes == singles.genes
    np.testing.assert_allclose(streamed.Y, singles.Y, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(streamed.de, singles.de)


def test_min_cells_on_a_pseudobulk_screen_is_said_to_be_unused(caplog):
    bulk, _ = replogle_bulk(nb_screen(n_genes=200, seed=11))
    with caplog.at_level("WARNING"):
        screen_from_anndata(bulk, REPLOGLE_BULK, n_hvg=80, min_cells=5, source="bulk.h5ad")
    assert "bulk.h5ad: min_cells=5 counts single cells; this is a pseudobulk screen" in caplog.text
