"""``gpllm reproduce`` for a config with a ``[combos]`` section: two-gene perturbations.

Data flow::

    [data] synthetic -> make_pair_screen (singles + pairs, known interactions)
           files     -> read_screen(...) -> pair_screen(singles, combos)
      -> one embedding over every perturbed gene (PCA, the config's missing-gene policy)
      -> run_combos over GEARS' seen-0/1/2 folds -> write_combos_report

``[combos]`` keys (see ``docs/config.md``): the models by name
(:data:`PAIR_MODEL_NAMES`), the folds, the GI magnitude band, the GP's optimiser
steps; ``[data.overrides]`` may set the pair generator's knobs
(:class:`~gpllm.data.synthetic.pairs.PairConfig`) beside the singles'.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from gpllm.data.screens.pairs import PairScreen, pair_screen
from gpllm.errors import InputError
from gpllm.evaluate.combos import CombosConfig, run_combos
from gpllm.evaluate.runner.store import RunStore, fingerprint
from gpllm.gp.fit import FitOptions
from gpllm.inputs import load_vectors_from, local_file, make_embeddings
from gpllm.models.pairs import PAIR_MODEL_NAMES, default_pair_models
from gpllm.progress import bar

log = logging.getLogger(__name__)


def pair_models(names, max_steps: int = 200) -> tuple:
    """The models called ``names`` (InputError naming an unknown one)."""
    known = {m.name: m for m in default_pair_models(FitOptions(max_steps=max_steps))}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise InputError(
            f"[combos] models: unknown {unknown}; choose from {list(PAIR_MODEL_NAMES)}"
            if unknown
            else "[combos] models is empty"
        )
    return tuple(known[n] for n in names)


def load_pair_inputs(data: Mapping[str, Any], screen_name: str | None = None):
    """(PairScreen, {source: GeneVectors}) from the config's ``[data]``."""
    kind = data.get("kind", "synthetic")
    if kind == "synthetic":
        from gpllm.data.synthetic.pairs import make_pair_screen

        draw = make_pair_screen(int(data.get("seed", 0)), **dict(data.get("overrides", {})))
        return draw.screen, draw.vectors
    from gpllm.data.screens import labels
    from gpllm.data.screens.perturbseq import read_screen

    entries = dict(data.get("screens", {}))
    if screen_name is None and len(entries) != 1:
        raise InputError(f"[combos] screen: name one of the screens {sorted(entries)}")
    name = screen_name or next(iter(entries))
    if name not in entries or not data.get("embeddings"):
        raise InputError(f"[combos] needs [data.screens.{name}] and [data.embeddings.*]; screens: {sorted(entries)}")
    entry, where = entries[name], f"screen {name!r}"
    options = {k: v for k, v in entry.items() if k not in ("path", "source", "preset", "allow_unverified")}
    screen = read_screen(local_file(entry, where), labels.preset(entry.get("preset"), where), **options)
    pairs: PairScreen = pair_screen(screen.singles, screen.combos, where)
    needed = set(pairs.all_genes)
    return pairs, {s: load_vectors_from(s, e, needed) for s, e in data["embeddings"].items()}


def reproduce_combos(config, out_dir: str | Path, *, progress: bool = True) -> tuple[pl.DataFrame, dict[str, Path]]:
    """Run a :class:`~gpllm.reproduce.ReproduceConfig`'s combos evaluation into ``out_dir``:
    (the result rows, the report's files)."""
    from gpllm.report.combos import write_combos_report

    combos = dict(config.combos)
    screen, vectors = load_pair_inputs(config.data, combos.get("screen"))
    embedding_name = combos.get("embedding", config.embeddings[0])
    embedding = make_embeddings(vectors, screen.all_genes, [embedding_name], k=config.pca_k, missing=config.missing)[
        embedding_name
    ]
    models = pair_models(combos.get("models", PAIR_MODEL_NAMES), int(combos.get("max_steps", 200)))
    run_config = CombosConfig(
        **{k: combos[k] for k in ("n_folds", "seed", "equal_sizes", "magnitude_tol") if k in combos}
    )
    # The run folder's lock, sealed parts and refusal of another run, as for the sweep.
    store = RunStore(out_dir)
    run = {
        "combos": combos,
        "data": fingerprint(dict(config.data)),
        "embedding": embedding_name,
        "pca_k": config.pca_k,
        "missing": config.missing,
    }
    try:
        if store.open(run):
            log.info("resuming the combos run in %s", store.root)
        with bar("combos: folds x models", enabled=progress) as update:
            results, notes = run_combos(screen, embedding, models, run_config, progress=update, store=store)
    finally:
        store.release()
    notes = (f"embedding {embedding_name!r}, {embedding.dim} columns; screen {screen!r}", *notes)
    return results, write_combos_report(results, notes, Path(out_dir) / "report")


__all__ = ["load_pair_inputs", "pair_models", "reproduce_combos"]
