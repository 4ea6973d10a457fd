"""A user's model that predicts NaN or inf is refused by ``gpllm predict``, naming the model and
how many values, as ``gpllm reproduce`` refuses it; nothing is written."""

from __future__ import annotations

import pytest

from tests.cli.conftest import fails, ok

NAN_MODEL = """
from typing import NamedTuple
import numpy as np
from gpllm.models.base import Prediction

class State(NamedTuple):
    mean: np.ndarray

class HalfNaN:
    def fit(self, Z, Y):
        return State(np.asarray(Y).mean(axis=0))
    def predict(self, state, Z_test):
        mean = np.tile(state.mean, (len(Z_test), 1))
        mean[0, :3] = np.nan
        mean[1, 0] = np.inf
        return Prediction(mean, None)
"""


@pytest.fixture
def nan_model(tmp_path):
    (tmp_path / "nan_model.py").write_text(NAN_MODEL)
    return f"{tmp_path / 'nan_model.py'}:HalfNaN"


def test_predict_refuses_a_model_that_predicts_nan(files, tmp_path, nan_model):
    out = tmp_path / "pred.h5ad"
    fails(
        "predict",
        "--screen",
        files.screen,
        *files.text_and_train(),
        "--model",
        nan_model,
        "--out",
        out,
        naming="model 'HalfNaN' predicted 4 NaN/inf mean value(s) of",
    )
    assert not out.exists()
    ok(
        "fit",
        files.screen,
        *files.text_and_train(),
        "--model",
        nan_model,
        "--out",
        tmp_path / "m.npz",
    )
    fails(
        "predict",
        tmp_path / "m.npz",
        "--genes",
        ",".join(files.test_names),
        "--out",
        out,
        naming="model 'HalfNaN' predicted 4 NaN/inf mean value(s) of",
    )
    assert not out.exists()
