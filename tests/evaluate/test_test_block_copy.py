"""Scoring a fold holds one copy of its test block: the rows gathered once, into memory the
device array then uses as it is, and that array is what every scoring program reads."""

from __future__ import annotations

import numpy as np
import pytest

from gpllm.data.embeddings.assemble import build_embedding
from gpllm.data.synthetic.screens import make_screens
from gpllm.evaluate import rows
from gpllm.evaluate.grid import Chunk
from gpllm.evaluate.splits import make_plan
from gpllm.models import padding
from gpllm.models.base import Fold, fit_predict_folds
from gpllm.models.registry import build_model


def test_take_rows_on_device_equals_numpy_and_wraps_its_gather_buffer(monkeypatch):
    x = np.random.default_rng(0).normal(size=(50, 7))
    rows_taken = np.array([3, 0, 49, 3, 17])
    buffers = []
    aligned_empty = padding._aligned_empty
    monkeypatch.setattr(padding, "_aligned_empty", lambda *a: buffers.append(aligned_empty(*a)) or buffers[-1])
    block = padding.take_rows_on_device(x, rows_taken)
    np.testing.assert_array_equal(np.asarray(block), x[rows_taken])
    [buffer] = buffers
    assert buffer.ctypes.data % padding.DEVICE_ALIGNMENT == 0
    assert block.unsafe_buffer_pointer() == buffer.ctypes.data  # the device array is the gather, uncopied


@pytest.mark.parametrize("model", ["nonctrl_mean", "knn_k1"])
def test_fold_rows_scores_from_one_copy_of_the_test_block(monkeypatch, model):
    """Every program score_fold runs gets the same device array, and it is the one gather's memory."""
    draw = make_screens(3, n_perts=45, n_genes=30)
    data = draw.screens["K562"]
    emb = build_embedding({"text": draw.vectors["text"]}, data.perts, k=4)
    data = data.select(emb.names)
    split = make_plan(data.perts, n_folds=3, sizes=(20,), seed=0).splits[0]
    [fit] = fit_predict_folds(build_model(model), [Fold(emb.Z[split.train], data.Y[split.train], emb.Z[split.test])])

    gathers, seen = [], []
    aligned_empty = padding._aligned_empty
    monkeypatch.setattr(padding, "_aligned_empty", lambda *a: gathers.append(aligned_empty(*a)) or gathers[-1])
    for name in ("_calibration", "unchecked_perturbation_metrics"):  # the programs that read Y_true
        program = getattr(rows, name)
        monkeypatch.setattr(rows, name, lambda *a, _p=program, **k: seen.append(a[0]) or _p(*a, **k))
    rows.fold_rows(Chunk("K562", "text", model, 20), data, split, fit)

    [gather] = [g for g in gathers if g.shape[1:] == data.Y.shape[1:]]
    assert gather.shape[0] >= len(split.test)
    test_blocks = [a for a in seen if a.shape == gather.shape]
    assert len(test_blocks) >= 3  # the two metrics calls and at least one calibration
    assert {a.unsafe_buffer_pointer() for a in test_blocks} == {gather.ctypes.data}
