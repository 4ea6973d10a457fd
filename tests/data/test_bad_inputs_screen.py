"""Bad screens: each fails with a gpllm error naming the file, gene, cell or column."""

from __future__ import annotations

import shutil

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from gpllm.data.screens.h5ad import read_h5ad
from gpllm.data.screens.labels import NORMAN19, ObsSpec
from gpllm.data.screens.perturbseq import read_screen, screen_from_anndata
from gpllm.errors import CorruptFileError, DataError, InputError, MissingFileError, NonFiniteError
from tests.data.conftest import nb_screen

CHUNKED = pytest.mark.parametrize("chunked", [False, True], ids=["in-memory", "backed"])


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("h5ad") / "good.h5ad"
    nb_screen(n_genes=60).write_h5ad(path)
    return path


@pytest.fixture
def damaged(good_file, tmp_path):
    """damaged(edit) -> path of a copy of the good file after edit(path)."""

    def make(edit):
        path = tmp_path / "damaged.h5ad"
        shutil.copy(good_file, path)
        edit(path)
        return path

    return make


def _truncate(frac):
    def edit(path):
        with open(path, "r+b") as fh:
            fh.truncate(int(path.stat().st_size * frac))

    return edit


def _overwrite(where, n=256):
    """Overwrite n bytes with 0xFF at a byte offset, or at the first chunk of a dataset."""

    def edit(path):
        offset = where
        if isinstance(where, str):
            with h5py.File(path, "r") as f:
                offset = f[where].id.get_chunk_info(0).byte_offset
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\xff" * n)

    return edit


@CHUNKED
@pytest.mark.parametrize("frac", [0.1, 0.5, 0.97])
def test_truncated_file(damaged, chunked, frac):
    path = damaged(_truncate(frac))
    with pytest.raises(CorruptFileError, match=f"{path}: .*truncated"):
        read_screen(path, chunked=chunked, n_hvg=20)


@CHUNKED
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_overwrite(0), "file signature not found"),  # HDF5 superblock
        (_overwrite("X/indices"), "not a valid sparse matrix"),
        (_overwrite("X/indptr"), "sparse (row pointer|matrix)"),
    ],
    ids=["header", "indices", "indptr"],
)
def test_garbage_bytes(damaged, chunked, edit, match):
    path = damaged(edit)
    with pytest.raises(CorruptFileError, match=f"{path}: .*{match}"):
        read_screen(path, chunked=chunked, n_hvg=20)


@CHUNKED
def test_garbage_in_values_reads_as_nan_and_names_genes(damaged, chunked):
    path = damaged(_overwrite("X/data", n=16))  # 0xFFFFFFFF is a float32 NaN
    with pytest.raises(NonFiniteError, match=f"{path}: expression holds NaN/inf in gene"):
        read_screen(path, chunked=chunked, n_hvg=20)


def test_not_an_anndata(tmp_path):
    text = tmp_path / "notes.h5ad"
    text.write_text("not hdf5")
    with pytest.raises(CorruptFileError, match=f"{text}: cannot be read as h5ad"):
        read_h5ad(text)
    bare = tmp_path / "bare.h5ad"
    with h5py.File(bare, "w") as f:
        f.create_group("obs")
    with pytest.raises(CorruptFileError, match=f"{bare}: not an AnnData h5ad, missing group.*X, var"):
        read_h5ad(bare)
    with pytest.raises(MissingFileError, match="nowhere.h5ad: no such h5ad file"):
        read_screen(tmp_path / "nowhere.h5ad")


@CHUNKED
def test_no_control_cells(tmp_path, chunked):
    a = nb_screen(n_genes=30)
    a = a[a.obs["gene"] != "non-targeting"].copy()
    path = tmp_path / "noctrl.h5ad"
    a.write_h5ad(path)
    with pytest.raises(DataError, match=rf"{path}: no control rows.*obs\['gene'\].*'non-targeting'.*'AAK1'"):
        read_screen(path, chunked=chunked)


def test_control_label_of_another_convention(cells):
    with pytest.raises(DataError, match=r"no control rows.*\['control', 'ctrl'\]"):
        screen_from_anndata(cells, ObsSpec(control_labels=("control", "ctrl")), source="cells.h5ad")


def test_obs_column_missing(cells):
    with pytest.raises(DataError, match=r"cells.h5ad: missing column\(s\) 'condition'; available: 'gene'"):
        screen_from_anndata(cells, ObsSpec(pert_col="condition"), source="cells.h5ad")
    with pytest.raises(DataError, match=r"cells.h5ad: missing column\(s\) 'dataset'"):
        screen_from_anndata(cells, NORMAN19, source="cells.h5ad")


def test_duplicate_gene_names(cells):
    cells.var_names = ["G000", "G001", "G001", *cells.var_names[3:]]
    with pytest.raises(DataError, match=r"cells.h5ad: 1 duplicated gene names in var_names: 'G001'"):
        screen_from_anndata(cells, source="cells.h5ad")
    cells.var["symbol"] = "S"
    with pytest.raises(DataError, match=r"duplicated gene names in var\['symbol'\]: 'S'"):
        screen_from_anndata(cells, ObsSpec(gene_col="symbol"), source="cells.h5ad")
    with pytest.raises(DataError, match="var has no gene-name column 'gene_name'"):
        screen_from_anndata(cells, ObsSpec(gene_col="gene_name"), source="cells.h5ad")


