"""``gpllm fit`` / ``gpllm predict``: the saved model predicts what an in-process fit predicts."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pytest

from gpllm.data.embeddings.assemble import build_embedding, pca
from gpllm.data.embeddings.files import load_vectors, write_prott5_h5, write_uniprot_idmapping
from gpllm.models import fitted
from gpllm.models.gp import GPModel
from gpllm.models.registry import BASELINES, BUILTIN_MODELS, build_model
from tests.cli.conftest import N_TRAIN, K, ok


def _project(raw, train_rows, test_rows):
    """Reference embedding map, written out from the PCA: z = (x - mean) V^T / sqrt(total var)."""
    res = pca(raw[train_rows], K)
    scale = np.sqrt(res.explained_variance.sum())
    return [(raw[rows] - res.mean) @ res.components.T / scale for rows in (train_rows, test_rows)]


@pytest.mark.slow
def test_fit_then_predict_equals_an_in_process_gp(files, gp_run):
    out, fit_stdout, _ = gp_run
    screen = files.data.screens["K562"]
    sources = {"text": load_vectors(files.text), "sequence": load_vectors(files.sequence)}
    # SG00045 has no sequence vector: fit leaves it out and says so
    train = [p for p in files.train_names if p in sources["sequence"].names]
    assert len(train) == N_TRAIN - 1 and "1 training perturbation(s) left out" in fit_stdout
    pos = {name: {g: i for i, g in enumerate(v.names)} for name, v in sources.items()}
    Z_train, Z_test = (
        np.hstack(z)
        for z in zip(
            *(
                _project(v.X, [pos[n][p] for p in train], [pos[n][p] for p in files.test_names])
                for n, v in sources.items()
            )
        )
    )
    # the reference map reproduces the data layer's embedding of the training set
    np.testing.assert_allclose(Z_train, build_embedding(sources, train, k=K).Z, atol=1e-10)

    model = GPModel()
    want = model.predict(model.fit(Z_train, screen.Y[screen.index(train)]), Z_test)
    got = ad.read_h5ad(out / "pred.h5ad")
    np.testing.assert_allclose(got.X, want.mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got.layers["variance"][:, 0], want.var, rtol=0, atol=1e-8)


def test_prediction_file_layout(files, gp_run):
    out, _, pred_stdout = gp_run
    got = ad.read_h5ad(out / "pred.h5ad")
    screen = files.data.screens["K562"]
    assert tuple(got.obs_names) == files.test_names
    assert tuple(got.var_names) == screen.genes
    assert got.X.shape == (len(files.test_names), screen.n_genes) and got.X.dtype == np.float64
    var = got.layers["variance"]
    assert var.shape == got.X.shape and np.all(var > 0) and np.all(var == var[:, :1])
    meta = got.uns["gpllm_prediction"]
    assert meta["model"] == "gp" and meta["embedding"] == "text+sequence" and meta["n_train"] == N_TRAIN - 1
    prov = json.loads(meta["provenance_json"])
    assert prov["k"] == K and prov["n_train"] == N_TRAIN - 1
    assert {"kernel", "noise", "lml"} <= set(prov["hyperparameters"])
    assert "with variance" in pred_stdout


@pytest.mark.slow
def test_predict_in_one_go_equals_fit_then_predict(files, tmp_path):
    # ridge: the GP's round trip is checked above, this checks the plumbing
    common = ("--text", files.text, "--model", "ridge", "--k", K)
    ok("fit", files.screen, *common, "--train", files.train, "--out", tmp_path / "model.npz")
    ok("predict", tmp_path / "model.npz", "--genes", ",".join(files.test_names), "--out", tmp_path / "two.h5ad")
    # --genes defaults to the screen's perturbations outside --train
    ok("predict", "--screen", files.screen, *common, "--train", files.train, "--out", tmp_path / "one.h5ad")
    one_go, two_step = ad.read_h5ad(tmp_path / "one.h5ad"), ad.read_h5ad(tmp_path / "two.h5ad")
    assert tuple(one_go.obs_names) == tuple(two_step.obs_names) == files.test_names
    np.testing.assert_array_equal(one_go.X, two_step.X)
    np.testing.assert_array_equal(one_go.layers["variance"], two_step.layers["variance"])
    assert one_go.uns["gpllm_prediction"]["model"] == "ridge"
    assert not np.all(one_go.layers["variance"] == one_go.layers["variance"][:, :1])  # ridge's is per gene


def test_predict_for_genes_outside_the_screen_reuses_the_fit_embeddings(files, gp_run, tmp_path):
    out, _, _ = gp_run
    new = [g for g in load_vectors(files.sequence).names if g not in files.data.screens["K562"].perts][:3]
    genes = tmp_path / "genes.txt"
    genes.write_text("\n".join(new))
    ok("predict", out / "model.npz", "--genes", genes, "--out", tmp_path / "new.h5ad")
    assert tuple(ad.read_h5ad(tmp_path / "new.h5ad").obs_names) == tuple(new)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_saved_cheap_models_refit_to_the_same_predictions(files, name, tmp_path):
    screen = files.data.screens["K562"]
    sources = {"text": load_vectors(files.text)}
    fit = fitted.train(name, screen, sources, files.train_names, k=K, seed=3)
    back = fitted.load(fitted.save(fit, tmp_path / "m.gpllm"))
    assert (tmp_path / "m.gpllm").is_file()  # the name is kept, no '.npz' appended
    got = fitted.predict(back, sources, files.test_names)
    model = build_model(name, ctrl=screen.ctrl, seed=3)
    Z_test = fitted.embed(fit.projections, sources, files.test_names)
    want = model.predict(model.fit(fit.Z, fit.Y), Z_test)
    np.testing.assert_array_equal(got.mean, np.asarray(want.mean))
    np.testing.assert_array_equal(got.var, np.asarray(want.var))
    if name not in BASELINES:
        assert fit.record and back.record == fit.record, name  # k or lam is recorded, and kept


@pytest.mark.slow
def test_sequence_from_a_uniprot_h5_with_an_id_mapping(files, tmp_path):
    seq = load_vectors(files.sequence)
    write_prott5_h5(tmp_path / "per-protein.h5", [f"P{g}" for g in seq.names], seq.X)
    write_uniprot_idmapping(tmp_path / "idmapping.dat", {g: [f"P{g}"] for g in seq.names})
    h5_args = ("--sequence", tmp_path / "per-protein.h5", "--idmapping", tmp_path / "idmapping.dat")
    ok(
        "fit",
        files.screen,
        *h5_args,
        "--model",
        "ridge",
        "--k",
        K,
        "--train",
        files.train,
        "--out",
        tmp_path / "h5.npz",
    )
    ok(
        "fit",
        files.screen,
        "--sequence",
        files.sequence,
        "--model",
        "ridge",
        "--k",
        K,
        "--train",
        files.train,
        "--out",
        tmp_path / "table.npz",
    )
    genes = ",".join(files.test_names[:5])
    for name in ("h5", "table"):  # predict reopens the files the model was fitted with
        ok("predict", tmp_path / f"{name}.npz", "--genes", genes, "--out", tmp_path / f"{name}.h5ad")
    from_h5, from_table = (ad.read_h5ad(tmp_path / f"{n}.h5ad") for n in ("h5", "table"))
    np.testing.assert_allclose(from_h5.X, from_table.X, rtol=0, atol=1e-5)  # the h5 stores float32
