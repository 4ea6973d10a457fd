"""The GP model: the paper's GP+LLM through the shared interface, checked against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process import kernels as skk

from gpllm import gp
from gpllm.errors import InputError, NonFiniteError, ShapeError
from gpllm.models.base import Model
from gpllm.models.gp import GPModel


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(45, 3))
    Y = 2.0 + np.tanh(Z @ rng.normal(size=(3, 6))) + 0.2 * rng.normal(size=(45, 6))
    return Z[:35], Y[:35], Z[35:], Y[35:]


@pytest.fixture(scope="module")
def fitted(data):
    Z, Y, _, _ = data
    model = GPModel()
    return model, model.fit(Z, Y)


@pytest.mark.slow
def test_follows_the_model_protocol(fitted):
    model, state = fitted
    assert isinstance(model, Model)
    assert hash(model) == hash(GPModel())
    assert bool(state.fit.converged)


def test_prediction_equals_sklearn_with_the_fitted_hyperparameters(data, fitted):
    Z, Y, Zs, _ = data
    model, state = fitted
    values = gp.params_to_values(gp.RBF(), state.fit.params)
    kernel = skk.ConstantKernel(float(values["kernel"]["variance"])) * skk.RBF(float(values["kernel"]["lengthscale"]))
    sk = GaussianProcessRegressor(kernel + skk.WhiteKernel(float(values["noise"])), optimizer=None, alpha=0.0)
    sk.fit(Z, Y - Y.mean(0))
    sk_mean, sk_std = sk.predict(Zs, return_std=True)
    pred = model.predict(state, Zs)
    np.testing.assert_allclose(pred.mean, sk_mean + Y.mean(0), rtol=1e-8)
    np.testing.assert_allclose(np.sqrt(pred.var), sk_std[:, 0], rtol=1e-7)


def test_fit_maximises_the_likelihood(data, fitted):
    Z, Y, _, _ = data
    _, state = fitted
    best = float(gp.log_marginal_likelihood(gp.RBF(), state.fit.params, Z, Y - Y.mean(0)).value)
    for factor in (0.8, 1.25):
        values = gp.params_to_values(gp.RBF(), state.fit.params)
        moved = gp.params_from_values(
            gp.RBF(),
            {"variance": values["kernel"]["variance"], "lengthscale": values["kernel"]["lengthscale"] * factor},
            values["noise"],
        )
        assert float(gp.log_marginal_likelihood(gp.RBF(), moved, Z, Y - Y.mean(0)).value) < best


def test_far_from_data_it_reverts_to_the_training_mean(data, fitted):
    Z, Y, _, _ = data
    model, state = fitted
    far = np.full((1, 3), 1e3)
    np.testing.assert_allclose(model.predict(state, far).mean[0], Y.mean(0), rtol=1e-10)


@pytest.mark.slow
def test_per_block_kernels_and_options():
    rng = np.random.default_rng(1)
    Z, Y = rng.normal(size=(30, 4)), rng.normal(size=(30, 3))
    model = GPModel(
        kernel=gp.Active(gp.RBF(), 0, 2) + gp.Active(gp.RBF(), 2, 4),
        options=gp.FitOptions(optimizer="adam", max_steps=20),
    )
    state = model.fit(Z, Y)
    assert int(state.fit.n_steps) <= 20
    assert model.predict(state, Z[:2]).mean.shape == (2, 3)


def test_bad_inputs_are_named(fitted):
    model, state = fitted
    with pytest.raises(NonFiniteError, match="Z_train"):
        model.fit(np.array([[np.nan, 0, 0], [1, 1, 1]]), np.zeros((2, 2)))
    with pytest.raises(ShapeError, match="embedding dimension 2"):
        model.predict(state, np.zeros((1, 2)))


@pytest.mark.slow
def test_small_float32_fits_run_in_float64_and_reach_the_better_mode():
    """A case with a known better mode: on 100 perturbations of a synthetic screen, float32
    stops on the low-signal region (a kernel variance ~5e-5), float64 climbs to the higher LML."""
    from gpllm.data.embeddings.assemble import build_embedding
    from gpllm.data.synthetic.screens import make_screens
    from gpllm.models.base import Fold

    draw = make_screens(0, n_perts=200)
    screen = draw.screens["K562"]
    emb = build_embedding({"text": draw.vectors["text"]}, screen.perts, k=50)
    data = screen.select(emb.names)
    rng = np.random.default_rng(0)
    folds = []
    for _ in range(2):
        idx = rng.permutation(len(emb.names))
        folds.append(Fold(emb.Z[idx[:100]], data.Y[idx[:100]], emb.Z[idx[100:110]]))
    float32 = GPModel(dtype="float32", float64_below=0).fit_predict_folds(folds)
    default = GPModel(dtype="float32").fit_predict_folds(folds)  # float64_below=300
    for f32, f64 in zip(float32, default):
        assert f64.record["lml"] > f32.record["lml"] + 1.0
        assert f64.record["kernel"]["variance"] > 5 * f32.record["kernel"]["variance"]


# ------------------------------------------------------- per-gene output scales


@pytest.fixture(scope="module")
def scaled(data):
    from gpllm.models.registry import build_model

    Z, Y, _, _ = data
    model = build_model("gp_scaled")
    return model, model.fit(Z, Y * np.logspace(-1, 1, Y.shape[1]))


def test_the_recommended_gp_has_per_gene_scales_and_a_noise_prior(scaled):
    model, _ = scaled
    assert model.name == "gp_scaled" and model.per_output and model.options.noise_ratio_prior is not None
    assert model.kernel == gp.RBF()
    assert GPModel().options.output_scales == "shared" and GPModel().options.noise_ratio_prior is None  # the paper's


def test_per_gene_scales_give_a_variance_per_gene(data, scaled):
    Z, Y, Zs, _ = data
    model, state = scaled
    Y = Y * np.logspace(-1, 1, Y.shape[1])
    pred = model.predict(state, Zs)
    assert np.shape(pred.var) == Zs.shape[:1] + Y.shape[1:]
    scales = np.asarray(state.posterior.scales)
    # Each gene's variance is its scale times one shared shape: ratios across genes are the scales'.
    ratio = np.asarray(pred.var) / scales
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:, :1], ratio.shape), rtol=1e-8)
    assert scales[-1] > 10 * scales[0]  # the genes' spreads differ 100-fold
    held = model.heldout(state, Z, Y)
    shared = GPModel(kernel=model.kernel).heldout(state._replace(posterior=state.posterior._replace(scales=None)), Z, Y)
    np.testing.assert_allclose(np.asarray(held.residual), np.asarray(shared.residual))
    np.testing.assert_allclose(np.asarray(held.var), np.asarray(shared.var)[:, None] * scales, rtol=1e-10)


def test_a_gene_constant_in_the_training_fold_is_named(data, scaled):
    Z, Y, _, _ = data
    Y = Y.copy()
    Y[:, 3] = 1.5
    with pytest.raises(InputError, match=r"zero variance \(column 3\)"):
        scaled[0].fit(Z, Y)


@pytest.mark.slow  # long fits: each L-BFGS program compiles for seconds
def test_warm_starts_are_used_only_when_asked(data):
    from gpllm.models.base import Fold

    Z, Y, Zs, _ = data
    folds = [Fold(Z[:20], Y[:20], Zs), Fold(Z[10:30], Y[10:30], Zs)]
    model = GPModel(options=gp.FitOptions(max_steps=30))
    fresh = model.fit_predict_folds(folds)
    odd = gp.params_from_values(gp.RBF(), {"variance": 0.3, "lengthscale": 0.7}, 0.5)
    record = model.record(model.condition(odd, Z[:20], Y[:20]))
    ignored = model.fit_predict_folds(folds, [record, record])
    for a, b in zip(fresh, ignored):
        np.testing.assert_array_equal(a.record["raw"], b.record["raw"])
    warm = GPModel(options=gp.FitOptions(max_steps=1), warm_start=True, fresh_start_below=0)
    started = warm.fit_predict_folds(folds, [record, record])
    assert any(abs(s.record["noise"] - f.record["noise"]) > 1e-3 for s, f in zip(started, fresh))
