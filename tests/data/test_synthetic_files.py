"""Synthetic draws written in the real formats read back through the real loaders."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from gpllm.data.embeddings.files import load_genept_pickle, load_prott5_h5, read_uniprot_idmapping
from gpllm.data.screens.labels import REPLOGLE_BULK, REPLOGLE_CELLS
from gpllm.data.screens.perturbseq import read_screen
from gpllm.data.synthetic.files import accessions, bulk_anndata, sample_cells, write_files
from gpllm.data.synthetic.screens import make_screens
from gpllm.errors import InputError

N_PERTS, N_GENES, CELLS = 60, 100, 20


@pytest.fixture(scope="module")
def draw():
    # Effects 10x the calibrated default: with 20 cells per perturbation the realistic,
    # small deltas drown in counting noise, and these tests check the file path, not biology.
    return make_screens(0, n_perts=N_PERTS, n_genes=N_GENES, amplitude=(0.35, 0.35))


@pytest.fixture(scope="module")
def files(draw, tmp_path_factory):
    return write_files(draw, tmp_path_factory.mktemp("synthetic"), cells=True, cells_per_pert=CELLS)


def test_writes_every_file_under_its_real_name(files):
    names = {k: p.name for k, p in files.items()}
    assert names == {
        "K562_bulk": "K562_essential_raw_bulk_01.h5ad",
        "RPE1_bulk": "rpe1_raw_bulk_01.h5ad",
        "K562_cells": "K562_essential_raw_singlecell_01.h5ad",
        "RPE1_cells": "rpe1_raw_singlecell_01.h5ad",
        "text": "GenePT_gene_embedding_ada_text.pickle",
        "sequence": "per-protein.h5",
        "idmapping": "HUMAN_9606_idmapping.dat",
    }


# ------------------------------------------------------------------------ bulk
@pytest.mark.parametrize("line", ["K562", "RPE1"])
def test_bulk_reads_back_as_the_draw(draw, files, line):
    got = read_screen(files[f"{line}_bulk"], REPLOGLE_BULK, n_hvg=N_GENES)
    want = draw.screens[line]
    assert got.combos is None
    s = got.singles
    assert s.perts == want.perts and s.genes == want.genes
    # float32 storage of mean counts: profiles agree to float32 rounding
    np.testing.assert_allclose(s.Y, want.Y, rtol=0, atol=1e-5)
    np.testing.assert_allclose(s.ctrl, want.ctrl, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(s.de, want.de)
    assert "num_cells_filtered" in s.provenance["row_pooling"]


def test_bulk_has_the_replogle_layout(draw, files):
    with h5py.File(files["K562_bulk"], "r") as f:
        assert set(f) >= {"X", "obs", "var"}
        assert isinstance(f["X"], h5py.Dataset) and f["X"].dtype == np.float32  # dense, as the real file
        assert f["obs"].attrs["_index"] == "gene_transcript" and f["var"].attrs["_index"] == "gene_id"
        X = f["X"][()]
        rows = [r.decode() for r in f["obs/gene_transcript"][()]]
        genes = [g.decode() for g in f["var/gene_id"][()]]
    assert X.shape == (len(rows), N_GENES) and np.any(X != np.round(X))  # mean counts, not counts
    assert all(g.startswith("ENSG") and len(g) == 15 for g in genes)
    ctrl = [r for r in rows if r.endswith("_non-targeting_non-targeting_non-targeting")]
    assert len(ctrl) == 4
    targets = [r.split("_")[1] for r in rows if r not in ctrl]
    assert set(targets) == set(draw.truth.perts) and len(targets) > N_PERTS  # some genes span two rows
    assert all(r.split("_")[0].isdigit() and r.split("_")[-1].startswith("ENSG") for r in rows if r not in ctrl)
    obs = bulk_anndata(draw, "K562").obs
    assert obs["core_control"].sum() == 4
    assert obs.loc[ctrl, "num_cells_filtered"].sum() == draw.truth.n_ctrl_cells["K562"]


def test_bulk_rows_must_be_pooled_by_cell_count(draw, files):
    """Unweighted pooling gives other profiles: the file really exercises the weights."""
    flat = dataclasses.replace(REPLOGLE_BULK, weight_cols=())
    got = read_screen(files["K562_bulk"], flat, n_hvg=N_GENES).singles
    # 10x the 1e-5 to which the weighted pooling reproduces ctrl (test above)
    assert np.abs(got.ctrl - draw.screens["K562"].ctrl).max() > 1e-4


def test_files_are_deterministic(draw, tmp_path):
    a = write_files(draw, tmp_path / "a")
    b = write_files(draw, tmp_path / "b")
    for key in ("K562_bulk", "sequence"):
        with h5py.File(a[key], "r") as fa, h5py.File(b[key], "r") as fb:
            name = "X" if key.endswith("bulk") else sorted(fa)[0]
            np.testing.assert_array_equal(fa[name][()], fb[name][()])
    assert a["idmapping"].read_text() == b["idmapping"].read_text()


# ----------------------------------------------------------------------- cells
def test_cells_are_raw_counts_in_the_replogle_layout(draw):
    cells = sample_cells(draw, "RPE1", cells_per_pert=CELLS, seed=1)
    truth = draw.truth
    assert {"gene", "gene_transcript", "sgID_AB", "gene_id", "UMI_count"} <= set(cells.obs.columns)
    assert np.array_equal(cells.X, np.round(cells.X)) and cells.X.min() >= 0
    n = cells.obs["gene"].value_counts()
    assert n["non-targeting"] == min(truth.n_ctrl_cells["RPE1"], 10 * CELLS)
    want = np.minimum(truth.n_cells["RPE1"], CELLS)
    assert [n[p] for p in truth.perts] == want.tolist()
    depth = np.median(cells.X.sum(axis=1))
    assert 0.8 * truth.config.depth < depth < 1.2 * truth.config.depth
    assert cells.obs_names.is_unique


def test_cells_pseudobulk_tracks_the_truth(draw, files):
    got = read_screen(files["K562_cells"], REPLOGLE_CELLS, n_hvg=N_GENES).singles
    truth = draw.truth
    idx = [truth.perts.index(p) for p in got.perts]
    assert sorted(got.perts) == sorted(truth.perts) and got.genes == truth.genes
    assert got.provenance["de_method"] == "t-test"
    delta_true = truth.Y_true["K562"][idx] - truth.baseline["K562"]
    r = np.corrcoef((got.Y - got.ctrl).ravel(), delta_true.ravel())[0, 1]
    assert r > 0.95
    assert np.corrcoef(got.ctrl, truth.baseline["K562"])[0, 1] > 0.99


def test_cells_bad_arguments(draw):
    with pytest.raises(InputError, match="HeLa"):
        sample_cells(draw, "HeLa")
    with pytest.raises(InputError, match="cells_per_pert"):
        sample_cells(draw, "K562", cells_per_pert=0)


# ------------------------------------------------------------------ embeddings
def test_text_pickle_reads_back_exactly(draw, files):
    got = load_genept_pickle(files["text"])
    want = draw.vectors["text"]
    assert set(got.names) == set(want.names)
    assert not set(draw.truth.text_missing) & set(got.names)
    np.testing.assert_array_equal(got.X, want.subset(got.names).X)


def test_sequence_h5_reads_back_through_the_id_mapping(draw, files):
    mapping = read_uniprot_idmapping(files["idmapping"])
    got = load_prott5_h5(files["sequence"], mapping)
    want = draw.vectors["sequence"]
    assert set(got.names) == set(want.names)
    assert not set(draw.truth.seq_missing) & set(got.names)
    # stored as float32, as UniProt's file
    np.testing.assert_array_equal(got.X, want.subset(got.names).X.astype(np.float32).astype(np.float64))
    # the loader had to skip listed-first accessions that have no embedding
    assert any(len(a) == 2 for a in mapping.values())
    _, written, orphans = accessions(draw)
    assert mapping == {k: tuple(v) for k, v in written.items()}
    with h5py.File(files["sequence"], "r") as f:
        assert set(orphans) <= set(f) and not set(orphans) & {a for v in mapping.values() for a in v}
        assert all(k[0] == "Q" and k[1:].isdigit() for k in f)
