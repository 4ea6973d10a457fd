"""Cross-validation over perturbations with nested downsampling of the training folds.

The paper's protocol (Sec. 3): 5-fold CV over all P perturbations, and within
each fold the training set downsampled to 100, 200, ..., 1400 perturbations.

- Folds: one seeded permutation of 0..P-1 cut into ``n_folds`` near-equal
  parts (the first P mod n_folds folds hold one more); fold f tests part f and
  trains on the rest. ``n_folds="loo"`` makes P folds of one perturbation each,
  for tiny screens.
- Sizes: one seeded permutation of each fold's training set; the size-s subset
  is its first s entries, so smaller subsets are nested in larger ones. Sizes
  larger than the smallest training fold are clipped to it (with a warning)
  and duplicates dropped, so every fold offers the same sizes: rows from
  different folds pool at one size, and equal-size folds can be vmapped.
  The full training fold is not added on top: the paper's largest size, 1400,
  is just below its ~1419. ``sizes=None`` means the largest size common to all
  folds only.
- Randomness: ``SeedSequence(seed)`` spawns one stream for the fold
  assignment and one per fold for its downsampling, so a fold's subsets do not
  depend on how many sizes were asked for.

A plan is saved as JSON with the perturbation names, so a run can be repeated
or compared with another tool; loading validates every split.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any, Literal

import numpy as np

from gpllm.errors import SplitError

#: The paper's training-set sizes (Fig. 1, Table 1 at 1400).
DEFAULT_SIZES: tuple[int, ...] = (100, 200, 400, 700, 1000, 1400)

_FORMAT = "gpllm-splits"
_VERSION = 1


def _index_array(x: Any, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0:
        return np.zeros((0,), np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise SplitError(f"{what} must be a 1-D list of integer indices")
    out = np.sort(arr.astype(np.int64))
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class Split:
    """One (fold, training size) cell of a plan.

    fold: the CV fold, 0-based. size: number of training perturbations.
    train: (size,) sorted indices into the plan's perts; test: (T,) likewise.
    Both non-empty, without repeats, and disjoint (else SplitError).
    """

    fold: int
    size: int
    train: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        where = f"fold {self.fold} (size {self.size})"
        if not (_is_int(self.fold) and _is_int(self.size)):
            raise SplitError(f"{where}: fold and size must be ints")
        object.__setattr__(self, "fold", int(self.fold))
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "train", _index_array(self.train, f"{where}: train"))
        object.__setattr__(self, "test", _index_array(self.test, f"{where}: test"))
        for name, idx in (("train", self.train), ("test", self.test)):
            if idx.size == 0:
                raise SplitError(f"{where}: {name} set is empty")
            if np.any(idx[1:] == idx[:-1]):
                first = int(idx[1:][idx[1:] == idx[:-1]][0])
                raise SplitError(f"{where}: {name} set repeats index {first}")
        if self.train.size != self.size:
            raise SplitError(f"{where}: train set holds {self.train.size} perturbations, not {self.size}")
        shared = np.intersect1d(self.train, self.test)
        if shared.size:
            raise SplitError(
                f"{where}: {shared.size} perturbation(s) are in both train and test, e.g. index {int(shared[0])}"
            )

    def _key(self) -> tuple:
        return (self.fold, self.size, self.train.tobytes(), self.test.tobytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Split) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@dataclass(frozen=True)
class SplitPlan:
    """All splits of one experiment over the perturbations ``perts``.

    perts: the P perturbation names indices refer to (unique).
    n_folds, seed, sizes: how the plan was made (sizes after clipping).
    splits: ordered by fold, then size. Every split's indices must lie in
    [0, P) and its fold in [0, n_folds) (else SplitError).
    """

    perts: tuple[str, ...]
    n_folds: int
    seed: int
    sizes: tuple[int, ...]
    splits: tuple[Split, ...]

    def __post_init__(self) -> None:
        if not (_is_int(self.n_folds) and _is_int(self.seed)):
            raise SplitError(f"n_folds {self.n_folds!r} and seed {self.seed!r} must be ints")
        object.__setattr__(self, "n_folds", int(self.n_folds))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "perts", tuple(self.perts))
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        object.__setattr__(self, "splits", tuple(self.splits))
        _check_names(self.perts)
        p = len(self.perts)
        if not self.splits:
            raise SplitError("the plan holds no splits")
        for sp in self.splits:
            if not 0 <= sp.fold < self.n_folds:
                raise SplitError(f"fold {sp.fold} (size {sp.size}) is outside 0..{self.n_folds - 1}")
            hi = max(int(sp.train[-1]), int(sp.test[-1]))
            if int(sp.train[0]) < 0 or int(sp.test[0]) < 0 or hi >= p:
                raise SplitError(
                    f"fold {sp.fold} (size {sp.size}): indices must lie in [0, {p}) for the plan's {p} perturbations"
                )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (indices as lists, names included)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "perts": list(self.perts),
            "n_folds": self.n_folds,
            "seed": self.seed,
            "sizes": list(self.sizes),
            "splits": [
                {"fold": s.fold, "size": s.size, "train": s.train.tolist(), "test": s.test.tolist()}
                for s in self.splits
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitPlan:
        """Inverse of :meth:`to_dict`; raises SplitError for anything malformed."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise SplitError(f"not a {_FORMAT} document (its 'format' field is missing or differs)")
        if d.get("version") != _VERSION:
            raise SplitError(f"unsupported {_FORMAT} version {d.get('version')!r}, expected {_VERSION}")
        try:
            splits = tuple(Split(int(s["fold"]), int(s["size"]), s["train"], s["test"]) for s in d["splits"])
            return cls(
                perts=tuple(str(p) for p in d["perts"]),
                n_folds=int(d["n_folds"]),
                seed=int(d["seed"]),
                sizes=tuple(int(s) for s in d["sizes"]),
                splits=splits,
            )
        except (KeyError, TypeError) as err:
            raise SplitError(f"malformed {_FORMAT} document: {err!r}") from None

    def save(self, path: str | PathLike[str]) -> None:
        """Write the plan as JSON."""
        from gpllm.atomic import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | PathLike[str]) -> SplitPlan:
        """Read and validate a plan written by :meth:`save` (or another tool)."""
        try:
            with open(path, encoding="utf-8") as fh:
                d = json.load(fh)
        except json.JSONDecodeError as err:
            raise SplitError(f"{path}: not valid JSON ({err})") from None
        try:
            return cls.from_dict(d)
        except SplitError as err:
            raise SplitError(f"{path}: {err}") from None

    def reindex(self, perts: Sequence[str]) -> SplitPlan:
        """The same splits with indices into ``perts`` (another ordering, or a superset).

        Raises SplitError naming the plan's perturbations missing from ``perts``.
        """
        perts = tuple(perts)
        _check_names(perts)
        position = {name: i for i, name in enumerate(perts)}
        missing = [name for name in self.perts if name not in position]
        if missing:
            raise SplitError(f"{len(missing)} perturbation(s) of the plan are missing, e.g. {missing[:5]}")
        new_index = np.array([position[name] for name in self.perts], np.int64)
        splits = tuple(Split(s.fold, s.size, new_index[s.train], new_index[s.test]) for s in self.splits)
        return SplitPlan(perts, self.n_folds, self.seed, self.sizes, splits)


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_names(perts: tuple[str, ...]) -> None:
    if not all(isinstance(p, str) for p in perts):
        raise SplitError("perturbation names must be strings")
    dupes = [name for name, c in Counter(perts).items() if c > 1]
    if dupes:
        raise SplitError(f"{len(dupes)} perturbation name(s) occur more than once, e.g. {dupes[:5]}")


