"""The design simulation end to end on a tiny synthetic screen, through ``gpllm active``.

One run (two repeats, three rounds, a built-in GP acquisition, random, and a
user's acquisition from a file) serves most tests; the resume tests rerun
parts of it and must end with the very same rows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from gpllm.active.run import load_configs, run_active
from gpllm.active.simulate import split_for
from gpllm.cli import app
from gpllm.errors import InputError
from gpllm.evaluate.runner.store import RunStore
from tests.active.helpers import write_tiny_config

PLUGIN = """
import os
import numpy as np

def first_free(design, batch_size, key):
    if os.environ.get("STOP_AT") == str(len(design.measured)):
        raise KeyboardInterrupt  # a user's Ctrl-C in the middle of a run
    return np.flatnonzero(design.available)[:batch_size]

def repeats_itself(design, batch_size, key):
    return np.full(batch_size, np.flatnonzero(design.available)[0])
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    acquisitions = ["random", "max_variance", "my_acquisitions.py:first_free"]
    return write_tiny_config(tmp_path_factory.mktemp("active_config"), acquisitions, {"my_acquisitions.py": PLUGIN})


@pytest.fixture(scope="module")
def finished(config_path, tmp_path_factory) -> Path:
    """The folder of one uninterrupted `gpllm active` run."""
    out = tmp_path_factory.mktemp("active_run")
    result = invoke("active", "--config", config_path, "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "not reached" in result.output or "random" in result.output
    return out


def chains(results: pl.DataFrame):
    for (acquisition, repeat), rows in results.group_by("acquisition", "repeat", maintain_order=True):
        yield acquisition, repeat, rows.sort("round")


@pytest.mark.slow
def test_never_measures_a_perturbation_twice_or_a_test_one(finished, config_path):
    results = pl.read_parquet(finished / "results.parquet")
    perts = tuple(json.loads(RunStore(finished).manifest_path.read_text())["perts"])
    _, config = load_configs(config_path)
    assert results.height == 3 * config.repeats * len(config.rounds)
    for acquisition, repeat, rows in chains(results):
        added = [p for batch in rows["added"].to_list() for p in batch]
        split = split_for(len(perts), config, repeat)
        assert len(added) == len(set(added)) == config.budget, acquisition
        assert not set(added) & {perts[i] for i in split.test}, acquisition
        assert rows["n_measured"].to_list() == list(config.rounds)
        # Every acquisition of a repeat starts from the same random seed set.
        assert sorted(rows["added"][0].to_list()) == sorted(perts[i] for i in split.pool[split.seed])


@pytest.mark.slow  # it reads the module's `gpllm active` run
def test_figure_and_table_are_written(finished):
    assert (finished / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    table = pl.read_csv(finished / "measurements_to_reach.csv")
    assert table["acquisition"].to_list()[:2] == ["random", "max_variance"]


def copy_run(finished: Path, to: Path) -> Path:
    shutil.copytree(finished, to)
    (to / "results.parquet").unlink()
    return to


@pytest.mark.slow
def test_resumes_to_the_same_curves_after_losing_the_last_rounds(finished, config_path, tmp_path):
    out = copy_run(finished, tmp_path / "resumed")
    store = RunStore(out)
    lost = [store.part_path(f"{a}|{r}|{k}") for a in ("random", "max_variance") for r in (0, 1) for k in (1, 2)]
    for path in lost:
        path.unlink()
    run = run_active(*load_configs(config_path), out, progress=False)
    assert all(path.exists() for path in lost)
    assert run.results.equals(pl.read_parquet(finished / "results.parquet"))


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_curves(finished, config_path, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    monkeypatch.setenv("STOP_AT", "12")  # the user's acquisition is interrupted at its second batch
    with pytest.raises(KeyboardInterrupt):
        run_active(*load_configs(config_path), out, progress=False)
    assert not (out / "results.parquet").exists()
    monkeypatch.delenv("STOP_AT")
    run = run_active(*load_configs(config_path), out, progress=False)
    assert run.results.equals(pl.read_parquet(finished / "results.parquet"))


@pytest.mark.slow
def test_a_bad_batch_from_an_acquisition_stops_the_run_naming_it(config_path, tmp_path):
    data, config = load_configs(config_path)
    reference = f"{config_path.parent / 'my_acquisitions.py'}:repeats_itself"
    config = config.__class__(**{**config.to_json(), "acquisitions": (reference,), "repeats": 1})
    with pytest.raises(InputError, match=r"acquisition '.*repeats_itself' returned repeated indices"):
        run_active(data, config, tmp_path / "bad", progress=False)
    store = RunStore(tmp_path / "bad")
    assert store.has_part(f"{reference}|0|0") and not store.has_part(f"{reference}|0|1")


@pytest.mark.parametrize(
    "options, message",
    [
        (["--budget", "100"], "budget 100 is larger than the pool"),
        (["--batch-size", "0"], "batch_size must be at least 1"),
        (["--seed-size", "30"], "seed_size 30 is larger than the budget 18"),
        (["--acquisitions", "random,bald"], "unknown acquisition 'bald'"),
    ],
)
def test_bad_input_is_one_error_line_before_any_fit(config_path, tmp_path, options, message):
    result = invoke("active", "--config", config_path, "--out", tmp_path / "run", "--no-progress", *options)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not list((tmp_path / "run").glob("parts/*"))


@pytest.mark.slow
def test_same_config_twice_in_a_row_computes_nothing_new(finished, config_path):
    before = sorted(p.stat().st_mtime_ns for p in (finished / "parts").glob("*.parquet"))
    run = run_active(*load_configs(config_path), finished, progress=False)
    assert sorted(p.stat().st_mtime_ns for p in (finished / "parts").glob("*.parquet")) == before
    assert np.isfinite(run.results["pearson_de"].to_numpy()).all()
