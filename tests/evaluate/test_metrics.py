"""Metrics against a straightforward SciPy/NumPy loop, and hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.stats import binom, norm, pearsonr

from gpllm.errors import InputError, NonFiniteError, ShapeError
from gpllm.evaluate.metrics import (
    COVERAGE_LEVELS,
    perturbation_metrics,
    predictive_scores,
    summarize_over_splits,
    variance_scale,
)


def _reference_metrics(Y, Yh, ref, de):
    """GEARS-style loop: scipy pearsonr per perturbation, NaN (constant) -> 0."""
    Y, Yh, ref = (np.asarray(a, float) for a in (Y, Yh, ref))
    ref = np.broadcast_to(ref, Y.shape)
    out = {k: [] for k in ("pearson_de", "pearson_all", "mae_de", "mae_all", "mse_de", "mse_all")}
    for p in range(len(Y)):
        d, dh = Y[p] - ref[p], Yh[p] - ref[p]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's ConstantInputWarning
            r_all = pearsonr(dh, d)[0]
            r_de = pearsonr(dh[de[p]], d[de[p]])[0]
        out["pearson_all"].append(0.0 if np.isnan(r_all) else r_all)
        out["pearson_de"].append(0.0 if np.isnan(r_de) else r_de)
        out["mae_all"].append(np.mean(np.abs(Yh[p] - Y[p])))
        out["mae_de"].append(np.mean(np.abs(Yh[p, de[p]] - Y[p, de[p]])))
        # GEARS: mse = mean_squared_error(true, pred) per perturbation, over all and the DE genes
        out["mse_all"].append(np.mean((Yh[p] - Y[p]) ** 2))
        out["mse_de"].append(np.mean((Yh[p, de[p]] - Y[p, de[p]]) ** 2))
    return {k: np.array(v) for k, v in out.items()}


def _random_case(m=6, g=50, k=20, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    ctrl = rng.uniform(0, 3, size=g)
    Y = ctrl + rng.normal(scale=0.5, size=(m, g)) + 0.2
    Yh = Y + rng.normal(scale=0.5, size=(m, g))
    de = np.stack([rng.choice(g, size=k, replace=False) for _ in range(m)])
    return Y.astype(dtype), Yh.astype(dtype), ctrl.astype(dtype), de


def _assert_matches(got, ref, tol):
    for name, want in ref.items():
        np.testing.assert_allclose(np.asarray(getattr(got, name)), want, err_msg=name, **tol)


@pytest.mark.slow
def test_matches_scipy_loop(dtype, tol):
    Y, Yh, ctrl, de = _random_case(dtype=dtype)
    got = perturbation_metrics(Y, Yh, reference=ctrl, de=de)
    _assert_matches(got, _reference_metrics(Y, Yh, ctrl, de), tol)
    assert got.pearson_all.dtype == dtype
    assert not np.asarray(got.undefined_all).any() and not np.asarray(got.undefined_de).any()


def test_training_mean_reference_is_systema_delta(tol):
    """Deltas against the mean training profile instead of ctrl change Pearson, not MAE."""
    Y, Yh, ctrl, de = _random_case(seed=1)
    train_mean = np.random.default_rng(2).uniform(0, 3, size=Y.shape[1])
    systema = perturbation_metrics(Y, Yh, reference=train_mean, de=de)
    gears = perturbation_metrics(Y, Yh, reference=ctrl, de=de)
    _assert_matches(systema, _reference_metrics(Y, Yh, train_mean, de), {"rtol": 1e-10})
    assert not np.allclose(np.asarray(systema.pearson_all), np.asarray(gears.pearson_all))
    np.testing.assert_array_equal(np.asarray(systema.mae_all), np.asarray(gears.mae_all))


def test_per_perturbation_reference_rows():
    Y, Yh, ctrl, de = _random_case(seed=3)
    refs = np.random.default_rng(4).uniform(0, 3, size=Y.shape)
    got = perturbation_metrics(Y, Yh, reference=refs, de=de)
    _assert_matches(got, _reference_metrics(Y, Yh, refs, de), {"rtol": 1e-10})


def test_hand_computed_case():
    ctrl = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    Y = np.array([[2.0, 3.0, 4.0, 5.0, 1.0]])  # delta = [1, 2, 3, 4, 0]
    Yh = np.array([[1.0, 3.0, 2.0, 4.0, 2.0]])  # delta_hat = [0, 2, 1, 3, 1]
    de = np.array([[0, 1, 2]])  # delta [1, 2, 3] vs delta_hat [0, 2, 1]
    got = perturbation_metrics(Y, Yh, reference=ctrl, de=de)
    # DE: centred [-1, 0, 1] and [-1, 1, 0] -> r = 1 / (sqrt 2 sqrt 2) = 0.5
    assert float(got.pearson_de[0]) == pytest.approx(0.5)
    # all: centred delta [-1, 0, 1, 2, -2], delta_hat [-1.4, 0.6, -0.4, 1.6, -0.4]
    # sum of products 1.4 + 0 - 0.4 + 3.2 + 0.8 = 5, sums of squares 10 and 5.2
    assert float(got.pearson_all[0]) == pytest.approx(5 / np.sqrt(52))
    assert float(got.mae_de[0]) == pytest.approx((1 + 0 + 2) / 3)
    assert float(got.mae_all[0]) == pytest.approx((1 + 0 + 2 + 1 + 1) / 5)


def test_perfect_and_reversed_predictions():
    ctrl = np.zeros(4)
    Y = np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    Yh = np.array([[2.0, 4.0, 6.0, 8.0], [4.0, 3.0, 2.0, 1.0]])
    got = perturbation_metrics(Y, Yh, reference=ctrl, de=np.array([[0, 3], [1, 2]]))
    np.testing.assert_allclose(np.asarray(got.pearson_all), [1.0, -1.0])
    np.testing.assert_allclose(np.asarray(got.pearson_de), [1.0, -1.0])


def test_constant_prediction_scores_zero_and_is_flagged():
    Y, _, ctrl, de = _random_case(m=4)
    Yh = np.tile(ctrl, (4, 1))  # the Control baseline: delta_hat = 0
    got = perturbation_metrics(Y, Yh, reference=ctrl, de=de)
    np.testing.assert_array_equal(np.asarray(got.pearson_all), 0.0)
    np.testing.assert_array_equal(np.asarray(got.pearson_de), 0.0)
    assert int(np.sum(got.undefined_all)) == 4 and int(np.sum(got.undefined_de)) == 4
    _assert_matches(got, _reference_metrics(Y, Yh, ctrl, de), {"rtol": 1e-12})


@pytest.mark.slow
def test_truth_constant_over_de_genes_only_is_flagged_there_only(dtype):
    Y, Yh, ctrl, de = _random_case(m=3, dtype=dtype)
    # A constant delta over row 1's DE genes, up to the rounding of x - ctrl
    # (scipy would correlate that rounding noise).
    Y[1, de[1]] = ctrl[de[1]] + dtype(0.7)
    got = perturbation_metrics(Y, Yh, reference=ctrl, de=de)
    np.testing.assert_array_equal(np.asarray(got.undefined_de), [False, True, False])
    assert not np.asarray(got.undefined_all).any()
    assert float(got.pearson_de[1]) == 0.0
    ref = _reference_metrics(Y, Yh, ctrl, de)
    ref["pearson_de"][1] = 0.0
    _assert_matches(got, ref, {"rtol": 1e-4, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-10})


def test_the_reference_computed_another_way_is_a_constant_prediction(dtype):
    """The mean training profile as a model predicts it (exactly rounded, in the model's
    dtype) against the same mean as the sweep takes it for the reference (NumPy, float64):
    deltas of rounding only, so flagged and scored 0, never correlated noise."""
    rng = np.random.default_rng(5)
    Y_train = rng.uniform(0.5, 5.0, size=(1500, 50))
    reference = Y_train.mean(axis=0)
    predicted = np.array([math.fsum(column) / len(column) for column in Y_train.T]).astype(dtype)
    # More than the rounding of the float64 subtraction (all that used to be allowed for):
    # this noise then correlated with the truth at random.
    assert np.ptp(predicted - reference) > 4 * np.finfo(np.float64).eps * Y_train.max()
    Y, _, _, de = _random_case(m=6, seed=6)
    got = perturbation_metrics(Y, np.tile(predicted, (6, 1)), reference=reference, de=de)
    assert np.asarray(got.undefined_de).all() and np.asarray(got.undefined_all).all()
    np.testing.assert_array_equal(np.asarray(got.pearson_de), 0.0)
    np.testing.assert_array_equal(np.asarray(got.pearson_all), 0.0)


def test_nearly_constant_prediction_is_still_a_correlation(dtype):
    """Variation well above the rounding of the dtype still correlates."""
    Y, _, ctrl, de = _random_case(m=1, dtype=dtype)
    Yh = ctrl + dtype(1e-9 if dtype == np.float64 else 1e-3) * (Y - ctrl)
    got = perturbation_metrics(Y, Yh, reference=ctrl, de=de)
    assert float(got.pearson_all[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(got.pearson_de[0]) == pytest.approx(1.0, abs=1e-3)
    assert not bool(got.undefined_all[0]) and not bool(got.undefined_de[0])


@settings(max_examples=15, deadline=None)
@given(
    which=st.sampled_from(["Y_true", "Y_pred", "reference"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    col=st.integers(0, 49),
)
def test_non_finite_input_is_a_clear_error(which, value, col):
    Y, Yh, ctrl, de = _random_case()
    arrays = {"Y_true": Y, "Y_pred": Yh, "reference": ctrl}
    if which == "reference":
        ctrl[col] = value
    else:
        arrays[which][2, col] = value
    with pytest.raises(NonFiniteError, match=which):
        perturbation_metrics(Y, Yh, reference=ctrl, de=de)


def test_bad_shapes_and_de_indices_are_clear_errors():
    Y, Yh, ctrl, de = _random_case()
    with pytest.raises(ShapeError, match="Y_pred"):
        perturbation_metrics(Y, Yh[:, :10], reference=ctrl, de=de)
    with pytest.raises(ShapeError, match="reference"):
        perturbation_metrics(Y, Yh, reference=ctrl[:10], de=de)
    with pytest.raises(ShapeError, match="de"):
        perturbation_metrics(Y, Yh, reference=ctrl, de=de[:2])
    bad = de.copy()
    bad[3, 0] = 50
    with pytest.raises(InputError, match=r"row 3 .*outside \[0, 50\)"):
        perturbation_metrics(Y, Yh, reference=ctrl, de=bad)
    bad = de.copy()
    bad[4, 1] = bad[4, 0]
    with pytest.raises(InputError, match="first row 4"):
        perturbation_metrics(Y, Yh, reference=ctrl, de=bad)
    with pytest.raises(InputError, match="integers"):
        perturbation_metrics(Y, Yh, reference=ctrl, de=de.astype(float))


def _reference_scores(Y, mu, var, levels):
    """NLL from scipy's logpdf, coverage from scipy's central intervals, per element."""
    sd = np.sqrt(np.broadcast_to(var.reshape(len(Y), -1), Y.shape))
    inside = []
    for level in levels:
        lo, hi = norm.interval(level, loc=mu, scale=sd)
        inside.append(((Y >= lo) & (Y <= hi)).mean(axis=1))
    return -norm.logpdf(Y, mu, sd).mean(axis=1), np.stack(inside, axis=1)


@pytest.mark.parametrize("shared", [True, False], ids=["var (M,)", "var (M, G)"])
def test_predictive_scores_match_scipy(dtype, tol, shared):
    rng = np.random.default_rng(5)
    Y, mu = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    var = rng.uniform(0.5, 2.0, size=4 if shared else (4, 30))
    got = predictive_scores(Y.astype(dtype), mu.astype(dtype), var.astype(dtype))
    nll, coverage = _reference_scores(Y, mu, var, COVERAGE_LEVELS)
    np.testing.assert_allclose(np.asarray(got.nll), nll, **tol)
    # Elements within rounding of an interval's end may fall either side in float32.
    np.testing.assert_allclose(np.asarray(got.coverage), coverage, atol=0 if dtype == np.float64 else 1 / 30)


def test_crps_equals_numerical_integration_of_the_squared_cdf_difference():
    """CRPS(F, x) = int (F(y) - 1{y >= x})^2 dy, by quadrature on each side of x."""
    rng = np.random.default_rng(7)
    Y, mu = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    var = rng.uniform(0.1, 3.0, size=(3, 4))
    got = np.asarray(predictive_scores(Y, mu, var).crps)

    def crps_by_quadrature(x: float, mean: float, sd: float) -> float:
        def F(y):
            return norm.cdf(y, mean, sd)

        below = quad(lambda y: F(y) ** 2, -np.inf, x)[0]
        above = quad(lambda y: (1 - F(y)) ** 2, x, np.inf)[0]
        return below + above

    want = np.zeros_like(Y)
    for idx in np.ndindex(Y.shape):
        want[idx] = crps_by_quadrature(Y[idx], mu[idx], np.sqrt(var[idx]))
    np.testing.assert_allclose(got, want.mean(axis=1), rtol=1e-7)


def test_crps_equals_the_energy_form_by_brute_force():
    """CRPS = E|X - x| - E|X - X'| / 2 (properscoring's ensemble form), with both
    expectations by quadrature against the normal density."""
    mu, sd, x = 0.3, 1.7, -1.1
    e_abs = quad(lambda y: abs(y - x) * norm.pdf(y, mu, sd), -np.inf, np.inf)[0]
    e_pair = 2 * sd / np.sqrt(np.pi)  # E|X - X'| for X, X' ~ N(mu, sd^2): |N(0, 2 sd^2)|
    assert np.isclose(e_pair, quad(lambda d: abs(d) * norm.pdf(d, 0, np.sqrt(2) * sd), -np.inf, np.inf)[0])
    got = float(predictive_scores(np.array([[x, x]]), np.full((1, 2), mu), np.array([sd**2])).crps[0])
    np.testing.assert_allclose(got, e_abs - e_pair / 2, rtol=1e-8)


def test_scores_over_a_gene_subset_equal_the_subset_scored_alone():
    rng = np.random.default_rng(8)
    Y, mu = rng.normal(size=(5, 40)), rng.normal(size=(5, 40))
    var = rng.uniform(0.5, 2.0, size=(5, 40))
    genes = np.stack([rng.permutation(40)[:20] for _ in range(5)])
    got = predictive_scores(Y, mu, var, genes=genes, levels=(0.5, 0.9))
    take = lambda a: np.take_along_axis(a, genes, axis=1)  # noqa: E731
    want = predictive_scores(take(Y), take(mu), take(var), levels=(0.5, 0.9))
    for name in got._fields:
        np.testing.assert_array_equal(np.asarray(getattr(got, name)), np.asarray(getattr(want, name)))


def test_calibrated_predictions_cover_within_binomial_error_of_the_nominal_level():
    """Independent draws from the predictive distribution: each level's count of covered
    values is Binomial(n, level); it must fall in the central 1 - 1e-4 range (Bonferroni
    over the levels)."""
    rng = np.random.default_rng(6)
    var = np.array([0.1, 1.0, 10.0])
    mu = rng.normal(size=(3, 20000))
    Y = mu + rng.normal(size=mu.shape) * np.sqrt(var)[:, None]
    got = np.asarray(predictive_scores(Y, mu, var).coverage)  # (3, L)
    n = Y.size
    alpha = 1e-4 / len(COVERAGE_LEVELS)
    for covered, level in zip(got.mean(axis=0) * n, COVERAGE_LEVELS):
        assert binom.ppf(alpha / 2, n, level) <= round(covered) <= binom.isf(alpha / 2, n, level), level
    # Doubling the standard deviation over-covers and costs likelihood.
    wide = predictive_scores(Y, mu, 4 * var)
    assert (np.asarray(wide.coverage)[:, COVERAGE_LEVELS.index(0.9)] > 0.98).all()
    assert (np.asarray(wide.nll) > np.asarray(predictive_scores(Y, mu, var).nll)).all()


def test_predictive_scores_reject_bad_variance_levels_and_genes():
    Y = np.zeros((2, 3))
    with pytest.raises(InputError, match="var"):
        predictive_scores(Y, Y, np.array([1.0, 0.0]))
    with pytest.raises(NonFiniteError, match="var"):
        predictive_scores(Y, Y, np.array([1.0, np.nan]))
    with pytest.raises(ShapeError):
        predictive_scores(Y, Y, np.ones(3))
    with pytest.raises(ShapeError):
        predictive_scores(Y, Y, np.ones((2, 4)))
    with pytest.raises(InputError, match="level"):
        predictive_scores(Y, Y, np.ones(2), levels=(0.5, 1.0))
    with pytest.raises(InputError, match="genes"):
        predictive_scores(Y, Y, np.ones(2), genes=np.array([[0], [3]]))
    with pytest.raises(ShapeError, match="genes"):
        predictive_scores(Y, Y, np.ones(2), genes=np.array([[0]]))


@pytest.mark.parametrize("shape", [(6,), (6, 4)])
def test_variance_scale_is_the_mean_ratio_of_squared_residual_to_variance(shape):
    rng = np.random.default_rng(9)
    r = rng.normal(size=(6, 4))
    v = rng.uniform(0.5, 2.0, size=shape)
    want = np.mean(r**2 / np.broadcast_to(v.reshape(6, -1), r.shape))
    assert np.isclose(variance_scale(r, v), want, rtol=1e-12)


def test_variance_scale_rejects_bad_variances():
    r = np.ones((3, 2))
    with pytest.raises(InputError, match="held-out var"):
        variance_scale(r, np.array([1.0, 0.0, 1.0]))
    with pytest.raises(ShapeError, match="held-out var"):
        variance_scale(r, np.ones(2))


def test_summary_is_mean_of_split_means_with_1_96_standard_errors():
    # Split "a" has 3 perturbations, "b" one, "c" two: the mean of split means
    # differs from the pooled mean, so this checks the averaging order.
    values = np.array([1.0, 2.0, 3.0, 10.0, 4.0, 6.0])
    split = np.array(["a", "a", "a", "b", "c", "c"])
    got = summarize_over_splits(values, split)
    means = np.array([2.0, 10.0, 5.0])
    assert got.n_splits == 3
    np.testing.assert_allclose(got.split_means, means)
    assert got.mean == pytest.approx(17 / 3)
    assert got.half_width == pytest.approx(1.96 * np.std(means, ddof=1) / np.sqrt(3))


def test_summary_of_one_split_has_no_interval():
    got = summarize_over_splits(np.array([0.2, 0.4]), np.array([0, 0]))
    assert got.mean == pytest.approx(0.3) and np.isnan(got.half_width)


def test_summary_rejects_bad_input():
    with pytest.raises(NonFiniteError):
        summarize_over_splits(np.array([0.1, np.nan]), np.array([0, 1]))
    with pytest.raises(ShapeError):
        summarize_over_splits(np.array([0.1, 0.2]), np.array([0]))
    with pytest.raises(InputError):
        summarize_over_splits(np.array([]), np.array([]))
