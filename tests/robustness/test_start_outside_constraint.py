"""A kernel whose ``init`` starts a parameter beyond its constraint is refused, naming the parameter,
its value and the constraint; a start exactly on a bound (or a rounding beyond it) is still moved inside."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from gpllm import gp
from gpllm.errors import InputError
from gpllm.gp.kernels import RBF


@dataclasses.dataclass(frozen=True)
class MixedRBF(RBF):
    """RBF with a weight w in (0, 1) whose init returns ``start``: k = (w + (1 - w)) RBF."""

    start: float = 0.5

    def init(self, Z, scale=1.0):
        return {**super().init(Z, scale), "w": jnp.asarray(self.start, Z.dtype)}

    def constraints(self):
        return {"variance": gp.positive, "lengthscale": gp.positive, "w": gp.Bounded(0.0, 1.0)}

    def gram(self, params, X1, X2=None):
        return (params["w"] + (1 - params["w"])) * super().gram(params, X1, X2)


def _data(dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 3)).astype(dtype), rng.normal(size=(20, 4)).astype(dtype)


# One case in the fast subset; each start is its own kernel, so its own compiled fit.
@pytest.mark.parametrize(
    "start", [5.0, pytest.param(-0.5, marks=pytest.mark.slow), pytest.param(1.0 + 1e-5, marks=pytest.mark.slow)]
)
def test_a_start_beyond_a_bound_is_an_error_naming_parameter_value_and_constraint(start):
    Z, Y = _data(np.float32)
    with pytest.raises(InputError, match=rf"MixedRBF.init's start params.kernel\['w'\] = {start:g}.* Bounded\(0, 1\)"):
        gp.fit(MixedRBF(start=start), Z, Y)


@pytest.mark.slow
def test_the_batched_fits_check_their_starts_too():
    Z, Y = _data()
    Zb, Yb = np.stack([Z, Z]), np.stack([Y, Y])
    with pytest.raises(InputError, match=r"fit_batched: .*\['w'\] = 5.0 lies outside its constraint Bounded\(0, 1\)"):
        gp.fit_batched(MixedRBF(start=5.0), Zb, Yb)
    with pytest.raises(InputError, match=r"fit_predict_batched: .*\['w'\] = 5.0 lies outside"):
        gp.fit_predict_batched(MixedRBF(start=5.0), Zb, Yb, Zb[:, :2])


@pytest.mark.parametrize(
    ("dtype", "start"),
    [(np.float64, 1.0)]
    + [
        pytest.param(d, s, marks=pytest.mark.slow) for d, s in [(np.float64, 0.0), (np.float32, 0.0), (np.float32, 1.0)]
    ],
)
def test_a_start_on_a_bound_is_moved_just_inside(dtype, start):
    Z, Y = _data(dtype)
    w = float(gp.fit(MixedRBF(start=start), Z, Y).values.kernel["w"])
    assert 0.0 < w < 1.0 and abs(w - start) < 1e-3  # w does not change the kernel: it stays where it began


@pytest.mark.slow
def test_a_start_a_rounding_beyond_a_bound_is_allowed_in_float32():
    Z, Y = _data(np.float32)
    rounding = 2 * np.finfo(np.float32).eps  # e.g. a bound computed as a sum
    assert 0.0 < float(gp.fit(MixedRBF(start=1.0 + rounding), Z, Y).values.kernel["w"]) < 1.0
