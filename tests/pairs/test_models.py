"""Pair models on synthetic pairs: the additive GP recovers additive truth; the interaction
variance follows the true strength; the additive baseline's sources of singles; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from gpllm.data.synthetic.pairs import make_pair_screen
from gpllm.errors import DataError, InputError
from gpllm.gp.fit import FitOptions
from gpllm.models.knn import KNN
from gpllm.models.pairs import AdditiveBaseline, Conditions, PairGP, ResidualPairGP, SummedEmbedding
from gpllm.models.ridge import Ridge

# little measurement noise, so that what is tested is what the models recover
LOW_NOISE = dict(n_perts=40, n_genes=50, n_pairs=60, depth=1e6, overdispersion=1e-3, text_dim=16, seq_dim=16, hidden=8)
OPTIONS = FitOptions(max_steps=100)
N_TRAIN_PAIRS = 45


def _split(strength: float):
    """Latent gene vectors as embedding; all singles and 45 pairs train, 15 pairs test."""
    draw = make_pair_screen(0, interaction_strength=strength, **LOW_NOISE)
    screen = draw.screen
    rows = {g: i for i, g in enumerate(screen.singles.perts)}
    singles = Conditions.from_names(screen.singles.perts, rows)
    pairs = Conditions.from_names(screen.pairs.perts, rows)
    tr = np.arange(N_TRAIN_PAIRS)
    train = Conditions(
        np.r_[singles.first, pairs.first[tr]],
        np.r_[singles.second, pairs.second[tr]],
        singles.names + tuple(pairs.names[i] for i in tr),
    )
    delta = np.vstack([screen.singles.delta, screen.pairs.delta[tr]])
    test = pairs.take(np.arange(N_TRAIN_PAIRS, len(pairs.first)))
    return draw, draw.truth.singles.u, train, delta, test


@pytest.mark.slow
def test_additive_gp_recovers_the_additive_truth_without_interactions():
    draw, Z, train, delta, test = _split(0.0)
    truth = draw.truth.additive[N_TRAIN_PAIRS:] - draw.screen.singles.ctrl
    assert draw.truth.n_floored == 0
    model = PairGP(interaction=False, options=OPTIONS)
    pred = np.asarray(model.predict(model.fit(Z, train, delta), test).mean)
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    assert rms(pred - truth) < 0.05 * rms(truth)
    # as close as adding the measured singles (whose noise it smooths)
    additive = AdditiveBaseline()
    measured = np.asarray(additive.predict(additive.fit(Z, train, delta), test).mean)
    assert rms(pred - truth) < 1.5 * rms(measured - truth)


@pytest.mark.slow
def test_fitted_interaction_variance_grows_with_the_true_strength():
    fitted = []
    for strength in (0.0, 1.0, 2.0):
        _, Z, train, delta, _ = _split(strength)
        model = PairGP(options=OPTIONS)
        fitted.append(model.record(model.fit(Z, train, delta))["kernel"]["interaction_variance"])
    assert fitted[0] < fitted[1] < fitted[2], fitted
    assert fitted[0] < 0.05 * fitted[2]


def test_residual_gp_reverts_to_the_additive_model_without_training_pairs():
    _, Z, train, delta, test = _split(1.0)
    only_singles = train.take(~train.is_pair)
    residual = ResidualPairGP(options=OPTIONS)
    state = residual.fit(Z, only_singles, delta[~train.is_pair])
    assert residual.record(state)["residual"] == "fewer than 2 training pairs"
    additive = AdditiveBaseline()
    np.testing.assert_allclose(
        residual.predict(state, test).mean,
        additive.predict(additive.fit(Z, only_singles, delta[~train.is_pair]), test).mean,
    )


@pytest.mark.slow
def test_additive_baseline_uses_measured_singles_and_predicts_absent_ones():
    _, Z, train, delta, test = _split(0.0)
    gone = test.first[0]  # this gene's single leaves training
    keep = ~((train.first == gone) | (train.second == gone))
    model = AdditiveBaseline()
    state = model.fit(Z, train.take(keep), delta[keep])
    assert state.predicted[gone] and not state.measured[gone]
    assert model.record(state)["n_singles_predicted"] == int((~state.measured).sum())
    # a measured gene's single is its measured delta
    g = test.second[0]
    np.testing.assert_allclose(state.single[g], delta[np.flatnonzero(~train.is_pair & (train.first == g))[0]])
    with pytest.raises(DataError, match="no single-gene model predicts it"):
        AdditiveBaseline(single_model=None).predict(
            AdditiveBaseline(single_model=None).fit(Z, train.take(keep), delta[keep]), test
        )


@pytest.mark.slow
@pytest.mark.parametrize("inner", [KNN(k=3), Ridge()])
def test_summed_embedding_models_see_z_a_plus_z_b(inner):
    _, Z, train, delta, test = _split(0.0)
    model = SummedEmbedding(inner)
    pred = model.predict(model.fit(Z, train, delta), test)
    X_train = Z[train.first] + train.is_pair[:, None] * Z[np.maximum(train.second, 0)]
    X_test = Z[test.first] + Z[test.second]
    np.testing.assert_allclose(pred.mean, inner.predict(inner.fit(X_train, delta), X_test).mean)


def test_bad_conditions_are_input_errors():
    rows = {"A": 0, "B": 1}
    with pytest.raises(InputError, match="no embedding row for \\['C'\\]"):
        Conditions.from_names(["A+C"], rows)
    with pytest.raises(InputError, match="more than two"):
        Conditions.from_names(["A+B+A"], rows)
    twice = Conditions(np.array([0, 1]), np.array([-1, 1]), ("A", "B+B"))
    with pytest.raises(InputError, match="one gene twice"):
        AdditiveBaseline().fit(np.ones((2, 3)), twice, np.ones((2, 4)))
