"""Sizes whose memory cannot fit are refused at once with the estimate, not after minutes."""

from __future__ import annotations

import tracemalloc

import pytest

from gpllm.data.synthetic.screens import SyntheticConfig, make_screens, peak_bytes
from gpllm.errors import MemoryLimitError
from tests.cli.conftest import fails


def test_the_estimate_bounds_the_measured_peak():
    config = SyntheticConfig(n_perts=600, n_genes=600)  # default widths: the estimate is for large draws
    tracemalloc.start()
    try:
        make_screens(0, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.8 * peak < peak_bytes(config) < 1.5 * peak


def test_a_screen_too_large_for_memory_is_refused_before_drawing():
    with pytest.raises(MemoryLimitError, match=r"n_perts=1,000,000,000 x n_genes=2,000 .* needs about [\d,.]+ GiB"):
        make_screens(0, n_perts=10**9)


def test_data_synth_refuses_at_once_and_leaves_no_folder(tmp_path):
    fails("data", "synth", tmp_path / "out", "--n-perts", 10**8, naming="needs about")
    assert not (tmp_path / "out").exists()
