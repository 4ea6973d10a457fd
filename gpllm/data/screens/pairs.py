"""Two-gene perturbations as first-class conditions: order-free, linked to their singles.

A screen's two-gene conditions arrive as names ``'A+B'`` in the combos screen
that :func:`gpllm.data.screens.perturbseq.read_screen` sets apart. A
:class:`PairScreen` holds them beside the single-gene screen:

* a pair is unordered: its name is canonical (genes sorted, ``'B+A'`` -> ``'A+B'``)
  and ``genes[i]`` holds its two genes in that order;
* ``single_rows[i]`` links each gene of pair i to its row in ``singles``
  (-1 where that gene has no single-gene measurement);
* conditions of three or more genes are set apart, counted and logged;
* a pair naming one gene twice (``'A+A'``) or measured under two spellings
  (``'A+B'`` and ``'B+A'``, whose cells should have been pooled) is a
  :class:`~gpllm.errors.DataError` naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpllm.data.screens.labels import COMBO_SEP
from gpllm.data.screens.perturbation_data import MIN_PERTS, PerturbationData
from gpllm.data.validate import preview
from gpllm.errors import DataError, InputError, ShapeError

log = logging.getLogger(__name__)

#: Separator of the genes in a condition's name (as the label parser writes it).
SEP = COMBO_SEP


def split_condition(name: str) -> tuple[str, ...]:
    """The genes of a condition name, canonical (sorted): ``'B + A'`` -> ``('A', 'B')``."""
    genes = tuple(sorted(g.strip() for g in str(name).split(SEP)))
    if not all(genes):
        raise InputError(f"condition {name!r}: an empty gene name")
    return genes


def pair_name(a: str, b: str) -> str:
    """The canonical name of the unordered pair {a, b}; InputError if a == b."""
    if a == b:
        raise InputError(f"pair {a}{SEP}{b} names gene {a!r} twice: a pair needs two different genes")
    return SEP.join(sorted((a, b)))


@dataclass(frozen=True, eq=False)
class PairScreen:
    """Single- and two-gene perturbations of one screen, sharing ctrl and genes.

    singles : PerturbationData, S single-gene perturbations.
    pairs : PerturbationData, M two-gene perturbations named ``'A+B'`` (canonical).
    genes : tuple of M (a, b), a < b, the genes of each pair.
    single_rows : int (M, 2), row of a and b in ``singles``; -1 where not measured.
    set_apart : conditions of three or more genes, not modelled (counted in provenance).
    """

    singles: PerturbationData
    pairs: PerturbationData
    genes: tuple[tuple[str, str], ...]
    single_rows: np.ndarray
    set_apart: tuple[str, ...] = ()

    @property
    def n_pairs(self) -> int:
        return self.pairs.n_perts

    @property
    def all_genes(self) -> tuple[str, ...]:
        """Every perturbed gene, singles first, then those only seen in pairs (sorted)."""
        in_pairs = sorted({g for pair in self.genes for g in pair} - set(self.singles.perts))
        return (*self.singles.perts, *in_pairs)

    def __repr__(self) -> str:
        return (
            f"PairScreen(singles={self.singles.n_perts}, pairs={self.n_pairs}, "
            f"set_apart={len(self.set_apart)}, G={self.singles.n_genes})"
        )


def pair_screen(singles: PerturbationData, combos: PerturbationData | None, where: str = "screen") -> PairScreen:
    """Link a screen's two-gene conditions to its singles (see the module docstring).

    ``combos`` holds every multi-gene condition (``read_screen(...).combos``);
    three-gene ones are set apart and counted. Raises DataError when fewer than
    2 pairs remain, when ctrl or the measured genes differ between the two, for
    a pair naming one gene twice, or for one pair under two spellings.
    """
    if combos is None:
        raise DataError(f"{where}: no two-gene conditions (fewer than {MIN_PERTS} were found)")
    if combos.genes != singles.genes or not np.array_equal(combos.ctrl, singles.ctrl):
        raise ShapeError(f"{where}: the pairs and singles must share measured genes and ctrl")
    genes_of = [split_condition(p) for p in combos.perts]
    twice = [p for p, g in zip(combos.perts, genes_of) if len(set(g)) < len(g)]
    if twice:
        raise DataError(f"{where}: {len(twice)} condition(s) name one gene twice: {preview(twice)}")
    set_apart = tuple(p for p, g in zip(combos.perts, genes_of) if len(g) > 2)
    if set_apart:
        log.warning(
            "%s: %d condition(s) of three or more genes set apart (not modelled): %s",
            where,
            len(set_apart),
            preview(set_apart),
        )
    keep = [i for i, g in enumerate(genes_of) if len(g) == 2]
    names = [SEP.join(genes_of[i]) for i in keep]
    seen: dict[str, str] = {}
    for i, name in zip(keep, names):
        if name in seen:
            raise DataError(
                f"{where}: pair {name} is measured under two labels, {seen[name]!r} and "
                f"{combos.perts[i]!r}: give its cells one label so they are pooled"
            )
        seen[name] = combos.perts[i]
    if len(keep) < MIN_PERTS:
        raise DataError(f"{where}: {len(keep)} two-gene condition(s) {preview(names)}; at least {MIN_PERTS} needed")
    prov: dict[str, Any] = {
        **dict(combos.provenance),
        "perturbation_kind": "pair",
        "n_set_apart_3plus_genes": len(set_apart),
        "set_apart_3plus_genes": list(set_apart),
    }
    pairs = PerturbationData(
        Y=combos.Y[keep],
        ctrl=combos.ctrl,
        de=combos.de[keep],
        perts=tuple(names),
        genes=combos.genes,
        provenance=prov,
    )
    pos = {p: i for i, p in enumerate(singles.perts)}
    pair_genes = tuple((genes_of[i][0], genes_of[i][1]) for i in keep)
    rows = np.array([[pos.get(a, -1), pos.get(b, -1)] for a, b in pair_genes], dtype=np.int64).reshape(-1, 2)
    rows.setflags(write=False)
    n_unlinked = int((rows < 0).any(axis=1).sum())
    if n_unlinked:
        log.info("%s: %d of %d pairs lack a measured single for one or both genes", where, n_unlinked, len(keep))
    return PairScreen(singles, pairs, pair_genes, rows, set_apart)


__all__ = ["SEP", "PairScreen", "pair_name", "pair_screen", "split_condition"]
