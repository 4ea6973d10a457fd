"""Acquisitions against brute force: every greedy step re-derived from scratch in NumPy.

The brute force never updates anything: at each step it conditions a fresh
GP posterior (NumPy solve) on the training set plus the points chosen so far
(plus each candidate, for the variance reduction) and picks the best
candidate, which is what the rank-one updates must reproduce exactly.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from gpllm.active.acquisitions import BUILTIN, CoreSet, Design, GreedyGP, Random
from gpllm.gp import RBF, params_from_values
from gpllm.models.gp import GPModel

VARIANCE, LENGTHSCALE, NOISE = 1.3, 1.1, 0.05


def rbf(A, B):
    return VARIANCE * np.exp(-0.5 * cdist(A, B, "sqeuclidean") / LENGTHSCALE**2)


def pool_covariance(Z_obs, Z_pool):
    """Latent covariance of the pool given noisy observations at Z_obs (fresh solve)."""
    if len(Z_obs) == 0:
        return rbf(Z_pool, Z_pool)
    A = rbf(Z_obs, Z_obs) + NOISE * np.eye(len(Z_obs))
    K = rbf(Z_obs, Z_pool)
    return rbf(Z_pool, Z_pool) - K.T @ np.linalg.solve(A, K)


def brute_force(score, Z_train, Z_pool, measured, batch_size, effect=None, beta=1.0):
    free = np.ones(len(Z_pool), bool)
    free[measured] = False
    target = free.copy()
    chosen = []
    for _ in range(batch_size):
        observed = np.concatenate([Z_train, Z_pool[chosen]]) if chosen else Z_train
        if score == "reduction":  # total variance over the target set after also measuring j
            values = [
                -np.trace(pool_covariance(np.concatenate([observed, Z_pool[[j]]]), Z_pool[target]))
                if free[j]
                else -np.inf
                for j in range(len(Z_pool))
            ]
        else:
            var = np.diag(pool_covariance(observed, Z_pool))
            values = var if score == "variance" else effect + beta * np.sqrt(np.maximum(var, 0))
            values = np.where(free, values, -np.inf)
        j = int(np.argmax(values))
        chosen.append(j)
        free[j] = False
    return chosen


@pytest.fixture
def design():
    rng = np.random.default_rng(3)
    Z_train, Z_pool = rng.normal(size=(6, 2)), rng.normal(size=(14, 2))
    Y_train = rng.normal(size=(6, 5))
    # Pool points 0-2 are "measured" and in the training set, as in the active loop.
    Z_train = np.concatenate([Z_train, Z_pool[:3]])
    Y_train = np.concatenate([Y_train, rng.normal(size=(3, 5))])
    model = GPModel(RBF())
    params = params_from_values(RBF(), {"variance": VARIANCE, "lengthscale": LENGTHSCALE}, NOISE)
    state = model.condition(params, Z_train, Y_train)
    return Design(model, state, Z_pool, np.arange(3), ctrl=np.zeros(5)), Z_train


@pytest.mark.slow
@pytest.mark.parametrize("score", ["variance", "reduction"])
def test_greedy_gp_batch_matches_brute_force(design, score):
    design, Z_train = design
    got = GreedyGP(score)(design, 6, jax.random.key(0))
    assert got.tolist() == brute_force(score, Z_train, design.Z_pool, design.measured, 6)


def test_ucb_batch_matches_brute_force(design):
    design, Z_train = design
    pool_mean = np.asarray(design.model.predict(design.state, design.Z_pool).mean)  # (P, G), ctrl = 0
    effect = np.sort(np.abs(pool_mean), axis=1)[:, -3:].mean(axis=1)  # mean of the top 3 |delta|
    got = GreedyGP("ucb", beta=2.0, top=3)(design, 5, jax.random.key(0))
    assert got.tolist() == brute_force("ucb", Z_train, design.Z_pool, design.measured, 5, effect, beta=2.0)


def test_coreset_matches_brute_force(design):
    design, _ = design
    chosen, centres = [], list(design.measured)
    for _ in range(5):
        distance = cdist(design.Z_pool, design.Z_pool[centres]).min(axis=1)
        distance[centres] = -np.inf
        chosen.append(int(np.argmax(distance)))
        centres.append(chosen[-1])
    assert CoreSet()(design, 5, jax.random.key(0)).tolist() == chosen


def test_random_picks_unmeasured_without_repeats(design):
    design, _ = design
    for seed in range(20):
        batch = Random()(design, 11, jax.random.key(seed))  # every unmeasured point
        assert sorted(batch.tolist()) == list(range(3, 14))


def test_every_builtin_follows_the_interface(design):
    design, _ = design
    for name, acquire in BUILTIN.items():
        batch = np.asarray(acquire(design, 4, jax.random.key(1)))
        assert batch.shape == (4,) and len(set(batch.tolist())) == 4, name
        assert not set(batch.tolist()) & set(design.measured.tolist()), name


def test_a_fit_without_signal_is_told_apart(design):
    """K A^{-1} (Y - m) against Y - m, recomputed with a NumPy solve."""
    from gpllm.active.simulate import MIN_SIGNAL, carries_signal

    design, Z_train = design
    Y = np.random.default_rng(0).normal(size=(len(Z_train), 5))
    for variance, expected in ((VARIANCE, True), (1e-4 * NOISE, False)):
        params = params_from_values(RBF(), {"variance": variance, "lengthscale": LENGTHSCALE}, NOISE)
        state = design.model.condition(params, Z_train, Y)
        K = variance / VARIANCE * rbf(Z_train, Z_train)
        centred = Y - Y.mean(axis=0)
        explained = K @ np.linalg.solve(K + NOISE * np.eye(len(K)), centred)
        share = np.linalg.norm(explained) / np.linalg.norm(centred)
        assert (share >= MIN_SIGNAL) == expected
        assert carries_signal(design._replace(state=state)) == expected
