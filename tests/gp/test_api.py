"""The public ``gp`` surface: one argument order, keyword-only options, old call forms named."""

from __future__ import annotations

import inspect
import pydoc
import subprocess
import sys

import jax
import numpy as np
import pytest

from gpllm import gp
from gpllm.errors import InputError, ShapeError
from tests.gp.helpers import problem

PARAMS = gp.params_from_values(gp.RBF(), {"variance": 1.2, "lengthscale": 1.1}, 0.05)
OPTIONS = gp.FitOptions(max_steps=3)


@pytest.fixture(scope="module")
def data():
    Z, Y = problem(n=12, d=3)
    return Z, Y, gp.condition(gp.RBF(), PARAMS, Z, Y)


@pytest.mark.parametrize(
    "call, keyword_form",
    [
        (
            lambda Z, Y, post: gp.fit(gp.RBF(), Z, Y, PARAMS, OPTIONS),
            r"gp.fit\(kernel, Z, Y, params0=..., options=...\)",
        ),
        (lambda Z, Y, post: gp.fit(gp.RBF(), Z, Y, PARAMS), r"gp.fit\(kernel, Z, Y, params0=...\)"),
        (lambda Z, Y, post: gp.fit_batched(gp.RBF(), Z[None], Y[None], None, OPTIONS), r"params0=..., options=..."),
        (lambda Z, Y, post: gp.fit_predict_batched(gp.RBF(), Z[None], Y[None], Z[None], None), r"Z_new, params0=...\)"),
        (
            lambda Z, Y, post: gp.predict(gp.RBF(), post, Z, True),
            r"gp.predict\(kernel, post, Z_new, include_noise=...\)",
        ),
        (lambda Z, Y, post: gp.sample(gp.RBF(), post, Z, jax.random.key(0), 5), r"key, n_samples=...\)"),
        (lambda Z, Y, post: gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y, "gram"), r"Y, path=...\)"),
    ],
)
def test_old_positional_call_forms_name_the_keyword_form(data, call, keyword_form):
    with pytest.raises(InputError, match=keyword_form):
        call(*data)


def test_siblings_share_one_argument_order():
    """kernel first, then params where required, then the data; everything optional keyword-only."""
    leading = {
        "log_marginal_likelihood": ["kernel", "params", "Z", "Y"],
        "value_and_grad": ["kernel", "params", "Z", "Y"],
        "fit": ["kernel", "Z", "Y"],
        "fit_batched": ["kernel", "Z", "Y"],
        "fit_predict_batched": ["kernel", "Z", "Y", "Z_new"],
        "condition": ["kernel", "params", "Z", "Y"],
        "predict": ["kernel", "post", "Z_new"],
        "sample": ["kernel", "post", "Z_new", "key"],
    }
    for name, expected in leading.items():
        signature = inspect.signature(getattr(gp, name))
        positional = [p.name for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
        assert positional == expected, name
        assert all(
            p.default is inspect.Parameter.empty
            for p in signature.parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD
        ), name


def test_every_public_function_documents_its_arguments_and_returns():
    for name in (
        "log_marginal_likelihood",
        "value_and_grad",
        "fit",
        "fit_batched",
        "fit_predict_batched",
        "condition",
        "predict",
        "sample",
        "params_from_values",
        "params_to_values",
    ):
        doc = inspect.getdoc(getattr(gp, name))
        assert "Args:" in doc and "Returns:" in doc, name


def test_predict_and_sample_share_the_include_noise_default():
    defaults = {
        inspect.signature(f).parameters["include_noise"].default
        for f in (gp.predict, gp.sample, gp.fit_predict_batched)
    }
    assert defaults == {True}


def test_predict_default_is_the_variance_of_a_measured_profile(data):
    Z, _, post = data
    _, noisy = gp.predict(gp.RBF(), post, Z[:4])
    _, latent = gp.predict(gp.RBF(), post, Z[:4], include_noise=False)
    np.testing.assert_allclose(np.asarray(noisy) - np.asarray(latent), 0.05, rtol=1e-10)


def test_value_and_grad_takes_Y_or_prepared_targets(data):
    Z, Y, _ = data
    for path in ("direct", "gram"):
        from_y = gp.value_and_grad(gp.RBF(), PARAMS, Z, Y, path=path)
        from_targets = gp.value_and_grad(gp.RBF(), PARAMS, Z, gp.prepare_targets(Y, path))
        np.testing.assert_allclose(float(from_y[0]), float(from_targets[0]), rtol=1e-12)
        for a, b in zip(jax.tree.leaves(from_y[1]), jax.tree.leaves(from_targets[1])):
            np.testing.assert_allclose(a, b, rtol=1e-10)
    np.testing.assert_allclose(float(from_y[0]), float(gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y).value))
    with pytest.raises(InputError, match="path='gram' and output_scales='shared' apply to an array Y"):
        gp.value_and_grad(gp.RBF(), PARAMS, Z, gp.prepare_targets(Y), path="gram")


def test_a_wrong_length_ard_lengthscale_is_a_shape_error_everywhere(data):
    Z, Y, _ = data  # Q = 3 columns, lengthscale of 2
    wrong = gp.params_from_values(gp.RBF(ard=True), {"variance": 1.0, "lengthscale": np.ones(2)}, 0.1)
    message = r"params.kernel\['lengthscale'\] has shape \(2,\).*needs \(3,\)"
    with pytest.raises(ShapeError, match=message):
        gp.log_marginal_likelihood(gp.RBF(ard=True), wrong, Z, Y)
    with pytest.raises(ShapeError, match=message):
        gp.value_and_grad(gp.RBF(ard=True), wrong, Z, Y)
    with pytest.raises(ShapeError, match=message):
        gp.value_and_grad(gp.RBF(ard=True), wrong, Z, gp.prepare_targets(Y))


def test_a_cancelled_variance_is_floored_and_named_not_zero(data):
    """A kernel variance of 1e300 at training inputs: k** - k*^T A^-1 k* is pure rounding."""
    Z, Y, _ = data
    huge = gp.params_from_values(gp.RBF(), {"variance": 1e300, "lengthscale": 1.1}, 1.0)
    post = gp.condition(gp.RBF(), huge, Z, Y)
    with pytest.warns(gp.VarianceWarning, match="at 2 of 2 test point"):
        _, var = gp.predict(gp.RBF(), post, Z[:2], include_noise=False)
    floor = Z.shape[0] * np.finfo(np.float64).eps * 1e300
    np.testing.assert_allclose(np.asarray(var), floor, rtol=0.5)  # the floor, never 0 or an arbitrary rounding
    assert np.all(np.asarray(var) >= floor)


def test_a_resolved_variance_raises_no_warning(data, recwarn):
    Z, _, post = data
    gp.predict(gp.RBF(), post, Z[:3])
    gp.predict(gp.RBF(), post, Z[:3] + 5.0, include_noise=False)
    assert not [w for w in recwarn if issubclass(w.category, gp.VarianceWarning)]


def test_import_gpllm_reaches_the_documented_helpers():
    code = (
        "import gpllm; print(callable(gpllm.blas.limit_openblas_spin), callable(gpllm.compilation_cache.enable), "
        "callable(gpllm.use_float64))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_help_of_limit_openblas_spin_does_not_print_the_environment(monkeypatch):
    monkeypatch.setenv("GPLLM_TEST_SECRET_LOOKING_VALUE", "do-not-print-me")
    import gpllm

    text = pydoc.render_doc(gpllm.blas.limit_openblas_spin)
    assert "do-not-print-me" not in text and "environ" in text
