"""Seen-0/1/2 splits never leak a test pair's unseen genes into training (property test)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpllm.errors import SplitError
from gpllm.evaluate.pair_splits import SEEN, leaks, seen_count, seen_splits


@st.composite
def screens(draw):
    """Random pair graphs over up to 25 genes, some genes without a measured single."""
    n_genes = draw(st.integers(4, 25))
    genes = [f"G{i:02d}" for i in range(n_genes)]
    all_pairs = [(a, b) for i, a in enumerate(genes) for b in genes[i + 1 :]]
    pairs = draw(st.lists(st.sampled_from(all_pairs), min_size=5, max_size=60, unique=True))
    singles = [g for g in genes if draw(st.booleans()) or draw(st.booleans())]
    return pairs, singles


@settings(max_examples=60, deadline=None)
@given(screen=screens(), seed=st.integers(0, 1000), n_folds=st.integers(2, 5))
def test_folds_keep_their_promises(screen, seed, n_folds):
    pairs, singles = screen
    folds = seen_splits(pairs, singles, n_folds=n_folds, seed=seed)
    genes = {"+".join(p): p for p in pairs}
    assert [(f.seen, f.fold) for f in folds] == [(s, k) for s in SEEN for k in range(n_folds)]
    for fold in folds:
        assert leaks(fold, genes) == []
        assert len(fold.test_pairs) == len(set(fold.test_pairs))
    for s in SEEN:
        tested = Counter(p for f in folds if f.seen == s for p in f.test_pairs)
        assert max(tested.values(), default=1) == 1  # each pair is tested at most once per category
        if s == 0:
            assert set(tested) == set(genes)  # every pair can be a seen-0 test pair
        if s == 2:
            both = {n for n, (a, b) in genes.items() if a in singles and b in singles}
            assert set(tested) == both


def test_a_hand_made_seen_one_fold():
    pairs = [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E")]
    folds = seen_splits(pairs, ["A", "B", "C", "D", "E"], n_folds=2, seed=0)
    assert sum(len(f.test_pairs) for f in folds if f.seen == 1) >= 2
    for fold in (f for f in folds if f.seen == 1):
        for name in fold.test_pairs:
            a, b = name.split("+")
            assert seen_count((a, b), fold) == 1
            unseen = a if a in fold.unseen else b
            assert unseen not in fold.train_singles
            assert all(unseen not in p.split("+") for p in fold.train_pairs)


def test_the_leak_check_catches_a_leak():
    pairs = [("A", "B"), ("B", "C"), ("C", "D"), ("A", "D")]
    fold = next(f for f in seen_splits(pairs, ["A", "B", "C", "D"], n_folds=2) if f.seen == 0)
    genes = {"+".join(p): p for p in pairs}
    leaky = fold._replace(train_singles=fold.train_singles + fold.unseen[:1])
    assert any("has a training single" in p for p in leaks(leaky, genes))
    assert any("seen gene" in p for p in leaks(leaky, genes))


def test_too_few_pairs_is_a_split_error():
    with pytest.raises(SplitError, match="cannot be dealt"):
        seen_splits([("A", "B")], ["A", "B"], n_folds=5)
