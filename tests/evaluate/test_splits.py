"""Cross-validation plans: partition, nesting, seeding, JSON round trip and validation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpllm.errors import SplitError
from gpllm.evaluate.splits import DEFAULT_SIZES, Split, SplitPlan, make_plan


def _names(p):
    return [f"G{i}" for i in range(p)]


def _by_fold(plan):
    out = {}
    for s in plan.splits:
        out.setdefault(s.fold, []).append(s)
    return out


def _check_cv_structure(plan, p):
    folds = _by_fold(plan)
    assert sorted(folds) == list(range(plan.n_folds))
    tests = [folds[f][0].test for f in range(plan.n_folds)]
    # Test folds partition the perturbations into near-equal parts.
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(p))
    assert max(map(len, tests)) - min(map(len, tests)) <= 1
    for f, splits in folds.items():
        assert [s.size for s in splits] == list(plan.sizes)
        for s in splits:
            np.testing.assert_array_equal(s.test, tests[f])
            assert len(s.train) == s.size and not np.intersect1d(s.train, s.test).size
        # Nested: each subset contains the smaller ones.
        for small, big in zip(splits, splits[1:]):
            assert np.isin(small.train, big.train).all()


def test_paper_sized_plan_keeps_the_paper_sizes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no clipping at the paper's scale
        plan = make_plan(_names(1774), seed=0)
    assert plan.sizes == DEFAULT_SIZES and plan.n_folds == 5
    assert len(plan.splits) == 5 * len(DEFAULT_SIZES)
    _check_cv_structure(plan, 1774)
    assert sorted({len(s.test) for s in plan.splits}) == [354, 355]


@settings(max_examples=25, deadline=None)
@given(p=st.integers(2, 60), n_folds=st.integers(2, 8), seed=st.integers(0, 2**32 - 1))
def test_any_plan_partitions_and_nests_or_refuses_empty_folds(p, n_folds, seed):
    if n_folds > p:
        with pytest.raises(SplitError, match="empty"):
            make_plan(_names(p), n_folds=n_folds, sizes=(1, 5, 20), seed=seed)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = make_plan(_names(p), n_folds=n_folds, sizes=(1, 5, 20), seed=seed)
    _check_cv_structure(plan, p)


def test_sizes_are_clipped_to_the_smallest_training_fold_with_a_warning():
    with pytest.warns(UserWarning, match=r"\[100, 1400\].*clipped to 14"):
        plan = make_plan(_names(18), sizes=(5, 100, 1400))
    assert plan.sizes == (5, 14)
    assert {s.size for s in plan.splits} == {5, 14}
    assert make_plan(_names(18), sizes=None).sizes == (14,)


def test_seeding():
    a = make_plan(_names(40), sizes=(5, 10), seed=7)
    assert a == make_plan(_names(40), sizes=(5, 10), seed=7)
    assert a != make_plan(_names(40), sizes=(5, 10), seed=8)


def test_a_folds_subsets_do_not_depend_on_the_other_sizes_asked_for():
    few = make_plan(_names(40), sizes=(5,), seed=1)
    many = make_plan(_names(40), sizes=(5, 10, 20), seed=1)
    assert few.splits == tuple(s for s in many.splits if s.size == 5)


def test_leave_one_out_plan():
    plan = make_plan(_names(18), n_folds="loo", sizes=None)
    assert plan.n_folds == 18 and plan.sizes == (17,)
    assert all(len(s.test) == 1 and len(s.train) == 17 for s in plan.splits)
    _check_cv_structure(plan, 18)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"perts": _names(3), "n_folds": 5}, "3 perturbation.*5 folds"),
        ({"perts": _names(3), "n_folds": 1}, "n_folds"),
        ({"perts": _names(3), "n_folds": "five"}, "n_folds"),
        ({"perts": _names(1), "n_folds": "loo"}, "at least 2 perturbations"),
        ({"perts": ["A", "B", "A", "C"], "n_folds": 2}, "more than once.*'A'"),
        ({"perts": _names(10), "n_folds": 2, "sizes": (0, 3)}, "sizes"),
        ({"perts": _names(10), "n_folds": 2, "sizes": ()}, "sizes"),
        ({"perts": _names(10), "seed": -1}, "seed"),
        ({"perts": _names(10), "seed": 1.5}, "seed"),
    ],
)
def test_bad_plans_raise(kwargs, match):
    with pytest.raises(SplitError, match=match):
        make_plan(**kwargs)


def test_json_round_trip(tmp_path):
    plan = make_plan(_names(23), sizes=(np.int64(4), 8), seed=np.int64(3))  # numpy ints too
    plan.save(tmp_path / "plan.json")
    loaded = SplitPlan.load(tmp_path / "plan.json")
    assert loaded == plan
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["perts"] == _names(23)  # names travel with the indices


def _tampered(tmp_path, edit):
    doc = make_plan(_names(12), n_folds=3, sizes=(3, 6), seed=0).to_dict()
    edit(doc)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda d: d["splits"][3]["train"].__setitem__(0, 12), r"fold 1 \(size 6\).*\[0, 12\)"),
        (lambda d: d["splits"][2]["train"].__setitem__(0, -1), r"fold 1 \(size 3\).*\[0, 12\)"),
        (
            lambda d: d["splits"][4]["train"].__setitem__(0, d["splits"][4]["test"][0]),
            r"fold 2 \(size 3\).*both train and test",
        ),
        (lambda d: d["splits"][1].__setitem__("test", []), r"fold 0 \(size 6\).*test set is empty"),
        (
            lambda d: d["splits"][1]["train"].__setitem__(1, d["splits"][1]["train"][0]),
            r"fold 0 \(size 6\).*repeats",
        ),
        (lambda d: d["splits"][5].__setitem__("size", 5), r"fold 2 \(size 5\).*holds 6"),
        (lambda d: d["splits"][5].__setitem__("fold", 3), r"fold 3 .*outside 0..2"),
        (lambda d: d["splits"][0].__setitem__("train", [0.5, 1.5, 2.5]), r"fold 0 \(size 3\).*integer"),
        (lambda d: d["perts"].__setitem__(1, "G0"), "more than once"),
        (lambda d: d.pop("splits"), "malformed"),
        (lambda d: d.__setitem__("format", "other"), "format"),
    ],
)
def test_loading_validates_every_split(tmp_path, edit, match):
    path = _tampered(tmp_path, edit)
    with pytest.raises(SplitError, match=match) as err:
        SplitPlan.load(path)
    assert str(path) in str(err.value)


def test_loading_garbage_is_a_split_error(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("{not json")
    with pytest.raises(SplitError, match="not valid JSON"):
        SplitPlan.load(path)


def test_reindex_keeps_the_same_perturbations_in_each_split():
    plan = make_plan(_names(15), n_folds=3, sizes=(4,), seed=2)
    other = list(reversed(_names(15))) + ["EXTRA"]
    moved = plan.reindex(other)
    for a, b in zip(plan.splits, moved.splits):
        assert {plan.perts[i] for i in a.train} == {other[i] for i in b.train}
        assert {plan.perts[i] for i in a.test} == {other[i] for i in b.test}
    with pytest.raises(SplitError, match="missing"):
        plan.reindex(_names(14))


def test_split_records_are_frozen_values():
    s = Split(0, 2, [3, 1], [0])
    np.testing.assert_array_equal(s.train, [1, 3])  # stored sorted
    assert s == Split(0, 2, np.array([1, 3]), np.array([0])) and hash(s) == hash(Split(0, 2, [1, 3], [0]))
    with pytest.raises(ValueError):
        s.train[0] = 7
    with pytest.raises(AttributeError):
        s.fold = 1  # type: ignore[misc]
