"""The screens' expression matrices shared by the sweep's worker processes, not copied.

Each worker process is handed the sweep's inputs once, pickled. A screen's Y
(P x G float64: 627 MB for a genome-wide 9,800 x 8,000 screen) would arrive
as one private copy per worker. Instead it is written once to a ``.npy`` file
and mapped read-only (:func:`share_screens`), and a read-only mapping of a whole
file pickles as its file name (:func:`reduce_mapped`), so every worker maps the
same pages of the page cache. The values are the same bits either way.
"""

from __future__ import annotations

import dataclasses
import mmap
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gpllm.data.screens.perturbation_data import PerturbationData


def share_screens(screens: Mapping[str, PerturbationData], folder: Path) -> dict[str, PerturbationData]:
    """Each screen with its Y written to ``folder`` (one ``.npy`` per screen) and read back as a
    read-only mapping of that file; ``folder`` must outlive the workers that use them."""
    folder.mkdir(parents=True, exist_ok=True)
    shared = {}
    for index, (name, screen) in enumerate(screens.items()):
        path = folder / f"screen{index}_Y.npy"
        np.save(path, np.ascontiguousarray(screen.Y))
        shared[name] = dataclasses.replace(screen, Y=np.load(path, mmap_mode="r"))
    return shared


def reduce_mapped(x: np.memmap):
    """Pickle a read-only mapping of a whole file as (open that file again); anything else
    (a slice, a writable mapping) as the usual copy of its values."""
    whole = isinstance(x.base, mmap.mmap) and x.filename is not None and x.mode == "r"
    if whole and x.flags.c_contiguous:
        return _open_mapped, (x.filename, x.dtype.str, x.shape, x.offset)
    return np.asarray(x).copy().__reduce__()


def _open_mapped(filename: str, dtype: str, shape: tuple[int, ...], offset: int) -> np.memmap:
    return np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=shape, offset=offset)
