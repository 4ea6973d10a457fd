"""Every key of a ``gpllm reproduce`` config, checked at every level before anything runs.

A config is a TOML file (``experiments/*.toml``). :func:`check_config` walks
it against :data:`SCHEMA` and raises an :class:`~gpllm.errors.InputError`
naming the key (``[data.overrides] n_pertz``), with the closest known key
when there is one, or the expected type (``[sweep] sizes must be a list of
integers, got the string '10,20'``). Nothing is read, fitted or written
before it passes. :func:`describe` renders the same schema as the reference
in ``docs/config.md``, so the documentation cannot drift from the checks.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gpllm.errors import InputError


class Key(NamedTuple):
    """One config key: what values it takes (``check`` returns a problem or None) and what it means."""

    check: Callable[[Any], str | None]
    kind: str
    help: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _type(name: str, test: Callable[[Any], bool]) -> Callable[[Any], str | None]:
    return lambda v: None if test(v) else f"must be {name}"


INT = _type("an integer", _is_int)
BOOL = _type("true or false", lambda v: isinstance(v, bool))
STR = _type("a string", lambda v: isinstance(v, str))
NUMBER = _type("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
STR_LIST = _type("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
INT_LIST = _type("a list of integers", lambda v: isinstance(v, list) and all(_is_int(x) for x in v))
TABLE = _type("a table", lambda v: isinstance(v, Mapping))


def one_of(*choices) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {list(choices)}"


def either(*checks) -> Callable[[Any], str | None]:
    def check(v):
        problems = [c(v) for c in checks]
        return None if any(p is None for p in problems) else " or ".join(p.removeprefix("must be ") for p in problems)

    return lambda v: None if (p := check(v)) is None else f"must be {p}"


def _default_check(default) -> tuple[Callable[[Any], str | None], str]:
    """A check and a kind for a dataclass field, from its default's type."""
    if isinstance(default, bool):
        return BOOL, "bool"
    if _is_int(default):
        return INT, "int"
    if isinstance(default, float):
        return NUMBER, "number"
    if isinstance(default, str):
        return STR, "string"
    if isinstance(default, tuple):
        return _type("a list", lambda v: isinstance(v, list)), "list"
    return (lambda v: None), "any"


def _fields_of(cls, help_prefix: str) -> dict[str, Key]:
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        check, kind = _default_check(default)
        out[f.name] = Key(check, kind, f"{help_prefix} (default {default!r})")
    return out


def _screen_keys() -> dict[str, Key]:
    from gpllm.data.screens.labels import PRESETS
    from gpllm.data.screens.perturbseq import Options

    return {
        "path": Key(STR, "string", "the screen's h5ad file, relative to the config's folder"),
        "source": Key(
            STR, "string", "instead of path: a registry name from `gpllm data list`, downloaded and verified"
        ),
        "allow_unverified": Key(BOOL, "bool", "accept a download whose checksum is not published"),
        "preset": Key(one_of(*PRESETS), "string", f"how obs names conditions: {', '.join(PRESETS)}"),
        "chunked": Key(BOOL, "bool", "stream a large single-cell file in chunks (default: above 2 GiB)"),
        "chunk_size": Key(INT, "int", "cells per streamed chunk (default 4096)"),
        **_fields_of(Options, "screen processing option"),
    }


EMBEDDING_KEYS = {
    "path": Key(STR, "string", "a vector file: GenePT pickle, a table (csv/tsv/parquet), or UniProt ProtT5 h5"),
    "source": Key(STR, "string", "instead of path: a registry name from `gpllm data list`"),
    "allow_unverified": Key(BOOL, "bool", "accept a download whose checksum is not published"),
    "dim": Key(INT, "int", "the vectors' dimension, checked on reading"),
    "index_col": Key(STR, "string", "a table's gene-symbol column"),
    "idmapping": Key(STR, "string", "UniProt ID mapping file (gene symbol -> accession) for a ProtT5 h5"),
    "idmapping_source": Key(STR, "string", "instead of idmapping: a registry name"),
    "descriptions": Key(STR, "string", "a JSON of gene descriptions, embedded locally (the `text` extra)"),
    "model": Key(STR, "string", "the local text model for descriptions"),
}


def _sweep_keys() -> dict[str, Key]:
    return {
        "models": Key(
            STR_LIST,
            "list of strings",
            "built-in names, [models.NAME] tables, or 'file.py:attr' / 'module:attr' references",
        ),
        "embeddings": Key(STR_LIST, "list of strings", "as the top-level embeddings (default: those)"),
        "sizes": Key(INT_LIST, "list of ints", "training-set sizes (nested downsampling of each fold)"),
        "n_folds": Key(either(INT, one_of("loo")), "int or 'loo'", "CV folds over perturbations"),
        "seed": Key(INT, "int", "seed of the splits and of random baselines"),
        "gp_dtype": Key(one_of("float32", "float64"), "string", "precision of GP fits (default float32)"),
        "warm_start": Key(BOOL, "bool", "start each fit from the fold's fit at the next smaller size"),
    }


