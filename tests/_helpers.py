"""Helpers shared by test folders: the TOML text of a small run config on a synthetic screen."""

from __future__ import annotations

import json


def _toml_table(header: str | None, values: dict) -> str:
    """One TOML table: ``[header]`` (none for the top level) then ``key = value`` lines; strings,
    numbers, booleans and lists of them are written as JSON writes them, which TOML reads alike."""
    lines = [f"[{header}]"] if header else []
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def synthetic_config_toml(overrides: dict, *, top: dict | None = None, seed: int = 0, **tables: dict) -> str:
    """A run config as a user writes it: ``top``'s keys (name, embeddings, pca_k), the synthetic
    ``[data]`` of ``seed`` with ``[data.overrides]`` (n_perts, n_genes, ...), then one table per
    keyword, e.g. ``sweep={"models": ["nonctrl_mean"], "sizes": [20], "n_folds": 2}`` or ``active={...}``."""
    parts = [_toml_table(None, top or {}), _toml_table("data", {"kind": "synthetic", "seed": seed})]
    parts.append(_toml_table("data.overrides", overrides))
    parts += [_toml_table(name, values) for name, values in tables.items()]
    return "".join(parts)