def make_plan(
    perts: Sequence[str],
    *,
    n_folds: int | Literal["loo"] = 5,
    sizes: Sequence[int] | None = DEFAULT_SIZES,
    seed: int = 0,
) -> SplitPlan:
    """K-fold CV over the perturbations ``perts`` with nested training sizes.

    n_folds: number of folds (>= 2), or "loo" for one fold per perturbation.
    sizes: training-set sizes; clipped to the smallest training fold (warning)
        and deduplicated; None: that smallest training-fold size only.
    Raises SplitError for duplicate names, n_folds < 2, or more folds than
    perturbations (an empty fold).
    """
    perts = tuple(perts)
    _check_names(perts)
    if not _is_int(seed) or seed < 0:
        raise SplitError(f"seed must be an int >= 0, not {seed!r}")
    p = len(perts)
    if n_folds == "loo" and p < 2:
        raise SplitError(f"leave-one-out needs at least 2 perturbations, got {p}")
    k = p if n_folds == "loo" else n_folds
    if not _is_int(k) or k < 2:
        raise SplitError(f"n_folds must be an int >= 2 or 'loo', not {n_folds!r}")
    if k > p:
        raise SplitError(f"{p} perturbation(s) cannot fill {k} folds: fold {p} would be empty")
    k = int(k)
    folds = np.array_split(np.arange(p), k)  # positions into the permutation below
    n_train_min = p - max(len(f) for f in folds)
    fold_seq, *down_seqs = np.random.SeedSequence(seed).spawn(1 + k)
    order = np.random.default_rng(fold_seq).permutation(p)
    used = _clip_sizes(sizes, n_train_min)

    splits = []
    for f, (pos, seq) in enumerate(zip(folds, down_seqs)):
        test = order[pos]
        train_perm = np.random.default_rng(seq).permutation(np.setdiff1d(order, test))
        splits += [Split(f, s, train_perm[:s], test) for s in used]
    return SplitPlan(perts, k, int(seed), used, tuple(splits))


def _clip_sizes(sizes: Sequence[int] | None, n_train_min: int) -> tuple[int, ...]:
    if sizes is None:
        return (n_train_min,)
    sizes = tuple(sizes)
    if not sizes or not all(_is_int(s) and s >= 1 for s in sizes):
        raise SplitError(f"sizes must be positive ints, not {sizes!r}")
    clipped = sorted(s for s in set(sizes) if s > n_train_min)
    if clipped:
        warnings.warn(
            f"training sizes {clipped} exceed the {n_train_min} training perturbations "
            f"every fold holds; clipped to {n_train_min}",
            stacklevel=3,
        )
    return tuple(sorted({min(int(s), n_train_min) for s in sizes}))
