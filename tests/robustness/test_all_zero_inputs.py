"""An all-zero screen or embedding is an error naming the file, not a fit on nothing."""

from __future__ import annotations

import pickle

import numpy as np
import polars as pl
import pytest

from gpllm.atomic import write_h5ad
from gpllm.data.embeddings.files import write_genept_pickle
from gpllm.data.synthetic.files import bulk_anndata
from gpllm.data.synthetic.screens import make_screens
from tests.cli.conftest import fails


def zeroed(adata):
    adata.X = np.zeros(adata.shape, np.float32)
    return adata


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("zeros")
    syn = make_screens(0, n_perts=30, n_genes=20, text_dim=8, seq_dim=8)
    screen, text = syn.screens["K562"], syn.vectors["text"]
    raw = zeroed(bulk_anndata(syn, "K562"))
    (root / "zero_text.pickle").write_bytes(pickle.dumps({name: [0.0] * text.dim for name in text.names}))
    table = pl.DataFrame({"gene": list(text.names), **{str(j): np.zeros(len(text)) for j in range(text.dim)}})
    table.write_parquet(root / "zero_text.parquet")
    return {
        "screen": screen.save(root / "screen.h5ad"),
        "zero_screen": write_h5ad(root / "zero_screen.h5ad", zeroed(screen.to_anndata())),
        "zero_raw": write_h5ad(root / "zero_raw.h5ad", raw),
        "text": write_genept_pickle(root / "text.pickle", text),
        "zero_text": root / "zero_text.pickle",
        "zero_table": root / "zero_text.parquet",
    }


def test_data_process_refuses_an_all_zero_raw_screen(inputs, tmp_path):
    zero_raw = inputs["zero_raw"]
    line = fails("data", "process", zero_raw, "--preset", "replogle_bulk", "-o", tmp_path / "p.h5ad", naming="is 0")
    assert str(zero_raw) in line and "expression profiles" in line
    assert not (tmp_path / "p.h5ad").exists()


@pytest.mark.parametrize(
    ("screen", "text"), [("zero_screen", "text"), ("screen", "zero_text"), ("screen", "zero_table")]
)
def test_fit_names_the_all_zero_file(inputs, tmp_path, screen, text):
    zero = inputs[screen if screen.startswith("zero") else text]
    line = fails("fit", inputs[screen], "--text", inputs[text], "-o", tmp_path / "m.npz", naming=str(zero))
    assert "every value of" in line and "is 0" in line
