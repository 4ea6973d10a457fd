"""GEARS' split of test pairs by how many of their genes training saw as singles: seen 0 / 1 / 2.

For each category s, the pairs are dealt into ``n_folds`` folds (seeded); fold
k's pairs leave training, and those that can be given category s are its test
pairs. A gene a test pair must not have seen is *unseen*: its single and every
pair naming it leave training too (as in GEARS' simulation split, where unseen
genes occur in no training condition), so nothing about it leaks in.

* seen 2: both genes' singles train; no gene is unseen.
* seen 1: one gene of each test pair is unseen, the other's single trains.
  Which one is drawn at random among the choices that keep every earlier test
  pair of the fold valid; a pair left with no valid choice (its seen gene is
  another test pair's unseen gene, or vice versa) is not tested in this fold
  and is counted (``n_untestable``).
* seen 0: both genes of every test pair are unseen.

A gene without a measured single can never count as seen. Training keeps the
remaining singles and the pairs outside fold k that name no unseen gene;
``n_pairs_removed`` counts pairs outside fold k dropped for naming one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gpllm.errors import SplitError

SEEN = (0, 1, 2)


class PairFold(NamedTuple):
    """One fold of one seen category; names are gene symbols and canonical pair names."""

    seen: int
    fold: int
    test_pairs: tuple[str, ...]
    train_pairs: tuple[str, ...]
    train_singles: tuple[str, ...]
    unseen: tuple[str, ...]
    n_untestable: int
    n_pairs_removed: int


def _seen_one(fold_pairs, measured: set[str], rng: np.random.Generator) -> tuple[list[int], set[str]]:
    """Test pairs (indices into fold_pairs) and unseen genes for seen 1 (see the module docstring)."""
    unseen: set[str] = set()
    seen: set[str] = set()
    tested = []
    for i, (a, b) in enumerate(fold_pairs):
        options = [(s, u) for s, u in ((a, b), (b, a)) if s in measured and s not in unseen and u not in seen]
        already = [o for o in options if o[1] in unseen]  # reuse an unseen gene: fewer removals
        if not options:
            continue
        s, u = (already or options)[rng.integers(len(already or options))]
        seen.add(s)
        unseen.add(u)
        tested.append(i)
    return tested, unseen


def seen_splits(
    pairs: Sequence[tuple[str, str]], singles: Sequence[str], *, n_folds: int = 5, seed: int = 0
) -> list[PairFold]:
    """The folds of every seen category: ``n_folds`` per s in (0, 1, 2), in that order.

    pairs: each pair's two genes (canonical name ``a+b``); singles: genes with a
    measured single. Raises SplitError when there are fewer pairs than folds.
    """
    pairs = [tuple(p) for p in pairs]
    if n_folds < 2 or len(pairs) < n_folds:
        raise SplitError(f"seen_splits: {len(pairs)} pair(s) cannot be dealt into {n_folds} folds (need n_folds >= 2)")
    names = ["+".join(p) for p in pairs]
    measured = set(singles)
    out = []
    for s in SEEN:
        rng = np.random.default_rng([seed, s])
        for k, fold in enumerate(np.array_split(rng.permutation(len(pairs)), n_folds)):
            fold_pairs = [pairs[i] for i in fold]
            if s == 2:
                tested = [i for i, (a, b) in enumerate(fold_pairs) if a in measured and b in measured]
                unseen: set[str] = set()
            elif s == 1:
                tested, unseen = _seen_one(fold_pairs, measured, rng)
            else:
                tested = list(range(len(fold_pairs)))
                unseen = {g for p in fold_pairs for g in p}
            in_fold = set(fold.tolist())
            outside = [i for i in range(len(pairs)) if i not in in_fold]
            train = [i for i in outside if not (set(pairs[i]) & unseen)]
            out.append(
                PairFold(
                    seen=s,
                    fold=k,
                    test_pairs=tuple(names[fold[i]] for i in tested),
                    train_pairs=tuple(names[i] for i in train),
                    train_singles=tuple(g for g in singles if g not in unseen),
                    unseen=tuple(sorted(unseen)),
                    n_untestable=len(fold) - len(tested),
                    n_pairs_removed=len(outside) - len(train),
                )
            )
    return out


def seen_count(pair: tuple[str, str], fold: PairFold) -> int:
    """How many of the pair's genes the fold trains a single of."""
    return sum(g in set(fold.train_singles) for g in pair)


def leaks(fold: PairFold, pair_genes: dict[str, tuple[str, str]]) -> list[str]:
    """What breaks the fold's promises (empty if none): a test pair in training, a test
    pair whose seen count is not ``fold.seen``, an unseen gene in any training condition."""
    problems = []
    train_pairs, unseen = set(fold.train_pairs), set(fold.unseen)
    for name in fold.test_pairs:
        if name in train_pairs:
            problems.append(f"test pair {name} trains")
        if seen_count(pair_genes[name], fold) != fold.seen:
            problems.append(f"test pair {name} has {seen_count(pair_genes[name], fold)} seen gene(s), not {fold.seen}")
    problems += [f"unseen gene {g} has a training single" for g in unseen & set(fold.train_singles)]
    problems += [f"training pair {p} names an unseen gene" for p in train_pairs if set(pair_genes[p]) & unseen]
    return problems


__all__ = ["SEEN", "PairFold", "leaks", "seen_count", "seen_splits"]
