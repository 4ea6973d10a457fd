"""Bad inputs to fit / predict / evaluate: one ``error:`` line naming the culprit, exit 1, no traceback."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tests.cli.conftest import fails, ok


@pytest.fixture(scope="module")
def knn_model(files, tmp_path_factory):
    path = tmp_path_factory.mktemp("knn") / "knn.npz"
    ok("fit", files.screen, "--text", files.text, "--model", "knn_k1", "--k", 5, "--train", files.train, "--out", path)
    return path


def test_predict_a_gene_without_an_embedding(knn_model, tmp_path):
    fails("predict", knn_model, "--genes", "SG00061,NOSUCHGENE", "--out", tmp_path / "p.h5ad", naming="NOSUCHGENE")
    assert not (tmp_path / "p.h5ad").exists()


@pytest.mark.slow
def test_predict_without_the_embedding_the_model_needs(files, tmp_path):
    ok("fit", files.screen, "--sequence", files.sequence, "--model", "ridge", "--k", 5, "--out", tmp_path / "m.npz")
    fails(
        "predict",
        tmp_path / "m.npz",
        "--text",
        files.text,
        "--genes",
        "SG00001",
        "--out",
        tmp_path / "p.h5ad",
        naming="needs a 'sequence' embedding",
    )


def test_fit_needs_an_embedding(files, tmp_path):
    fails("fit", files.screen, "--out", tmp_path / "m.npz", naming="--text FILE and/or --sequence FILE")


def test_fit_on_unknown_training_perturbations(files, tmp_path):
    fails(
        "fit",
        files.screen,
        "--text",
        files.text,
        "--train",
        "SG00001,BOGUS1",
        "--out",
        tmp_path / "m.npz",
        naming="BOGUS1",
    )


def test_fit_an_unknown_model(files, tmp_path):
    fails("fit", files.screen, "--text", files.text, "--model", "forest", "--out", tmp_path / "m.npz", naming="forest")


def test_predict_from_a_file_that_is_not_a_model(files, tmp_path):
    fails("predict", files.screen, "--genes", "SG00001", "--out", tmp_path / "p.h5ad", naming=str(files.screen))


def test_missing_embedding_file(files, tmp_path):
    fails("fit", files.screen, "--text", tmp_path / "nope.pickle", "--out", tmp_path / "m.npz", naming="nope.pickle")


def _prediction(path, screen, perts, genes, X=None):
    X = screen.Y[screen.index(perts)][:, [screen.genes.index(g) for g in genes]] if X is None else X
    ad.AnnData(X=X, obs=pd.DataFrame(index=list(perts)), var=pd.DataFrame(index=list(genes))).write_h5ad(path)
    return path


def test_evaluate_predictions_missing_truth_genes(files, tmp_path):
    screen = files.data.screens["K562"]
    path = _prediction(tmp_path / "p.h5ad", screen, files.test_names, screen.genes[2:])
    fails("evaluate", path, "--truth", files.screen, naming=repr(screen.genes[0]))


def test_evaluate_nan_predictions(files, tmp_path):
    screen = files.data.screens["K562"]
    X = screen.Y[screen.index(files.test_names)].copy()
    X[3, 7] = np.nan
    path = _prediction(tmp_path / "p.h5ad", screen, files.test_names, screen.genes, X)
    line = fails("evaluate", path, "--truth", files.screen, naming=files.test_names[3])
    assert screen.genes[7] in line


def test_evaluate_unknown_perturbations(files, tmp_path):
    screen = files.data.screens["K562"]
    path = _prediction(tmp_path / "p.h5ad", screen, files.test_names, screen.genes)
    adata = ad.read_h5ad(path)
    adata.obs_names = ["MADEUP", *adata.obs_names[1:]]
    adata.write_h5ad(path)
    fails("evaluate", path, "--truth", files.screen, naming="MADEUP")
    result = ok("evaluate", path, "--truth", files.screen, "--skip-unknown")
    assert "1 predicted perturbation(s) not in the truth were skipped" in result.stdout


def test_evaluate_training_perturbations_among_the_predictions(files, tmp_path):
    screen = files.data.screens["K562"]
    path = _prediction(tmp_path / "p.h5ad", screen, files.test_names, screen.genes)
    fails(
        "evaluate",
        path,
        "--truth",
        files.screen,
        "--train",
        f"SG00001,{files.test_names[0]}",
        naming=files.test_names[0],
    )
