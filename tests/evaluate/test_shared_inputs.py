"""Worker processes share one mapped copy of each screen's Y: same values, no private copy."""

from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np

from gpllm.data.synthetic.screens import make_screens
from gpllm.evaluate.runner.shared_inputs import reduce_mapped, share_screens
from gpllm.evaluate.runner.workers import run_chains


def _pickled_by_workers(obj) -> bytes:
    """``obj`` as a worker process receives it (multiprocessing's pickler, our reducer)."""
    ForkingPickler.register(np.memmap, reduce_mapped)
    return bytes(ForkingPickler.dumps(obj))


def test_a_shared_screen_is_the_same_screen_and_crosses_as_its_file(tmp_path):
    screens = make_screens(0, n_perts=30, n_genes=400).screens
    shared = share_screens(screens, tmp_path)
    for name, screen in screens.items():
        mapped = shared[name]
        assert isinstance(mapped.Y, np.memmap) and not mapped.Y.flags.writeable
        assert mapped == screen  # every value, name and record
        payload = _pickled_by_workers(mapped)
        assert len(payload) < screen.Y.nbytes / 4  # the file name, not the 30 x 400 float64 values
        back = pickle.loads(payload)
        assert isinstance(back.Y, np.memmap) and back == screen


def test_a_slice_or_a_writable_mapping_crosses_as_a_copy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(12.0).reshape(3, 4))
    for x in (np.load(path, mmap_mode="r")[1:], np.load(path, mmap_mode="r+")):
        back = pickle.loads(_pickled_by_workers(x))
        assert not isinstance(back, np.memmap)
        np.testing.assert_array_equal(back, x)


def _worker_sum(item, context):
    return float(np.asarray(context["Y"]).sum()), type(context["Y"]).__name__


def test_a_worker_process_reads_the_mapping(tmp_path):
    screen = share_screens(make_screens(0, n_perts=30, n_genes=50).screens, tmp_path)["K562"]
    [[(total, kind)]] = run_chains([[0]], _worker_sum, {"Y": screen.Y}, workers=2)
    assert kind == "memmap" and total == float(np.asarray(screen.Y).sum())
