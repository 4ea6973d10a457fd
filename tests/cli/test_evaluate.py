"""``gpllm evaluate`` and :mod:`gpllm.evaluate.external`: the sweep's metrics on any prediction file."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import polars as pl
import pytest

from gpllm.errors import InputError
from gpllm.evaluate import external
from gpllm.evaluate.metrics import perturbation_metrics, predictive_scores
from tests.cli.conftest import ok


@pytest.mark.slow
def test_evaluate_equals_the_metrics_computed_directly(files, gp_run, tmp_path):
    out, _, _ = gp_run
    result = ok(
        "evaluate",
        out / "pred.h5ad",
        "--truth",
        files.screen,
        "--train",
        files.train,
        "--out",
        tmp_path / "rows.parquet",
    )
    rows = pl.read_parquet(tmp_path / "rows.parquet")
    pred, screen = ad.read_h5ad(out / "pred.h5ad"), files.data.screens["K562"]
    idx = screen.index(list(pred.obs_names))
    Y, de = screen.Y[idx], screen.de[idx]
    want = perturbation_metrics(Y, pred.X, reference=screen.ctrl, de=de)
    systema = perturbation_metrics(Y, pred.X, reference=screen.Y[:60].mean(axis=0), de=de)
    scores = predictive_scores(Y, pred.X, pred.layers["variance"], levels=(0.9,))
    assert rows["pert"].to_list() == list(pred.obs_names)
    for name in external.METRICS:
        np.testing.assert_array_equal(rows[name].to_numpy(), np.asarray(getattr(want, name)))
    np.testing.assert_array_equal(rows["pearson_de_meanref"].to_numpy(), np.asarray(systema.pearson_de))
    np.testing.assert_array_equal(rows["nll"].to_numpy(), np.asarray(scores.nll))
    np.testing.assert_array_equal(rows["coverage90"].to_numpy(), np.asarray(scores.coverage[:, 0]))
    title = " ".join(result.stdout.split())  # rich wraps the table's title
    assert "mean ± 1.96 SE across perturbations (no folds)" in title
    mean = float(np.mean(want.pearson_de))
    assert f"{mean:.4f}" in result.stdout
    assert "mean of the 60 --train perturbations" in result.stdout


def _gears_file(path, screen, perts, Y, genes_order, extra_genes=2):
    """GEARS-like output: 'GENE+ctrl' names, shuffled genes plus some the truth lacks."""
    cols = [screen.genes.index(g) for g in genes_order]
    X = np.hstack([Y[:, cols], np.ones((len(perts), extra_genes))])
    var = pd.DataFrame(index=[*genes_order, *(f"EXTRA{i}" for i in range(extra_genes))])
    names = [f"{p}+ctrl" if i % 2 else f"ctrl+{p}" for i, p in enumerate(perts)]
    ad.AnnData(X=X, obs=pd.DataFrame(index=names), var=var).write_h5ad(path)
    return path


def test_evaluate_a_gears_style_file(files, tmp_path):
    screen = files.data.screens["K562"]
    perts = list(files.test_names)
    rng = np.random.default_rng(1)
    Y_pred = screen.Y[screen.index(perts)] + 0.1 * rng.normal(size=(len(perts), screen.n_genes))
    genes = list(rng.permutation(screen.genes))
    path = _gears_file(tmp_path / "gears.h5ad", screen, perts, Y_pred, genes)
    result = ok("evaluate", path, "--truth", files.screen, "--out", tmp_path / "rows.csv")
    rows = pl.read_csv(tmp_path / "rows.csv")
    want = perturbation_metrics(
        screen.Y[screen.index(perts)], Y_pred, reference=screen.ctrl, de=screen.de[screen.index(perts)]
    )
    assert rows["pert"].to_list() == perts
    np.testing.assert_allclose(rows["pearson_de"].to_numpy(), np.asarray(want.pearson_de), rtol=1e-12)
    np.testing.assert_allclose(rows["mae_all"].to_numpy(), np.asarray(want.mae_all), rtol=1e-12)
    assert rows["nll"].is_null().all() or np.isnan(rows["nll"].to_numpy()).all()
    out = result.stdout
    assert "20 GEARS-style perturbation name(s) normalised" in out
    assert "2 predicted gene(s) not in the truth were ignored" in out
    assert "60 of the truth's 80 perturbations have no prediction" in out
    assert "mean of the 60 truth perturbations not predicted" in out


@pytest.mark.parametrize(
    ("raw", "name"),
    [("A", "A"), ("A+ctrl", "A"), ("ctrl+A", "A"), (" A + B ", "A+B"), ("A+B+ctrl", "A+B")],
)
def test_normalise_name(raw, name):
    assert external.normalise_name(raw) == name


def test_a_control_row_is_not_a_perturbation():
    with pytest.raises(InputError, match="'ctrl\\+ctrl' is a control"):
        external.normalise_name("ctrl+ctrl")


def test_summary_is_mean_and_196_standard_errors_across_perturbations():
    values = np.array([0.1, 0.5, 0.3, 0.9])
    rows = pl.DataFrame({name: values for name in (*external.METRICS, "pearson_de_meanref", "nll", "coverage90")})
    rows = rows.with_columns(pl.lit(float("nan")).alias("nll"))
    got = {s.metric: s for s in external.summarise(rows)}
    assert "nll" not in got  # no variance, no row
    s = got["pearson_de"]
    assert s.mean == pytest.approx(values.mean())
    assert s.half_width == pytest.approx(1.96 * values.std(ddof=1) / 2)
    assert s.n == 4


def test_two_gene_predictions_match_the_truth_in_either_order_and_report_mse():
    from gpllm.data.screens.perturbation_data import PerturbationData
    from gpllm.evaluate import external

    rng = np.random.default_rng(0)
    genes = tuple(f"G{i}" for i in range(30))
    truth = PerturbationData(
        Y=rng.normal(size=(3, 30)),
        ctrl=np.zeros(30),
        de=np.tile(np.arange(20), (3, 1)),
        perts=("A", "A+B", "C+D"),
        genes=genes,
    )
    pred_Y = truth.Y + 0.5
    pred = external.PredictionTable(("A", "B+A", "D+C"), genes, pred_Y, None, "pred.h5ad")
    aligned = external.align_to_truth(pred, truth)
    assert aligned.perts == ("A", "A+B", "C+D")
    rows = external.score(aligned, truth, None)
    np.testing.assert_allclose(rows["mse_all"].to_numpy(), 0.25)  # every error is 0.5
    np.testing.assert_allclose(rows["mse_de"].to_numpy(), 0.25)
    assert {"mse_de", "mse_all"} <= {s.metric for s in external.summarise(rows)}