def _model_keys() -> dict[str, Key]:
    from gpllm.gp.fit import FitOptions

    keys = {
        "kernel": Key(STR, "string", "'file.py:attr' or 'module:attr' of a gpllm Kernel: a GP on it"),
        "model": Key(STR, "string", "'file.py:attr' or 'module:attr' of a model implementing the protocol"),
        "embeddings": Key(STR_LIST, "list of strings", "run this model on these embeddings only"),
        "baseline": Key(BOOL, "bool", "the model ignores the embedding: run it once per screen"),
        "dtype": Key(one_of("float32", "float64"), "string", "GP precision (default: [sweep] gp_dtype)"),
        "fresh_start_below": Key(INT, "int", "GP: below this size a warm start also races a fresh one"),
        "float64_below": Key(INT, "int", "GP: below this size a float32 GP fits in float64 (default 300)"),
        "center": Key(BOOL, "bool", "GP: model deviations from the training mean (default true)"),
        "spread_folds": Key(BOOL, "bool", "GP: spread CV folds over the devices when there are several (default true)"),
        "warm_start": Key(BOOL, "bool", "GP: start each fold from its fit at the next smaller size (default false)"),
    }
    for name, key in _fields_of(FitOptions, "GP fit option").items():
        keys[name] = key
    keys["optimizer"] = Key(STR, "string", "GP: 'lbfgs', 'adam', or 'file.py:attr' of an optax GradientTransformation")
    return keys


def _synthetic_keys() -> dict[str, Key]:
    from gpllm.data.synthetic.screens import SHAPES

    return {
        "kind": Key(one_of("synthetic"), "string", "'synthetic': screens drawn in-process (no download)"),
        "seed": Key(INT, "int", "seed of the draw"),
        "shape": Key(
            one_of(*SHAPES),
            "string",
            "the generator's named shape: 'essential' (default: K562 and RPE1, "
            "1,774 x 2,000) or 'gwps' (K562 genome-wide, 9,800 x 8,000, one line); overrides apply on top",
        ),
        "overrides": Key(TABLE, "table", "[data.overrides]: knobs of the generator"),
    }


def _files_keys() -> dict[str, Key]:
    return {
        "kind": Key(one_of("files"), "string", "'files': real screens and embedding files"),
        "screens": Key(TABLE, "table", "[data.screens.NAME]: one table per screen"),
        "embeddings": Key(TABLE, "table", "[data.embeddings.SOURCE]: one table per embedding source"),
    }


def _combos_keys() -> dict[str, Key]:
    from gpllm.evaluate.combos import CombosConfig
    from gpllm.models.pairs import PAIR_MODEL_NAMES

    return {
        **_fields_of(CombosConfig, "seen-0/1/2 evaluation option"),
        "models": Key(STR_LIST, "list of strings", f"pair models, from {', '.join(PAIR_MODEL_NAMES)} (default all)"),
        "max_steps": Key(INT, "int", "GP optimiser steps per fit (default 200)"),
        "screen": Key(STR, "string", "kind = 'files': the screen whose two-gene conditions are evaluated"),
        "embedding": Key(STR, "string", "the embedding used (default: the first of the top-level embeddings)"),
    }


def _override_keys(combos: bool) -> dict[str, Key]:
    """[data.overrides]: the single-gene generator's knobs, and the pair generator's with [combos]."""
    from gpllm.data.synthetic.pairs import PairConfig
    from gpllm.data.synthetic.screens import SyntheticConfig

    keys = _fields_of(SyntheticConfig, "generator knob")
    return {**keys, **_fields_of(PairConfig, "pair generator knob ([combos] only)")} if combos else keys


def _active_keys() -> dict[str, Key]:
    return {
        "acquisitions": Key(
            STR_LIST,
            "list of strings",
            "random, max_variance, variance_reduction, coreset, "
            "ucb_effect (default all), or 'file.py:attr' / 'module:attr' of your own",
        ),
        "repeats": Key(INT, "int", "repeats, each with its own test set and seed set (default 5)"),
        "seed_size": Key(INT, "int", "perturbations measured first, at random (default 50)"),
        "batch_size": Key(INT, "int", "perturbations each round adds (default 50)"),
        "budget": Key(INT, "int", "perturbations measured in the end, seed set included (default 800)"),
        "test_fraction": Key(NUMBER, "number", "share of the screen held out for scoring (default 0.2)"),
        "seed": Key(INT, "int", "seed of the test sets, seed sets and random acquisitions (default 0)"),
        "screen": Key(STR, "string", "the screen to simulate on (default: the config's first)"),
        "embedding": Key(STR, "string", "the embedding the GP uses (default: the config's last)"),
        "model": Key(STR, "string", "'gp', 'gp_blocks', a [models.NAME] GP, or a 'module:attr' kernel (default gp)"),
        "gp_dtype": Key(one_of("float32", "float64"), "string", "precision of the GP fits (default float32)"),
    }


