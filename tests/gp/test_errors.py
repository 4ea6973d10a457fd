"""Bad input gets a clear gpllm error, raised by our checks before anything compiles."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gpllm import gp
from gpllm.errors import CholeskyError, GPLLMError, InputError, NonFiniteError, ShapeError
from gpllm.gp.objective import GPParams

PARAMS = gp.params_from_values(gp.RBF(), {"variance": 1.0, "lengthscale": 1.0}, 0.1)


def raised_in_checks(excinfo) -> bool:
    """The error came from gpllm's own validation, not from inside JAX/XLA."""
    return any(entry.path.name == "checks.py" for entry in excinfo.traceback)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 6),
    q=st.integers(1, 3),
    d=st.integers(1, 3),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    where=st.sampled_from(["Z", "Y"]),
    data=st.data(),
)
def test_non_finite_values_are_named(n, q, d, bad, where, data):
    Z = data.draw(hnp.arrays(np.float64, (n, q), elements=st.floats(-3, 3)))
    Y = data.draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-3, 3)))
    target = Z if where == "Z" else Y
    i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, target.shape[1] - 1))
    target[i, j] = bad
    with pytest.raises(NonFiniteError, match=f"{where} has 1 non-finite") as excinfo:
        gp.log_marginal_likelihood(gp.RBF(), PARAMS, Z, Y)
    assert f"({i}, {j})" in str(excinfo.value)
    assert raised_in_checks(excinfo)


@settings(max_examples=25, deadline=None)
@given(nz=st.integers(2, 6), ny=st.integers(2, 6), q=st.integers(1, 3))
def test_row_mismatch_is_a_shape_error(nz, ny, q):
    Z, Y = np.zeros((nz, q)), np.zeros((ny, 2))
    if nz == ny:
        return
    with pytest.raises(ShapeError, match="same number of rows") as excinfo:
        gp.fit(gp.RBF(), Z, Y)
    assert raised_in_checks(excinfo)


@pytest.mark.parametrize(
    "Z,Y,error,message",
    [
        (np.zeros((1, 2)), np.zeros((1, 3)), InputError, "at least 2 training rows"),
        (np.zeros(5), np.zeros((5, 3)), ShapeError, "Z must be 2-D"),
        (np.zeros((5, 2)), np.zeros((5, 3, 1)), ShapeError, "Y must be 2-D"),
        (np.zeros((5, 2)), np.zeros((5, 0)), ShapeError, "at least one column"),
        (np.array([["a", "b"]] * 3, dtype=object), np.zeros((3, 1)), InputError, "numeric"),
    ],
)
def test_malformed_arrays(Z, Y, error, message):
    with pytest.raises(error, match=message):
        gp.fit(gp.RBF(), Z, Y)


@settings(max_examples=20, deadline=None)
@given(value=st.floats(max_value=0.0, allow_nan=False), which=st.sampled_from(["variance", "lengthscale", "noise"]))
def test_non_positive_initial_parameters(value, which):
    kernel_values = {"variance": 1.0, "lengthscale": 1.0}
    noise = 0.1
    if which == "noise":
        noise = value
    else:
        kernel_values[which] = value
    with pytest.raises(InputError, match=f"{which}.*must be positive"):
        gp.params_from_values(gp.RBF(), kernel_values, noise)


def test_batched_fit_needs_a_leading_axis():
    with pytest.raises(ShapeError, match="Z must be 3-D"):
        gp.fit_batched(gp.RBF(), np.zeros((4, 2)), np.zeros((4, 2)))


@pytest.mark.slow
def test_indefinite_kernel_raises_cholesky_error_not_nan():
    negative = gp.FunctionKernel(lambda p, x, y: -p["variance"] * jnp.exp(-jnp.sum((x - y) ** 2)), {"variance": 1.0})
    Z, Y = np.random.default_rng(0).normal(size=(6, 2)), np.ones((6, 2))
    params = GPParams(negative.init(jnp.asarray(Z)), PARAMS.noise)
    with pytest.raises(CholeskyError, match="not positive definite even with jitter"):
        gp.log_marginal_likelihood(negative, params, Z, Y)
    with pytest.raises(CholeskyError):
        gp.fit(negative, Z, Y, params0=params, options=gp.FitOptions(max_steps=5))


def test_errors_are_gpllm_errors_and_builtin_value_errors():
    with pytest.raises(GPLLMError):
        gp.fit(gp.RBF(), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(ValueError):
        gp.fit(gp.RBF(), np.zeros((1, 2)), np.zeros((1, 2)))


@pytest.mark.slow
def test_a_fit_that_stalls_below_its_jitter_is_flagged_not_reported_converged():
    """Started at a noise of 1e-30 on repeated inputs, the noise's gradient vanishes under the jitter."""
    rng = np.random.default_rng(0)
    Z = np.repeat(rng.normal(size=(10, 2)), 2, axis=0)
    Y = np.sin(Z @ rng.normal(size=(2, 3))) + 0.1 * rng.normal(size=(20, 3))
    start = gp.params_from_values(gp.RBF(), {"variance": 1.0, "lengthscale": 1.0}, 1e-30)
    with pytest.warns(gp.api.JitterWarning, match="below the jitter"):
        stalled = gp.fit(gp.RBF(), Z, Y, params0=start)
    assert not bool(stalled.converged)
    default = gp.fit(gp.RBF(), Z, Y)
    assert bool(default.converged) and float(default.lml) > float(stalled.lml)


def test_params_of_the_wrong_structure_or_shape_are_named():
    Z, Y = np.random.default_rng(1).normal(size=(2, 8, 3))
    missing = gp.GPParams(kernel={"variance": jnp.zeros(())}, noise=jnp.zeros(()))
    with pytest.raises(InputError, match="do not match the kernel's declared constraints"):
        gp.fit(gp.RBF(), Z, Y, params0=missing)
    ard = gp.GPParams(kernel={"variance": jnp.zeros(()), "lengthscale": jnp.zeros(2)}, noise=jnp.zeros(()))
    with pytest.raises(ShapeError, match=r"params0.kernel\['lengthscale'\] has shape \(2,\).*needs \(3,\)"):
        gp.fit(gp.RBF(ard=True), Z, Y, params0=ard)
    with pytest.raises(InputError, match="max_steps must be an integer >= 1"):
        gp.fit(gp.RBF(), Z, Y, options=gp.FitOptions(max_steps=-1))


def test_cholesky_error_suggests_float64_only_in_float32():
    negative = gp.FunctionKernel(lambda p, x, y: -p["variance"] * jnp.exp(-jnp.sum((x - y) ** 2)), {"variance": 1.0})
    Z, Y = np.random.default_rng(2).normal(size=(2, 6, 2))
    params = gp.params_from_values(negative, {"variance": 1.0}, 1e-3)
    for dtype, hint in ((np.float64, False), (np.float32, True)):
        with pytest.raises(CholeskyError) as caught:
            gp.condition(negative, params, Z.astype(dtype), Y.astype(dtype))
        assert ("compute in float64" in str(caught.value)) is hint