def _with_bad_value(value, sparse):
    a = nb_screen(n_genes=30, sparse=sparse)
    X = a.X.toarray() if sparse else a.X
    cell = np.flatnonzero(a.obs["gene"].to_numpy() == "BRCA1")[2]
    X[cell, 7] = value
    a.X = sp.csr_matrix(X) if sparse else X
    return a, a.obs_names[cell]


@pytest.mark.parametrize("sparse", [True, False])
def test_nan_in_expression_names_gene_and_cell(sparse):
    a, cell = _with_bad_value(np.nan, sparse)
    with pytest.raises(NonFiniteError, match=f"cells.h5ad: expression holds NaN/inf in gene.*'G007'.*'{cell}'"):
        screen_from_anndata(a, source="cells.h5ad")


def test_nan_in_backed_file_names_gene_and_row(tmp_path):
    a, cell = _with_bad_value(np.inf, sparse=True)
    path = tmp_path / "nan.h5ad"
    a.write_h5ad(path)
    row = list(a.obs_names).index(cell)
    with pytest.raises(NonFiniteError, match=f"{path}: expression holds NaN/inf in gene.*'G007'.*'{row}'"):
        read_screen(path, chunked=True, chunk_size=50)


def test_nan_in_bulk_rows():
    bulk = ad.AnnData(
        X=np.array([[1.5, 2.0], [np.nan, 1.0], [3.0, 0.5]]),
        obs=pd.DataFrame({"gene": ["non-targeting", "A", "B"]}, index=["r0", "r1", "r2"]),
        var=pd.DataFrame(index=["g0", "g1"]),
    )
    with pytest.raises(NonFiniteError, match=r"bulk.h5ad: expression holds NaN/inf in gene\(s\) 'g0'; row\(s\) 'r1'"):
        screen_from_anndata(bulk, kind="bulk", n_de=1, source="bulk.h5ad")


def test_duplicated_bulk_row_names_are_counted_not_pooled_silently(caplog):
    bulk = ad.AnnData(
        X=np.array([[1.5, 2.0, 1.0], [2.0, 1.0, 0.5], [2.2, 1.1, 0.4], [3.0, 0.5, 1.0], [0.9, 1.9, 2.0]]),
        obs=pd.DataFrame(
            {"gene": ["non-targeting", "A", "A", "B", "non-targeting"]}, index=["r0", "r1", "r1", "r3", "r4"]
        ),
        var=pd.DataFrame(index=["g0", "g1", "g2"]),
    )
    with caplog.at_level("WARNING"):
        screen = screen_from_anndata(bulk, kind="bulk", n_de=1, source="bulk.h5ad")
    assert "1 row name(s) appear more than once" in caplog.text and "'r1'" in caplog.text
    assert screen.singles.provenance["n_duplicated_row_names"] == 1


def test_negative_expression():
    a, cell = _with_bad_value(-3.0, sparse=True)
    with pytest.raises(DataError, match=f"cells.h5ad: expression holds negative values.* in gene.*'G007'.*'{cell}'"):
        screen_from_anndata(a, source="cells.h5ad")


def test_empty_selection(cells):
    cells.obs["dataset"] = "replogle"
    with pytest.raises(DataError, match=r"no row has obs\['dataset'\] in \['norman19'\]; values present: 'replogle'"):
        screen_from_anndata(cells, ObsSpec(subset=ObsSpec.make_subset({"dataset": "norman19"})))


@pytest.mark.parametrize(
    ("keep", "kwargs", "match"),
    [
        (["non-targeting", "AAK1"], {}, r"1 single-gene perturbation\(s\) left 'AAK1'; at least 2 needed"),
        (["non-targeting"], {}, "0 single-gene perturbation"),
        (["non-targeting", "AAK1", "BRCA1"], {"min_cells": 26}, "0 single-gene perturbation"),
    ],
)
def test_fewer_than_two_perturbations(cells, keep, kwargs, match):
    a = cells[cells.obs["gene"].isin(keep)].copy()
    with pytest.raises(DataError, match=f"cells.h5ad: {match}"):
        screen_from_anndata(a, kind="cells", source="cells.h5ad", **kwargs)


def test_too_few_control_cells(cells):
    ctrl = np.flatnonzero(cells.obs["gene"].to_numpy() == "non-targeting")
    a = cells[np.setdiff1d(np.arange(cells.n_obs), ctrl[1:])].copy()
    with pytest.raises(DataError, match=r"only 1 control row\(s\); at least 2 needed"):
        screen_from_anndata(a, source="cells.h5ad")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"hvg_flavor": "pearson"}, "hvg flavor 'pearson' not supported"),
        ({"kind": "guides"}, "kind must be"),
        ({"de_method": "wilcoxon"}, "de_method must be"),
        ({"n_hvg": 0}, "n_hvg must be >= 1"),
        ({"target_sum": -1.0}, "target_sum must be > 0"),
        ({"n_de": 500}, "top-500 DE genes requested but only 150"),
    ],
)
@pytest.mark.slow
def test_bad_options(cells, kwargs, match):
    with pytest.raises(InputError, match=match):
        screen_from_anndata(cells, **kwargs)


def test_seurat_v3_cannot_stream(good_file):
    with pytest.raises(InputError, match="'seurat_v3' not supported"):
        read_screen(good_file, chunked=True, hvg_flavor="seurat_v3", n_hvg=20)
