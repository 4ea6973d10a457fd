"""Model names used in configs and result tables, and how to build each one.

A name maps to a model given the screen (for the control profile), the
embedding (for per-block kernels) and a seed. Baselines ignore the embedding:
the sweep runs them once per screen, under the embedding name "none".
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from gpllm.errors import InputError
from gpllm.gp.kernels import RBF, Active
from gpllm.models.base import Model
from gpllm.models.baselines import Control, NonControlMean, RandomPerturbation
from gpllm.models.gp import GPModel
from gpllm.models.knn import KNN
from gpllm.models.ridge import Ridge

Blocks = tuple[tuple[str, int, int], ...]


def _per_block_gp(blocks: Blocks, ctrl, seed) -> GPModel:
    kernel = sum((Active(RBF(), start, stop) for _, start, stop in blocks[1:]), Active(RBF(), *blocks[0][1:]))
    return GPModel(kernel=kernel, name="gp_blocks")


BUILDERS: dict[str, Callable[[Blocks, np.ndarray, int], Model]] = {
    "gp": lambda blocks, ctrl, seed: GPModel(),
    "gp_blocks": _per_block_gp,
    "knn_k1": lambda blocks, ctrl, seed: KNN(k=1),
    "knn_ktuned": lambda blocks, ctrl, seed: KNN(k="tune"),
    "ridge": lambda blocks, ctrl, seed: Ridge(lam="loo"),
    "linear": lambda blocks, ctrl, seed: Ridge(lam=0.0),
    "random_perturbation": lambda blocks, ctrl, seed: RandomPerturbation(seed=seed),
    "nonctrl_mean": lambda blocks, ctrl, seed: NonControlMean(),
    "control": lambda blocks, ctrl, seed: Control(ctrl),
}
BASELINES = frozenset({"random_perturbation", "nonctrl_mean", "control"})


def check_model_names(names) -> tuple[str, ...]:
    """The names, validated: InputError naming any unknown model and listing the known ones."""
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise InputError(f"unknown model(s) {unknown}; known: {sorted(BUILDERS)}")
    return tuple(names)


def build_model(name: str, *, blocks: Blocks = (), ctrl=None, seed: int = 0) -> Model:
    """The model called ``name`` for an embedding with ``blocks`` and a screen with ``ctrl``."""
    check_model_names([name])
    if name == "gp_blocks" and not blocks:
        raise InputError("gp_blocks needs the embedding's blocks")
    if name == "control" and ctrl is None:
        raise InputError("the control baseline needs the screen's ctrl profile")
    return BUILDERS[name](blocks, ctrl, seed)