TOP_KEYS = {
    "name": Key(STR, "string", "the run's name: its folder under results/ (made a safe file name)"),
    "data": Key(TABLE, "table", "[data]: kind = 'synthetic' or 'files', and their keys"),
    "embeddings": Key(
        STR_LIST,
        "list of strings",
        "sources joined by '+' (text, sequence, text+sequence); '@K' or '@raw' sets the PCA size",
    ),
    "pca_k": Key(INT, "int", "principal components per source (0: raw vectors)"),
    "missing": Key(one_of("drop", "mean"), "string", "a perturbation without a vector: drop it, or use the mean"),
    "sweep": Key(TABLE, "table", "[sweep]: the grid"),
    "evaluate": Key(STR_LIST, "list of strings", "screens to run the grid on (default all)"),
    "models": Key(TABLE, "table", "[models.NAME]: a model of your own, or options of a built-in one"),
    "executor": Key(
        STR,
        "string",
        "where the sweep runs: 'local' (default) or 'dask://HOST:PORT', a Dask "
        "cluster whose workers all see the output folder",
    ),
    "combos": Key(TABLE, "table", "[combos]: evaluate two-gene perturbations (seen-0/1/2 splits) instead of the grid"),
    "active": Key(TABLE, "table", "[active]: the design simulation of `gpllm active`"),
}


def _closest(key: str, known) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_table(table: Any, keys: Mapping[str, Key], where: str) -> None:
    """InputError naming the first unknown key (with the closest known one) or badly typed value."""
    if not isinstance(table, Mapping):
        raise InputError(f"{where} must be a table, got {table!r}")
    for key, value in table.items():
        if key not in keys:
            raise InputError(f"{where}: unknown key {key!r}{_closest(key, keys)}; known: {sorted(keys)}")
        problem = keys[key].check(value)
        if problem:
            shown = f"the string {value!r}" if isinstance(value, str) else repr(value)
            raise InputError(f"{where} {key} {problem}, got {shown}")


def check_config(raw: Mapping[str, Any], where: str = "config") -> None:
    """Check every key of a config at every level; InputError naming the first problem."""
    check_table(raw, TOP_KEYS, where)
    check_table(raw.get("sweep", {}), _sweep_keys(), f"{where} [sweep]")
    check_table(raw.get("active", {}), _active_keys(), f"{where} [active]")
    if "models" in raw.get("sweep", {}) and not raw["sweep"]["models"]:
        raise InputError(f"{where} [sweep] models is empty: name at least one model")
    for name, table in raw.get("models", {}).items():
        check_table(table, _model_keys(), f"{where} [models.{name}]")
    if "combos" in raw:
        check_table(raw["combos"], _combos_keys(), f"{where} [combos]")
    data = raw.get("data", {"kind": "synthetic"})
    kind = data.get("kind", "synthetic") if isinstance(data, Mapping) else None
    if kind == "synthetic":
        check_table(data, _synthetic_keys(), f"{where} [data]")
        if "combos" in raw and "shape" in data:
            raise InputError(
                f"{where} [data] shape sets the single-gene grid's screens; a [combos] run draws "
                "one line of its own: set its sizes in [data.overrides]"
            )
        check_table(data.get("overrides", {}), _override_keys("combos" in raw), f"{where} [data.overrides]")
    elif kind == "files":
        check_table(data, _files_keys(), f"{where} [data]")
        for group, keys in (("screens", _screen_keys()), ("embeddings", EMBEDDING_KEYS)):
            entries = data.get(group, {})
            check_table(entries, {n: Key(TABLE, "table", "") for n in entries}, f"{where} [data.{group}]")
            for name, entry in entries.items():
                check_table(entry, keys, f"{where} [data.{group}.{name}]")
    else:
        raise InputError(f"{where} [data] kind must be 'synthetic' or 'files', got {kind!r}")


def describe() -> str:
    """The config reference as Markdown: every section, key, type and meaning."""
    sections = [
        ("top level", TOP_KEYS),
        ("[sweep]", _sweep_keys()),
        ("[models.NAME]", _model_keys()),
        ("[active] (`gpllm active`)", _active_keys()),
        ('[data] with kind = "synthetic"', _synthetic_keys()),
        ("[data.overrides]", _override_keys(combos=True)),
        ('[data] with kind = "files"', _files_keys()),
        ("[data.screens.NAME]", _screen_keys()),
        ("[data.embeddings.SOURCE]", EMBEDDING_KEYS),
        ("[combos]", _combos_keys()),
    ]
    lines = [
        "# gpllm reproduce: config reference",
        "",
        "Generated from `gpllm/configs.py` (`python -m gpllm.configs > docs/config.md`); a test keeps",
        "it in step with the checks. Unknown keys and wrong types are errors naming the key.",
        "",
    ]
    for title, keys in sections:
        lines += [f"## {title}", "", "| key | type | meaning |", "| --- | --- | --- |"]
        lines += [f"| `{k}` | {v.kind} | {v.help} |" for k, v in keys.items()]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
