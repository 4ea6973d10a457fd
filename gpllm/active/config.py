"""What one design simulation runs: the ``[active]`` section of a config, checked up front."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gpllm import plugins
from gpllm.errors import InputError

DEFAULT_ACQUISITIONS = ("random", "max_variance", "variance_reduction", "coreset", "ucb_effect")


@dataclasses.dataclass(frozen=True)
class ActiveConfig:
    """A simulated sequential design on one screen (see :mod:`gpllm.active`).

    Each of ``repeats`` repeats holds out ``test_fraction`` of the screen's
    perturbations as a test set; the rest is the pool. ``seed_size`` pool
    perturbations chosen at random are measured first; then each round every
    acquisition adds ``batch_size`` more (the last batch smaller if needed)
    until ``budget`` are measured, and the GP is refitted and scored after
    every round. ``screen`` / ``embedding``: which of the config's ("": its
    first screen, its last embedding); ``model``: "gp", "gp_blocks" or a
    ``module:attr`` kernel; ``gp_dtype``: the GP fits' precision.
    """

    acquisitions: tuple[str, ...] = DEFAULT_ACQUISITIONS
    repeats: int = 5
    seed_size: int = 50
    batch_size: int = 50
    budget: int = 800
    test_fraction: float = 0.2
    seed: int = 0
    screen: str = ""
    embedding: str = ""
    model: str = "gp"
    gp_dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "acquisitions", tuple(self.acquisitions))
        for name in ("repeats", "seed_size", "batch_size", "budget", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"[active] {name} must be an integer, got {value!r}")
        if self.batch_size < 1:
            raise InputError(f"[active] batch_size must be at least 1, got {self.batch_size}")
        if self.seed < 0:
            raise InputError(f"[active] seed must be 0 or more (NumPy's seeds are), got {self.seed}")
        if self.repeats < 1:
            raise InputError(f"[active] repeats must be at least 1, got {self.repeats}")
        if self.seed_size < 2:
            raise InputError(
                f"[active] seed_size must be at least 2 (a GP needs two measured perturbations), got {self.seed_size}"
            )
        if self.seed_size > self.budget:
            raise InputError(
                f"[active] seed_size {self.seed_size} is larger than the budget {self.budget}: "
                "the seed set is part of the budget"
            )
        if not (isinstance(self.test_fraction, (int, float)) and 0 < self.test_fraction < 1):
            raise InputError(f"[active] test_fraction must lie in (0, 1), got {self.test_fraction!r}")
        if not self.acquisitions:
            raise InputError("[active] acquisitions is empty: name at least one")
        repeated = sorted({a for a in self.acquisitions if self.acquisitions.count(a) > 1})
        if repeated:
            raise InputError(f"[active] acquisitions {repeated} named more than once")
        if self.gp_dtype not in ("float32", "float64"):
            raise InputError(f"[active] gp_dtype must be 'float32' or 'float64', got {self.gp_dtype!r}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], base: Path = Path(".")) -> ActiveConfig:
        """From a config's ``[active]`` table (keys checked by :mod:`gpllm.configs`); relative
        ``file.py:attr`` references are relative to ``base``, the config's folder."""
        values = dict(raw)
        for key in ("acquisitions", "model"):
            if key in values:
                refs = [values[key]] if isinstance(values[key], str) else values[key]
                resolved = [plugins.resolve_path(r, base) for r in refs]
                values[key] = resolved[0] if isinstance(values[key], str) else tuple(resolved)
        return cls(**values)

    @property
    def rounds(self) -> tuple[int, ...]:
        """Perturbations measured after each round: the seed set, then one batch more per round."""
        n_batches = math.ceil((self.budget - self.seed_size) / self.batch_size)
        return tuple(min(self.seed_size + r * self.batch_size, self.budget) for r in range(n_batches + 1))

    def test_size(self, n_perts: int) -> int:
        """Held-out perturbations of a screen of ``n_perts`` (at least one)."""
        return max(1, round(self.test_fraction * n_perts))

    def check_pool(self, n_perts: int, where: str) -> None:
        """InputError unless the pool left beside the test set holds the budget."""
        n_pool = n_perts - self.test_size(n_perts)
        if self.budget > n_pool:
            raise InputError(
                f"[active] budget {self.budget} is larger than the pool: {where} has {n_perts} perturbations "
                f"with embeddings, {self.test_size(n_perts)} of them held out for testing "
                f"(test_fraction {self.test_fraction}), leaving {n_pool}; lower the budget or the test_fraction"
            )

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "acquisitions": list(self.acquisitions)}
