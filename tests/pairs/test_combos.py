"""The seen-0/1/2 evaluation end to end: GI magnitudes against a hand-made answer, the runner
and report on a small synthetic screen, missing embeddings, and the real Norman 2019 pairs."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pytest

from gpllm.data.embeddings.assemble import build_embedding
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.screens.labels import NORMAN19
from gpllm.data.screens.pairs import pair_screen
from gpllm.data.screens.perturbseq import read_screen
from gpllm.data.synthetic.pairs import make_pair_screen
from gpllm.evaluate.combos import ADDITIVE_MAGNITUDE, CombosConfig, interaction_class, magnitude, run_combos
from gpllm.gp.fit import FitOptions
from gpllm.models.knn import KNN
from gpllm.models.pairs import AdditiveBaseline, PairGP, SummedEmbedding
from gpllm.models.ridge import Ridge
from gpllm.report.combos import format_seen_table, seen_table, write_combos_report

# a ridge for absent singles keeps GP compiles (slow on a busy CPU) to the one PairGP
FAST_MODELS = (
    AdditiveBaseline(single_model=Ridge()),
    SummedEmbedding(KNN(k=2), name="knn_summed"),
    SummedEmbedding(Ridge(), name="ridge_summed"),
)


def test_magnitude_recovers_known_coefficients_and_classes():
    rng = np.random.default_rng(0)
    d_a, d_b = rng.standard_normal((3, 50)), rng.standard_normal((3, 50))
    coef = np.array([[1.0, 1.0], [2.0, 0.5], [0.3, 0.4]])
    pair = coef[:, :1] * d_a + coef[:, 1:] * d_b
    np.testing.assert_allclose(magnitude(pair, d_a, d_b), np.hypot(coef[:, 0], coef[:, 1]), rtol=1e-10)
    # only the weighted genes count: noise elsewhere changes nothing
    weight = np.zeros_like(d_a)
    weight[:, :20] = 1.0
    noisy = pair + np.where(weight > 0, 0.0, rng.standard_normal(pair.shape))
    np.testing.assert_allclose(magnitude(noisy, d_a, d_b, weight), np.hypot(coef[:, 0], coef[:, 1]), rtol=1e-10)
    assert list(interaction_class(magnitude(pair, d_a, d_b), 0.1)) == ["additive", "synergy", "buffering"]
    assert interaction_class(np.array([np.nan, ADDITIVE_MAGNITUDE * 1.05]), 0.1).tolist() == ["n/a", "additive"]
    assert np.isnan(magnitude(pair[:1], d_a[:1], d_a[:1]))[0]  # collinear singles: undefined


def _synthetic(n_pairs=30):
    draw = make_pair_screen(0, n_perts=30, n_genes=40, n_pairs=n_pairs, text_dim=16, seq_dim=16, hidden=8)
    emb = build_embedding({"text": draw.vectors["text"]}, draw.screen.all_genes, k=5)
    return draw, emb


@pytest.mark.slow
def test_run_combos_scores_every_testable_pair_and_writes_the_report(tmp_path):
    draw, emb = _synthetic()
    models = (*FAST_MODELS, PairGP(options=FitOptions(max_steps=15)))
    results, notes = run_combos(draw.screen, emb, models, CombosConfig(n_folds=3))
    assert set(results["seen"].unique()) == {0, 1, 2}
    assert set(results["model"].unique()) == {m.name for m in models}
    for _, part in results.group_by(["seen", "model"]):
        assert part["pair"].n_unique() == part.height  # each pair tested at most once per category
    seen0 = results.filter((pl.col("seen") == 0) & (pl.col("model") == "additive"))
    assert set(seen0["pair"]) == set(draw.screen.pairs.perts)  # all pairs can be seen-0 test pairs
    # equal sizes: one training size per category
    assert results.group_by("seen").agg(pl.col("n_train_pairs").n_unique())["n_train_pairs"].max() == 1
    # the additive baseline with measured singles predicts an exactly additive pair
    seen2 = results.filter((pl.col("seen") == 2) & (pl.col("model") == "additive"))
    np.testing.assert_allclose(seen2["magnitude_pred"], ADDITIVE_MAGNITUDE, rtol=1e-9)
    assert any("not testable" in n for n in notes)
    table = seen_table(results)
    assert table.height == 3 * len(models)
    text = format_seen_table(table)
    assert "seen 0" in text and "seen 2" in text and "pair_gp" in text
    paths = write_combos_report(results, notes, tmp_path)
    assert all(p.is_file() for p in paths.values())
    assert paths["figure"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_gene_without_an_embedding_is_dropped_and_reported(caplog):
    draw, _ = _synthetic()
    screen = draw.screen
    gone = screen.genes[0][0]
    text = draw.vectors["text"]
    kept = [n for n in text.names if n != gone]
    emb = build_embedding({"text": text.subset(kept)}, screen.all_genes, k=5, missing="drop")
    with caplog.at_level(logging.WARNING):
        results, notes = run_combos(screen, emb, FAST_MODELS[:1], CombosConfig(n_folds=2))
    assert any(gone in n and "no embedding row" in n for n in notes)
    assert not any(gone in p.split("+") for p in results["pair"])
    assert "no embedding row" in caplog.text


@pytest.mark.slow
def test_real_norman19_pairs_run_end_to_end(shared_data):
    """The 15 real two-gene conditions of the devel file, with seeded vectors standing in for
    an embedding (none of the real files embeds these genes offline); MAP3K21 and FOXL2 have none."""
    screen = read_screen(shared_data / "norman19_mcfaline23_devel.h5ad", NORMAN19)
    pairs = pair_screen(screen.singles, screen.combos, where="norman19")
    assert pairs.n_pairs == 15 and "KLF1+SET" in pairs.pairs.perts  # 'SET+KLF1' in the file: order-free
    genes = [g for g in pairs.all_genes if g not in ("MAP3K21", "FOXL2")]
    vectors = GeneVectors(tuple(genes), np.random.default_rng(0).standard_normal((len(genes), 12)), "seeded")
    emb = build_embedding({"seeded": vectors}, pairs.all_genes, k=6, missing="drop")
    models = (*FAST_MODELS, PairGP(options=FitOptions(max_steps=15)))
    # two folds: the checks below hold for any split of the 15 pairs; a third fold only refitted every model
    results, notes = run_combos(pairs, emb, models, CombosConfig(n_folds=2))
    assert any("MAP3K21" in n and "FOXL2+HOXB9" in n for n in notes)
    assert set(results["seen"].unique()) <= {0, 1, 2} and results.height > 0
    assert results["pair"].is_in(list(pairs.pairs.perts)).all()
    assert np.isfinite(results["mae_de"].to_numpy()).all()
    assert seen_table(results).height > 0


def test_magnitude_correlation_of_a_constant_up_to_rounding_is_zero():
    from gpllm.report.combos import _magnitude_r

    rng = np.random.default_rng(0)
    true = rng.uniform(0.5, 2.0, 10)
    rounding = ADDITIVE_MAGNITUDE * (1 + 1e-15 * rng.standard_normal(10))
    part = pl.DataFrame({"magnitude_true": true, "magnitude_pred": rounding})
    assert _magnitude_r(part) == 0.0
    assert _magnitude_r(part.with_columns(magnitude_pred=pl.col("magnitude_true") ** 2)) == pytest.approx(1.0)
