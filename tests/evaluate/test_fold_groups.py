"""A chunk passes its folds to a model one at a time unless the model batches folds, and
the rows do not depend on it: the memory a chunk holds is one fold's, not all of them."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from gpllm.data.embeddings.assemble import build_embedding
from gpllm.data.synthetic.screens import make_screens
from gpllm.evaluate.grid import Chunk
from gpllm.evaluate.runner.memory_plan import sweep_held_bytes
from gpllm.evaluate.runner.sweep import run_chunk
from gpllm.evaluate.splits import make_plan
from gpllm.models.base import folds_per_call
from gpllm.models.gp import GPModel
from gpllm.models.gp_select import rbf_or_rbf_linear
from gpllm.models.knn import KNN
from gpllm.models.registry import ModelSpec


@dataclasses.dataclass(frozen=True)
class CallCounting:
    """kNN whose ``fit_predict_folds`` records how many folds each call gets."""

    batches_folds: bool
    calls: list = dataclasses.field(default_factory=list, compare=False, hash=False)
    inner: KNN = KNN(k="tune", k_grid=(1, 3))

    def fit(self, Z, Y):
        return self.inner.fit(Z, Y)

    def predict(self, state, Z):
        return self.inner.predict(state, Z)

    def fit_predict_folds(self, folds, starts=None):
        self.calls.append(len(folds))
        return self.inner.fit_predict_folds(folds, starts)


class Built:
    """A spec whose build returns the given model (run_chunk only calls ``build``)."""

    def __init__(self, model: Any):
        self.model = model

    def build(self, _context):
        return self.model


@pytest.fixture(scope="module")
def chunk_inputs():
    draw = make_screens(1, n_perts=40, n_genes=30)
    data = draw.screens["K562"]
    embedding = build_embedding({"text": draw.vectors["text"]}, data.perts, k=4)
    return data, embedding, make_plan(data.perts, n_folds=3, sizes=(15,), seed=0).splits


def rows_of(model: CallCounting, chunk_inputs) -> pl.DataFrame:
    data, embedding, splits = chunk_inputs
    spec = cast(ModelSpec, Built(model))
    return run_chunk(Chunk("K562", "text", "knn_ktuned", 15), data, embedding, splits, 0, spec=spec)


def test_folds_go_one_at_a_time_unless_the_model_batches_them_and_the_rows_are_the_same(chunk_inputs):
    streamed, batched = CallCounting(batches_folds=False), CallCounting(batches_folds=True)
    one_at_a_time, all_at_once = rows_of(streamed, chunk_inputs), rows_of(batched, chunk_inputs)
    assert streamed.calls == [1, 1, 1] and batched.calls == [3]
    assert_frame_equal(one_at_a_time, all_at_once)
    assert one_at_a_time["fold"].unique().sort().to_list() == [0, 1, 2]


def test_the_gps_batch_their_folds_and_the_plan_counts_what_a_call_holds():
    assert folds_per_call(GPModel(), 5) == 5 and folds_per_call(rbf_or_rbf_linear("float32"), 5) == 5
    assert folds_per_call(KNN(), 5) == 1
    assert sweep_held_bytes(700, 355, 2000, 50, 5) > 4 * sweep_held_bytes(700, 355, 2000, 50, 1)
