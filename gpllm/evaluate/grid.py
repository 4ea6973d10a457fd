"""The evaluation grid: screens x embeddings x models x training sizes x folds.

A *chunk* is one (screen, embedding, model, size) cell over all folds: its
fits share one training size, so a GP chunk runs as one vmapped, compiled
fit. The chunks of one (screen, embedding, model) form a *chain* over the
sizes, in increasing order, because each size warm-starts from the stored
fit at the next smaller one; chains are independent of each other, and are
handed out costliest first (a model's cost is its spec's
:attr:`~gpllm.models.registry.ModelSpec.chain_cost`). Baselines do not use an
embedding and run once per screen as embedding ``"none"``.

This module only plans; :mod:`gpllm.evaluate.runner` runs a plan and
:mod:`gpllm.evaluate.rows` says what each chunk's rows hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from gpllm.errors import InputError
from gpllm.evaluate.splits import DEFAULT_SIZES
from gpllm.models.registry import ModelSpec, spec_from

DEFAULT_MODELS = ("gp", "knn_k1", "knn_ktuned", "ridge", "random_perturbation", "nonctrl_mean")
NO_EMBEDDING = "none"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """What to run: models, embeddings (names of the given Embeddings), sizes, folds, seed.

    models: built-in names, ``module:attr`` references to a user's kernel or
    model, or :class:`~gpllm.models.registry.ModelSpec` objects (a config's
    ``[models.NAME]`` tables); stored as specs. By default the GP fits run in
    float32 (``gp_dtype``), which halves their cost on CPU and moves the
    metrics by far less than their standard errors; ``"float64"`` restores the
    core's default.
    """

    models: tuple[Any, ...] = DEFAULT_MODELS
    embeddings: tuple[str, ...] = ("text", "sequence", "text+sequence")
    sizes: tuple[int, ...] = DEFAULT_SIZES
    n_folds: int | Literal["loo"] = 5
    seed: int = 0
    gp_dtype: Literal["float32", "float64"] = "float32"
    warm_start: bool = True

    def __post_init__(self):
        specs = tuple(spec_from(m, f"models[{i}]") for i, m in enumerate(self.models))
        names = [s.name for s in specs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise InputError(f"models: {duplicated} named more than once")
        if not specs:
            raise InputError("models is empty: name at least one model")
        object.__setattr__(self, "models", specs)
        if self.gp_dtype not in ("float32", "float64"):
            raise InputError(f"gp_dtype must be 'float32' or 'float64', got {self.gp_dtype!r}")
        if not self.embeddings and any(not s.baseline for s in specs):
            raise InputError("models that use embeddings need at least one embedding")
        for spec in specs:
            unknown = sorted(set(spec.embeddings) - set(self.embeddings))
            if unknown:
                raise InputError(
                    f"model {spec.name!r} asks for embedding(s) {unknown} the run does not build; "
                    f"embeddings: {list(self.embeddings)}"
                )

    def spec(self, name: str) -> ModelSpec:
        return next(s for s in self.models if s.name == name)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "models": [s.to_json() for s in self.models]}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One cell of the grid, computed over all folds at once."""

    screen: str
    embedding: str
    model: str
    size: int

    @property
    def key(self) -> str:
        return f"{self.screen}|{self.embedding}|{self.model}|{self.size}"


def plan_chunks(config: SweepConfig, screens: Sequence[str], sizes: Sequence[int]) -> list[Chunk]:
    """All chunks in a fixed order: per screen, baselines first, then each embedding's models
    (a model that names its embeddings runs on those only)."""
    chunks = []
    for screen in screens:
        for size in sizes:
            chunks += [Chunk(screen, NO_EMBEDDING, m.name, size) for m in config.models if m.baseline]
            for emb in config.embeddings:
                chunks += [
                    Chunk(screen, emb, m.name, size)
                    for m in config.models
                    if not m.baseline and (not m.embeddings or emb in m.embeddings)
                ]
    return chunks


def plan_chains(config: SweepConfig, chunks: Sequence[Chunk]) -> list[list[Chunk]]:
    """Chunks grouped by (screen, embedding, model), each chain in size order (a fit
    warm-starts from the smaller size), the costliest chains first: cost = the model's
    ``chain_cost`` x the sum of the chain's sizes."""
    chains: dict[tuple[str, str, str], list[Chunk]] = {}
    for chunk in chunks:
        chains.setdefault((chunk.screen, chunk.embedding, chunk.model), []).append(chunk)
    ordered = [sorted(chain, key=lambda c: c.size) for chain in chains.values()]

    def cost(chain: list[Chunk]) -> float:
        return config.spec(chain[0].model).chain_cost * sum(c.size for c in chain)

    return sorted(ordered, key=lambda chain: -cost(chain))
