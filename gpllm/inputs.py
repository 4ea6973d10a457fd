"""A config's inputs as files name them: screens, vector sources, and the embeddings built from them.

Shared by the single-gene sweep (:mod:`gpllm.reproduce`), the two-gene one
(:mod:`gpllm.reproduce_combos`) and the design simulation (:mod:`gpllm.active.run`);
:func:`load_inputs` loads what a :class:`~gpllm.run_config.ReproduceConfig` names. An entry names a local
file (``path``) or a registry download (``source``); a vector source is a file (GenePT pickle,
table, ProtT5 h5 with an ID mapping) or gene descriptions embedded locally.
An embedding name joins sources with ``+`` and may end in ``@K`` or ``@raw``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gpllm.data.embeddings.assemble import Embedding, build_embedding, coverage, log_coverage
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.screens.perturbation_data import PerturbationData, intersect_perturbations
from gpllm.errors import InputError
from gpllm.evaluate.runner.store import fingerprint

if TYPE_CHECKING:
    from gpllm.run_config import ReproduceConfig

COMBINE = "+"
SIZE_SUFFIX = "@"


def _embedding_k(name: str, suffix: str) -> int | None:
    if suffix == "raw":
        return None
    if suffix.isdigit() and int(suffix) > 0:
        return int(suffix)
    raise InputError(f"embedding {name!r}: the part after '@' must be a positive integer or 'raw'")


def local_file(entry: Mapping[str, Any], where: str, key: str = "path") -> Path:
    """An entry's file: ``entry[key]``, or the registry name ``entry[key + '_source']``
    (``source`` for ``path``) fetched into the cache (``allow_unverified`` passed on)."""
    source_key = "source" if key == "path" else f"{key}_source"
    if key in entry:
        return Path(entry[key])
    if source_key in entry:
        from gpllm.data.sources.registry import fetch

        return fetch(entry[source_key], allow_unverified=bool(entry.get("allow_unverified", False))).path
    raise InputError(f"{where}: give {key!r} or {source_key!r} (a name from `gpllm data list`)")


def load_screens(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, PerturbationData]:
    """``{name: {"path"|"source", "preset": "replogle_bulk"|"replogle_cells"|"norman19"|..., options}}``."""
    from gpllm.data.screens import labels
    from gpllm.data.screens.perturbseq import read_screen

    screens = {}
    for name, entry in entries.items():
        where = f"screen {name!r}"
        spec = labels.preset(entry.get("preset"), where)
        options = {k: v for k, v in entry.items() if k not in ("path", "source", "preset", "allow_unverified")}
        screens[name] = read_screen(local_file(entry, where), spec, **options).singles
    return screens


def load_vectors_from(
    source: str, entry: Mapping[str, Any], needed: set[str] | None = None, *, progress: bool = False
) -> GeneVectors:
    """One embedding source: a vector file (GenePT pickle, table, ProtT5 h5 with ``idmapping``),
    or ``descriptions`` (a JSON of gene descriptions) embedded locally (``text`` extra): only
    the ``needed`` genes' descriptions, through a cache of vectors keyed by model and text
    (``text-embeddings/`` in the data cache, ``$GPLLM_DATA``), with a progress bar if ``progress``."""
    from gpllm.data.embeddings import files as embedding_files

    where = f"embedding {source!r}"
    if "descriptions" in entry:
        from gpllm.data.embeddings.text import DEFAULT_MODEL, embed_descriptions, read_descriptions
        from gpllm.data.sources.registry import cache_dir

        texts = read_descriptions(entry["descriptions"])
        if needed is not None:
            texts = {gene: text for gene, text in texts.items() if gene in needed}
            if not texts:
                raise InputError(f"{where}: {entry['descriptions']} describes none of the screens' perturbations")
        from gpllm.progress import bar

        with bar(f"embedding {source!r}", len(texts), enabled=progress) as update:
            return embed_descriptions(
                texts, model=entry.get("model", DEFAULT_MODEL), on_batch=update, cache=cache_dir() / "text-embeddings"
            )
    path = local_file(entry, where)
    options = {k: v for k, v in entry.items() if k in ("dim", "index_col")}
    if "idmapping" in entry or "idmapping_source" in entry:
        mapping = local_file(entry, where, key="idmapping")
        options["id_mapping"] = embedding_files.read_uniprot_idmapping(mapping)
    return embedding_files.load_vectors(path, **options)


def make_embeddings(
    vectors: Mapping[str, GeneVectors], perts, names, *, k: int | None = 50, missing: str = "drop"
) -> dict[str, Embedding]:
    """``{"text": ..., "text+sequence": ...}``: each name's sources, PCA-reduced and concatenated.

    A name may end in ``@K`` to reduce its sources to K components instead of ``k``,
    or ``@raw`` to keep the raw vectors (e.g. for a kernel that learns its own projection).
    """
    out = {}
    for name in names:
        sources_part, _, suffix = name.partition(SIZE_SUFFIX)
        own_k = k if not suffix else _embedding_k(name, suffix)
        sources = sources_part.split(COMBINE)
        absent = [s for s in sources if s not in vectors]
        if absent:
            raise InputError(f"embedding {name!r} needs source(s) {absent}; loaded: {sorted(vectors)}")
        out[name] = build_embedding({s: vectors[s] for s in sources}, perts, k=own_k, missing=missing, quiet=True)
    used = sorted({s for name in names for s in name.partition(SIZE_SUFFIX)[0].split(COMBINE)})
    log_coverage(coverage(list(perts), {s: vectors[s] for s in used}), missing)  # once per source, not per embedding
    return out


class Inputs(NamedTuple):
    """Screens restricted to shared perturbations, the raw vectors, and a data id for the run manifest."""

    screens: dict[str, PerturbationData]
    vectors: dict[str, GeneVectors]
    data_id: str


def load_inputs(config: ReproduceConfig, *, progress: bool = False) -> Inputs:
    """The config's screens (restricted to the perturbations all of them share) and vectors
    (a progress bar over local text embedding if ``progress``)."""
    data = dict(config.data)
    kind = data.get("kind", "synthetic")
    if kind == "synthetic":
        from gpllm.data.synthetic.screens import make_screens, synthetic_config

        generator = synthetic_config(data.get("shape", "essential"), **dict(data.get("overrides", {})))
        draw = make_screens(int(data.get("seed", 0)), generator)
        screens, vectors = draw.screens, draw.vectors
    elif kind == "files":
        if not data.get("screens") or not data.get("embeddings"):
            raise InputError(f"config {config.name!r}: kind='files' needs [data.screens.*] and [data.embeddings.*]")
        screens = load_screens(data["screens"])
        needed = {p for screen in screens.values() for p in screen.perts}
        vectors = {
            name: load_vectors_from(name, entry, needed, progress=progress)
            for name, entry in data["embeddings"].items()
        }
    else:
        raise InputError(f"config {config.name!r}: data.kind must be 'synthetic' or 'files', got {kind!r}")
    shared = intersect_perturbations(*screens.values())
    return Inputs(dict(zip(screens, shared)), dict(vectors), fingerprint(data))
