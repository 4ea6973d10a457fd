"""gpllm reproduce refuses a synthetic draw too large for memory from its config, at once, with the
estimate, and leaves no run folder (as `data synth` does)."""

from __future__ import annotations

import pytest

from tests.cli.conftest import fails

CONFIG = """
embeddings = ["text"]
[data]
kind = "synthetic"
seed = 0
[data.overrides]
{key} = 1000000000
[sweep]
models = ["ridge"]
sizes = [16]
n_folds = 2
"""


@pytest.mark.parametrize("key", ["n_perts", "n_genes"])
def test_a_config_drawing_too_much_is_refused_up_front(tmp_path, key):
    (tmp_path / "big.toml").write_text(CONFIG.format(key=key))
    args = ("reproduce", "--config", tmp_path / "big.toml", "--out", tmp_path / "run", "--no-progress")
    line = fails(*args, naming=f"{key}=1,000,000,000")
    assert "needs about" in line and "GiB" in line
    assert not (tmp_path / "run").exists()
