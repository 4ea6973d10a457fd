"""A run's identity includes the code it runs: a plug-in edited between runs into one folder is
refused, naming the file, rather than mixed with (or hidden behind) results of its old version."""

from __future__ import annotations

import hashlib
import json

import pytest

from gpllm.active.run import load_configs, run_active
from gpllm.errors import DataError
from gpllm.plugins import changed_code, code_fingerprint
from gpllm.reproduce import ReproduceConfig, reproduce
from tests.active.helpers import CONFIG
from tests.active.test_simulate import PLUGIN

SMALL = {"kind": "synthetic", "seed": 0, "overrides": {"n_perts": 40, "n_genes": 20, "text_dim": 8, "seq_dim": 8}}

MODEL = """
from typing import NamedTuple
import numpy as np
from gpllm.models.base import Prediction

SCALE = {scale}

class State(NamedTuple):
    mean: np.ndarray

class ShrunkMean:
    def fit(self, Z, Y):
        return State(SCALE * np.asarray(Y).mean(axis=0))
    def predict(self, state, Z_test):
        return Prediction(np.tile(state.mean, (len(Z_test), 1)), None)
"""


def test_the_fingerprint_covers_files_and_importable_modules(tmp_path):
    plugin = tmp_path / "mine.py"
    plugin.write_text("X = 1\n")
    got = code_fingerprint([f"{plugin}:X", "json:dumps", "gp", None], "test")
    assert got[str(plugin.resolve())] == hashlib.sha256(b"X = 1\n").hexdigest()
    assert any(path.endswith("json/__init__.py") for path in got) and len(got) == 2
    assert changed_code(got, {**got, str(plugin.resolve()): "0" * 64}) == [str(plugin.resolve())]


def test_reproduce_refuses_a_folder_whose_model_plugin_was_edited(tmp_path):
    plugin = tmp_path / "shrunk.py"
    plugin.write_text(MODEL.format(scale=0.5))
    raw = {
        "data": SMALL,
        "embeddings": ["text"],
        "pca_k": 4,
        "sweep": {"models": ["shrunk.py:ShrunkMean"], "sizes": [16], "n_folds": 2},
    }
    config = ReproduceConfig.from_dict(raw, base=tmp_path)
    first = reproduce(config, tmp_path / "run", progress=False).results
    assert reproduce(config, tmp_path / "run", progress=False).results.equals(first)  # same code: resumed
    plugin.write_text(MODEL.format(scale=0.25))
    with pytest.raises(DataError, match=rf"{plugin.resolve()} changed since it was started.*new output folder"):
        reproduce(config, tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["code"] == {
        str(plugin.resolve()): hashlib.sha256(MODEL.format(scale=0.5).encode()).hexdigest()
    }


def test_active_refuses_to_resume_with_an_edited_acquisition(tmp_path, monkeypatch):
    # tests/active/test_simulate.py's run and acquisition (a session compiles its GP once), one chain
    plugin = tmp_path / "my_acquisitions.py"
    plugin.write_text(PLUGIN)
    config = CONFIG.replace('"random", "max_variance", ', "").replace("repeats = 2", "repeats = 1")
    (tmp_path / "tiny.toml").write_text(config)
    monkeypatch.setenv("STOP_AT", "6")  # killed in round 1, after round 0 is stored
    with pytest.raises(KeyboardInterrupt):
        run_active(*load_configs(tmp_path / "tiny.toml"), tmp_path / "run", progress=False)
    monkeypatch.delenv("STOP_AT")
    plugin.write_text(PLUGIN + "# edited\n")
    with pytest.raises(DataError, match=rf"{plugin.resolve()} changed since it was started"):
        run_active(*load_configs(tmp_path / "tiny.toml"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "results.parquet").exists()
