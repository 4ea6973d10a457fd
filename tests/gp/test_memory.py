"""A GP too large for the device's free memory is refused before anything is allocated."""

from __future__ import annotations

import numpy as np
import pytest

from gpllm import gp
from gpllm.errors import InputError, MemoryLimitError
from gpllm.gp import memory
from gpllm.gp.memory import Budget, check_gp_fits, device_budget, gp_peak_bytes


def test_the_estimate_counts_the_matrices_of_the_value_and_gradient():
    n, d, q = 1400, 2000, 100
    # gram path (D > N): 7 N x N, W and its cotangent N x N each, Y, Z
    assert gp_peak_bytes(n, d, q, np.float64) == 8 * (7 * n * n + 2 * n * n + n * d + n * q)
    # direct path (D <= N): W is N x D
    assert gp_peak_bytes(d, n, q, np.float32) == 4 * (7 * d * d + 2 * d * n + d * n + d * q)
    assert gp_peak_bytes(n, d, q, np.float64, datasets=5) == 5 * gp_peak_bytes(n, d, q, np.float64)


def test_this_machine_reports_a_positive_budget():
    budget = device_budget()
    assert budget is not None and budget.free > 0 and budget.source


@pytest.fixture
def one_mebibyte(monkeypatch):
    monkeypatch.setattr(memory, "device_budget", lambda device=None: Budget(2**20, "a test's budget"))


def _data(n=300, d=200, q=3, batch=None):
    rng = np.random.default_rng(0)
    shape = (n,) if batch is None else (batch, n)
    return rng.normal(size=(*shape, q)), rng.normal(size=(*shape, d))


def test_a_fit_beyond_the_budget_names_the_estimate_and_the_limit(one_mebibyte):
    Z, Y = _data()
    with pytest.raises(
        MemoryLimitError,
        match=r"gp.fit on N=300 points, D=200 outputs \(float64\) needs about "
        r"0.0 GiB .* only 0.0 GiB is free \(a test's budget\)",
    ):
        gp.fit(gp.RBF(), Z, Y)
    assert issubclass(MemoryLimitError, InputError) and issubclass(MemoryLimitError, MemoryError)


@pytest.mark.slow
def test_batched_fits_count_the_datasets_in_flight(monkeypatch):
    Z, Y = _data(n=40, d=30, batch=4)
    one = gp_peak_bytes(40, 30, 3, np.float64)
    monkeypatch.setattr(memory, "device_budget", lambda device=None: Budget(2 * one, "a test's budget"))
    with pytest.raises(MemoryLimitError, match="4 datasets at once"):
        gp.fit_batched(gp.RBF(), Z, Y, batch_size=4)
    result = gp.fit_batched(gp.RBF(), Z, Y, options=gp.FitOptions(max_steps=3), batch_size=2)  # two at a time fit
    assert np.all(np.isfinite(np.asarray(result.lml)))


def test_the_check_can_be_switched_off(one_mebibyte, monkeypatch):
    monkeypatch.setenv(memory.ENV, "off")
    check_gp_fits(10**6, 10**4, 50, np.float64)  # would need terabytes: not checked
    with pytest.raises(MemoryLimitError):
        monkeypatch.setenv(memory.ENV, "on")
        check_gp_fits(10**6, 10**4, 50, np.float64)
