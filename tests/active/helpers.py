"""The tiny synthetic screen the design-simulation tests run on, as one config writer."""

from __future__ import annotations

import json
from pathlib import Path

#: 60 perturbations x 30 genes, two repeats of three rounds (6, 12, 18 measured): seconds a run.
TINY_CONFIG = """
name = "tiny"
pca_k = 4
[data]
kind = "synthetic"
seed = 0
[data.overrides]
n_perts = 60
n_genes = 30
text_dim = 16
seq_dim = 16
n_extra_genes = 5
[active]
acquisitions = {acquisitions}
repeats = 2
seed_size = 6
batch_size = 6
budget = 18
"""


def write_tiny_config(folder: Path, acquisitions: list[str], plugins: dict[str, str]) -> Path:
    """``folder``/tiny.toml running ``acquisitions`` on the tiny screen, beside each
    ``plugins`` file (name -> Python source) the acquisitions may name; its path."""
    for name, source in plugins.items():
        (folder / name).write_text(source)
    path = folder / "tiny.toml"
    path.write_text(TINY_CONFIG.format(acquisitions=json.dumps(acquisitions)))
    return path
