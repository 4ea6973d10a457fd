"""The tiny synthetic screen the design-simulation tests run on, as one config writer."""

from __future__ import annotations

from pathlib import Path

from tests._helpers import synthetic_config_toml

#: 60 perturbations x 30 genes, two repeats of three rounds (6, 12, 18 measured): seconds a run.
TINY_SCREEN = {"n_perts": 60, "n_genes": 30, "text_dim": 16, "seq_dim": 16, "n_extra_genes": 5}
TINY_DESIGN = {"repeats": 2, "seed_size": 6, "batch_size": 6, "budget": 18}


def tiny_config_toml(acquisitions: list[str]) -> str:
    """The TOML text of a design simulation running ``acquisitions`` on the tiny screen."""
    top = {"name": "tiny", "pca_k": 4}
    return synthetic_config_toml(TINY_SCREEN, top=top, active={"acquisitions": acquisitions, **TINY_DESIGN})


#: Two built-in acquisitions and the plug-in ``first_free`` (tests/active/test_simulate.PLUGIN), as
#: text that the robustness tests edit (fewer acquisitions, ``repeats = 1``, a ``[sweep]`` instead).
CONFIG = tiny_config_toml(["random", "max_variance", "my_acquisitions.py:first_free"])


def write_tiny_config(folder: Path, acquisitions: list[str], plugins: dict[str, str]) -> Path:
    """``folder``/tiny.toml running ``acquisitions`` on the tiny screen, beside each
    ``plugins`` file (name -> Python source) the acquisitions may name; its path."""
    for name, source in plugins.items():
        (folder / name).write_text(source)
    path = folder / "tiny.toml"
    path.write_text(tiny_config_toml(acquisitions))
    return path
