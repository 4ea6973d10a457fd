"""A model that fails in the sweep is named: one line with the model, screen, embedding, size and
fold, the same with and without worker processes, the traceback of its own code in errors.log."""

from __future__ import annotations

import pytest

from gpllm.data.embeddings.files import write_genept_pickle
from gpllm.data.synthetic.screens import make_screens
from tests._helpers import synthetic_config_toml
from tests.cli.conftest import fails, invoke

MODELS = """
from typing import NamedTuple
import jax.numpy as jnp
import numpy as np
from gpllm.gp.kernels import RBF
from gpllm.models.base import Prediction

class State(NamedTuple):
    mean: np.ndarray

class Boom:
    def fit(self, Z, Y):
        raise RuntimeError("boom in fit")
    def predict(self, state, Z_test):
        raise AssertionError("never called")

class Mean:
    def fit(self, Z, Y):
        return State(np.asarray(Y).mean(axis=0))
    def predict(self, state, Z_test):
        return Prediction(np.tile(state.mean, (len(Z_test), 1)), None)

class RowTooMany(Mean):
    def predict(self, state, Z_test):
        return Prediction(np.tile(state.mean, (len(Z_test) + 1, 1)), None)

class NegativeVariance(Mean):
    def predict(self, state, Z_test):
        return Prediction(np.tile(state.mean, (len(Z_test), 1)), -np.ones(len(Z_test)))

class NaNVariance(Mean):
    def predict(self, state, Z_test):
        return Prediction(np.tile(state.mean, (len(Z_test), 1)), np.full(len(Z_test), np.nan))

class NaNGram(RBF):
    def gram(self, params, X1, X2=None):
        return super().gram(params, X1, X2) * jnp.nan

nan_gram = NaNGram()
"""


def _config(model: str) -> str:
    """A sweep of the user's ``model`` from models.py on a 40 x 20 synthetic screen, 2 folds at size 16."""
    return synthetic_config_toml(
        {"n_perts": 40, "n_genes": 20, "text_dim": 8, "seq_dim": 8},
        top={"embeddings": ["text"], "pca_k": 4},
        sweep={"models": [f"models.py:{model}"], "sizes": [16], "n_folds": 2},
    )


def _reproduce(tmp_path, model, *options):
    (tmp_path / "models.py").write_text(MODELS)
    (tmp_path / f"{model}.toml").write_text(_config(model))
    args = ("reproduce", "--config", tmp_path / f"{model}.toml", "--out", tmp_path / "run", "--no-progress", *options)
    return args


def test_a_models_own_exception_is_one_line_naming_it_with_the_traceback_in_errors_log(tmp_path):
    line = fails(*_reproduce(tmp_path, "Boom", "--workers", "1"), naming="RuntimeError: boom in fit")
    assert line.startswith("error: model 'Boom' (screen K562, embedding text, size 16, fold 0): "), line
    assert f"(traceback in {tmp_path / 'run' / 'errors.log'})" in line
    log = (tmp_path / "run" / "errors.log").read_text()
    assert "Traceback (most recent call last)" in log and 'raise RuntimeError("boom in fit")' in log


def test_debug_prints_the_models_traceback(tmp_path):
    result = invoke(*_reproduce(tmp_path, "Boom", "--workers", "1", "--debug"))
    assert result.exit_code == 1
    assert 'raise RuntimeError("boom in fit")' in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: model 'Boom'")


@pytest.mark.slow
def test_worker_processes_give_the_same_line(tmp_path):
    line = fails(*_reproduce(tmp_path, "Boom", "--workers", "2"), naming="RuntimeError: boom in fit")
    assert line.startswith("error: model 'Boom' (screen K562, embedding text, size 16, fold 0): "), line
    assert 'raise RuntimeError("boom in fit")' in (tmp_path / "run" / "errors.log").read_text()


@pytest.mark.parametrize(
    ("model", "says"),
    [
        (
            "RowTooMany",
            "its predicted mean has shape (21, 20); the fold's 20 test perturbations x 20 genes need (20, 20)",
        ),
        ("NegativeVariance", "must be > 0; 20 value(s) are not"),
        ("NaNVariance", "non-finite value(s)"),
    ],
)
def test_a_wrong_prediction_names_the_model_and_the_fold(tmp_path, model, says):
    line = fails(*_reproduce(tmp_path, model, "--workers", "1"), naming=says)
    assert line.startswith(f"error: model {model!r} (screen K562, embedding text, size 16, fold 0): "), line


def test_a_factor_that_is_not_positive_definite_names_the_fit_and_what_to_try(tmp_path):
    line = fails(*_reproduce(tmp_path, "nan_gram", "--workers", "1"), naming="not positive definite")
    assert line.startswith("error: model 'nan_gram' (screen K562, embedding text, size 16, folds [0, 1]): "), line
    assert "[models.nan_gram] noise_ratio_prior" in line and "White term" in line


def test_fit_and_predict_name_the_model_whose_code_raised(tmp_path):
    syn = make_screens(0, n_perts=30, n_genes=20, text_dim=8, seq_dim=8)
    screen = syn.screens["K562"].save(tmp_path / "screen.h5ad")
    text = write_genept_pickle(tmp_path / "text.pickle", syn.vectors["text"])
    (tmp_path / "models.py").write_text(MODELS)
    model = f"{tmp_path / 'models.py'}:Boom"
    common = ("--text", text, "--model", model)
    line = fails("fit", screen, *common, "--out", tmp_path / "m.npz", naming="RuntimeError: boom in fit")
    assert line == f"error: model {model!r}: RuntimeError: boom in fit (--debug prints the traceback)"
    train = ",".join(syn.screens["K562"].perts[:20])
    predict = ("predict", "--screen", screen, "--train", train, *common, "--out", tmp_path / "p.h5ad")
    fails(*predict, naming=f"model {model!r}: RuntimeError: boom in fit")
    assert not (tmp_path / "m.npz").exists() and not (tmp_path / "p.h5ad").exists()
