"""kNN against scikit-learn / SciPy and a brute-force leave-one-out loop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.neighbors import KNeighborsRegressor

from gpllm.errors import InputError
from gpllm.models.knn import CANDIDATE_MARGIN, KNN, loo_mse_all_k, nearest, pairwise_distances


@pytest.mark.parametrize("metric,scipy_metric", [("euclidean", "sqeuclidean"), ("cosine", "cosine")])
def test_pairwise_distances_match_scipy(metric, scipy_metric, make_data, dtype, tol):
    Z, _, Zt = make_data(dtype=dtype)
    got = np.asarray(pairwise_distances(Zt, Z, metric))
    np.testing.assert_allclose(got, cdist(Zt.astype(float), Z.astype(float), scipy_metric), **tol)


def test_squared_distance_of_a_point_to_itself_is_clamped_nonnegative():
    # Large-norm rows make |a|^2 + |a|^2 - 2 a.a round to a nonzero value.
    A = np.random.default_rng(1).normal(size=(50, 8)) * 1e4 + 1e5
    D = np.asarray(pairwise_distances(A, A, "euclidean"))
    assert D.min() >= 0.0


def _reference_nearest(D, k):
    """k smallest per row by (value, index), in NumPy."""
    cols = np.arange(D.shape[1])
    return np.stack([np.lexsort((cols, row))[:k] for row in D])


@pytest.mark.parametrize("k", [1, 2, 5, 40])
@pytest.mark.parametrize("kind", ["random", "exact_ties", "float32_ties_within_margin", "float32_ties_past_margin"])
def test_nearest_is_exact_with_ties_to_the_lower_index(k, kind, dtype):
    rng = np.random.default_rng(k)
    D = rng.random((6, 60))
    if kind == "exact_ties":
        D = np.round(D * 4) / 4  # a handful of values, each tied many times
    elif kind.startswith("float32_ties"):
        # Distinct in float64 but one value in float32: the exact order can only
        # come from float64, and past the margin only from the full-sort fallback.
        width = 3 if kind.endswith("within_margin") else CANDIDATE_MARGIN + 5
        D[:, 10 : 10 + width] = 0.01 * (1 + 1e-12 * rng.permutation(width))
    D = D.astype(dtype)
    np.testing.assert_array_equal(np.asarray(nearest(D, k)), _reference_nearest(D, k))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_predictions_match_sklearn(k, metric, make_data, dtype, tol):
    Z, Y, Zt = make_data(dtype=dtype)
    model = KNN(k=k, metric=metric)
    got = model.predict(model.fit(Z, Y), Zt)
    ref = KNeighborsRegressor(n_neighbors=k, metric=metric, algorithm="brute").fit(Z, Y).predict(Zt)
    assert got.mean.dtype == got.var.dtype == dtype
    np.testing.assert_allclose(np.asarray(got.mean), ref, **tol)


def _brute_force_loo(Z, Y, ks):
    """LOO MSE per k: predict each training point from its k nearest other points."""
    Z, Y = Z.astype(float), Y.astype(float)
    D = cdist(Z, Z, "sqeuclidean")
    np.fill_diagonal(D, np.inf)
    order = np.argsort(D, axis=1, kind="stable")
    out = []
    for k in ks:
        errs = [np.mean((Y[i] - Y[order[i, :k]].mean(axis=0)) ** 2) for i in range(len(Z))]
        out.append(np.mean(errs))
    return np.array(out)


@pytest.mark.slow
def test_loo_mse_for_every_k_matches_brute_force(make_data, dtype, tol):
    Z, Y, _ = make_data(dtype=dtype)
    got = np.asarray(loo_mse_all_k(Z, Y, "euclidean", 12))
    np.testing.assert_allclose(got, _brute_force_loo(Z, Y, range(1, 13)), **tol)


@pytest.mark.slow
def test_tuned_k_is_the_brute_force_argmin_and_predicts_like_that_fixed_k(make_data, dtype, tol):
    Z, Y, Zt = make_data(n=40, dtype=dtype)
    model = KNN(k="tune", k_grid=(1, 2, 3, 5, 10, 20))
    state = model.fit(Z, Y)
    ref = _brute_force_loo(Z, Y, (1, 2, 3, 5, 10, 20))
    np.testing.assert_array_equal(np.asarray(state.k_grid), [1, 2, 3, 5, 10, 20])
    np.testing.assert_allclose(np.asarray(state.loo_mse), ref, **tol)
    k = int(state.k)
    assert k == (1, 2, 3, 5, 10, 20)[int(np.argmin(ref))]
    fixed = KNN(k=k)
    np.testing.assert_allclose(
        np.asarray(model.predict(state, Zt).mean),
        np.asarray(fixed.predict(fixed.fit(Z, Y), Zt).mean),
        **tol,
    )


def test_tuning_prefers_large_k_for_pure_noise_and_k1_for_twinned_points():
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(60, 2))
    noise = rng.normal(size=(60, 5))
    assert int(KNN(k="tune").fit(Z, noise).k) >= 20
    # Each point has a twin (nearly the same embedding, the same profile) and
    # unrelated neighbours beyond it: only k = 1 predicts exactly.
    centres, profiles = rng.normal(size=(30, 2)) * 10, rng.normal(size=(30, 5))
    Zt = np.repeat(centres, 2, axis=0) + 1e-3 * rng.normal(size=(60, 2))
    state = KNN(k="tune").fit(Zt, np.repeat(profiles, 2, axis=0))
    assert int(state.k) == 1 and float(state.loo_mse[0]) < 1e-20


def test_grid_entries_above_n_minus_1_are_skipped_and_recorded():
    Z, Y = np.arange(12.0).reshape(6, 2), np.arange(18.0).reshape(6, 3) ** 2
    state = KNN(k="tune", k_grid=(1, 2, 5, 10)).fit(Z, Y)
    np.testing.assert_array_equal(np.asarray(state.k_grid), [1, 2, 5])


def test_config_is_hashable_and_normalised():
    assert KNN(k="tune", k_grid=(5, 1, 5)) == KNN(k="tune", k_grid=(1, 5))
    assert hash(KNN(k="tune", k_grid=(5, 1))) == hash(KNN(k="tune", k_grid=(1, 5)))
    assert KNN(k=np.int64(3)) == KNN(k=3) and isinstance(KNN(k=np.int64(3)).k, int)
    assert len({KNN(1).name, KNN(3).name, KNN("tune").name, KNN(1, "cosine").name}) == 4


@pytest.mark.parametrize(
    "kwargs",
    [{"k": 0}, {"k": 2.0}, {"k": True}, {"k": "auto"}, {"metric": "l1"}, {"k_grid": ()}, {"k_grid": (0, 1)}],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(InputError):
        KNN(**kwargs)


def test_k_larger_than_training_set_raises_naming_both():
    Z, Y = np.zeros((3, 2)), np.zeros((3, 4))
    with pytest.raises(InputError, match=r"k=5.*3 training"):
        KNN(k=5).fit(Z, Y)


def test_tuning_needs_two_points_and_a_usable_grid():
    with pytest.raises(InputError, match="at least 2"):
        KNN(k="tune").fit(np.zeros((1, 2)), np.zeros((1, 4)))
    with pytest.raises(InputError, match="k_grid"):
        KNN(k="tune", k_grid=(5,)).fit(np.ones((3, 2)), np.ones((3, 4)))


def test_neighbour_averages_are_the_means_of_the_first_k_neighbours():
    """Each row's average over its first k neighbours, against NumPy: exactly the nearest row for
    k = 1 (a gather), the mean of the k rows up to rounding for k > 1 (k traced, below kmax)."""
    import jax.numpy as jnp

    from gpllm.models.knn import _averages

    rng = np.random.default_rng(4)
    Z, Zt = rng.normal(size=(30, 3)), rng.normal(size=(7, 3))
    Y = rng.normal(size=(30, 5))
    D = pairwise_distances(jnp.asarray(Zt), jnp.asarray(Z), "euclidean")
    for kmax, k in ((1, 1), (3, 2), (6, 5)):
        idx = np.asarray(nearest(D, kmax))
        got = _averages(jnp.asarray(idx), jnp.asarray(k), jnp.asarray(Y), jnp.asarray(Y * Y))
        for X, average in zip((Y, Y * Y), got):
            want = X[idx[:, :k]].mean(axis=1)
            if k == 1:
                np.testing.assert_array_equal(np.asarray(average), want)
            else:
                np.testing.assert_allclose(np.asarray(average), want, rtol=1e-13, atol=1e-15)
