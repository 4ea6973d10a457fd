"""Bad input named before any fitting: the design's numbers, acquisitions, and their batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gpllm.active.acquisitions import Design, check_batch, load_acquisition
from gpllm.active.config import ActiveConfig
from gpllm.configs import _active_keys, check_config
from gpllm.errors import InputError


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"seed": -1}, r"seed must be 0 or more .* got -1"),
        ({"seed_size": 900}, "seed_size 900 is larger than the budget 800"),
        ({"seed_size": 1}, "seed_size must be at least 2"),
        ({"repeats": 0}, "repeats must be at least 1"),
        ({"test_fraction": 1.0}, r"test_fraction must lie in \(0, 1\)"),
        ({"acquisitions": ("random", "random")}, "named more than once"),
        ({"acquisitions": ()}, "acquisitions is empty"),
        ({"budget": 80.5}, "budget must be an integer"),
        ({"gp_dtype": "float16"}, "gp_dtype"),
    ],
)
def test_bad_design_numbers_are_named(change, message):
    with pytest.raises(InputError, match=message):
        dataclasses.replace(ActiveConfig(), **change)


def test_rounds_end_at_the_budget_with_a_smaller_last_batch():
    assert ActiveConfig().rounds == tuple(range(50, 801, 50))
    assert ActiveConfig(seed_size=10, batch_size=20, budget=45).rounds == (10, 30, 45)
    assert ActiveConfig(seed_size=10, batch_size=20, budget=10).rounds == (10,)


def test_budget_larger_than_the_pool_is_named():
    config = ActiveConfig()
    config.check_pool(1001, "the screen")  # 200 held out, pool 801
    with pytest.raises(InputError, match="budget 800 is larger than the pool.*leaving 799"):
        config.check_pool(999, "the screen")


def test_config_keys_are_the_dataclass_fields():
    assert set(_active_keys()) == {f.name for f in dataclasses.fields(ActiveConfig)}


def test_unknown_active_key_is_named_with_its_closest_match():
    with pytest.raises(InputError, match=r"\[active\]: unknown key 'budjet' \(did you mean 'budget'\?\)"):
        check_config({"active": {"budjet": 10}})


def test_unknown_acquisition_is_named():
    with pytest.raises(InputError, match="unknown acquisition 'uncertainty'.*built-in"):
        load_acquisition("uncertainty")


def test_user_acquisition_from_a_file(tmp_path):
    (tmp_path / "my_acq.py").write_text(
        "import numpy as np\n"
        "def first_free(design, batch_size, key):\n"
        "    return np.flatnonzero(design.available)[:batch_size]\n"
        "NOT_CALLABLE = 3\n"
        "def wrong_signature(design):\n"
        "    return []\n"
    )
    acquire = load_acquisition(f"{tmp_path / 'my_acq.py'}:first_free")
    design = Design(None, None, np.zeros((6, 2)), np.array([0, 2]), np.zeros(3))
    assert list(acquire(design, 2, None)) == [1, 3]
    with pytest.raises(InputError, match="not a callable"):
        load_acquisition(f"{tmp_path / 'my_acq.py'}:NOT_CALLABLE")
    with pytest.raises(InputError, match=r"cannot be called as acquire\(design, batch_size, key\)"):
        load_acquisition(f"{tmp_path / 'my_acq.py'}:wrong_signature")
    with pytest.raises(InputError, match="has no attribute 'missing'"):
        load_acquisition(f"{tmp_path / 'my_acq.py'}:missing")


@pytest.mark.parametrize(
    "batch, message",
    [
        ([1, 1, 3], r"repeated indices: \[1\]"),
        ([1, 2, 3], r"1 perturbation\(s\) already measured: pool indices \[2\]"),
        ([1, 3, 6], r"outside the pool \[0, 6\): \[6\].*held-out test"),
        ([-1, 3, 4], r"outside the pool"),
        ([1, 3], r"shape \(2,\); a batch of 3"),
        ([1.0, 3.0, 4.0], "float64 values.*not integer"),
        ([True, False, True], "bool values"),
        ("abc", "not integer"),
    ],
)
def test_bad_batches_are_named(batch, message):
    design = Design(None, None, np.zeros((6, 2)), np.array([0, 2]), np.zeros(3))
    with pytest.raises(InputError, match=rf"acquisition 'mine' .*{message}"):
        check_batch(batch, design, 3, "mine")


def test_a_good_batch_passes_as_int64():
    design = Design(None, None, np.zeros((6, 2)), np.array([0, 2]), np.zeros(3))
    out = check_batch(np.array([5, 1, 3], np.int32), design, 3, "mine")
    assert out.dtype == np.int64 and out.tolist() == [5, 1, 3]


def test_a_model_without_a_predictive_covariance_is_refused():
    from gpllm.active.run import model_spec
    from gpllm.reproduce import ReproduceConfig

    with pytest.raises(InputError, match=r"\[active\] model 'ridge' is not a GP"):
        model_spec(ReproduceConfig(), dataclasses.replace(ActiveConfig(), model="ridge"))
    assert model_spec(ReproduceConfig(), ActiveConfig()).name == "gp"
