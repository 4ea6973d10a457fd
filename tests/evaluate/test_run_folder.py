"""Fault injection: a run folder survives kills, damaged parts, strays from other runs and a second process."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest

from gpllm.data.embeddings.assemble import build_embedding
from gpllm.data.synthetic.screens import make_screens
from gpllm.errors import DataError
from gpllm.evaluate.grid import SweepConfig
from gpllm.evaluate.runner.store import RunBusyError, RunStore
from gpllm.evaluate.runner.sweep import run_sweep
from tests._helpers import synthetic_config_toml

CONFIG = SweepConfig(models=("knn_k1", "ridge", "nonctrl_mean"), embeddings=("text",), sizes=(12, 24), n_folds=3)


@pytest.fixture(scope="module")
def inputs():
    draw = make_screens(3, n_perts=50, n_genes=30)
    perts = draw.screens["K562"].perts
    return draw.screens, {"text": build_embedding({"text": draw.vectors["text"]}, perts, k=4)}


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    screens, embeddings = inputs
    root = tmp_path_factory.mktemp("reference")
    return run_sweep(screens, embeddings, CONFIG, RunStore(root), data_id="t", progress=False)


def _run(inputs, root):
    screens, embeddings = inputs
    return run_sweep(screens, embeddings, CONFIG, RunStore(root), data_id="t", progress=False)


@pytest.mark.slow
def test_a_bit_flipped_part_is_set_aside_and_recomputed_never_used(inputs, reference, tmp_path, caplog):
    _run(inputs, tmp_path)
    part = sorted((tmp_path / "parts").glob("*.parquet"))[2]
    data = bytearray(part.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 40] = bytes(b ^ 0xFF for b in data[middle : middle + 40])  # the file's end intact
    part.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        again = _run(inputs, tmp_path)
    assert again.equals(reference)
    assert part.name in caplog.text and "checksum" in caplog.text
    assert (tmp_path / "parts" / "set_aside" / part.name).exists()


@pytest.mark.slow
def test_another_chunks_part_in_a_parts_place_is_caught_and_recomputed(inputs, reference, tmp_path, caplog):
    _run(inputs, tmp_path)
    a, b = sorted((tmp_path / "parts").glob("*.parquet"))[:2]
    shutil.copy(a, b)
    shutil.copy(a.with_suffix(".json"), b.with_suffix(".json"))
    with caplog.at_level(logging.WARNING):
        again = _run(inputs, tmp_path)
    assert again.equals(reference)
    assert b.name in caplog.text and "holds the rows of chunk" in caplog.text


@pytest.mark.slow
def test_a_part_from_another_run_never_reaches_the_table(inputs, reference, tmp_path, caplog):
    """What an orphaned worker of a deleted run would leave: a sealed part with the old run's id."""
    old = tmp_path / "old"
    _run(inputs, old)
    new = tmp_path / "new"  # a fresh run's folder, where the strays arrive
    (new / "parts").mkdir(parents=True)
    for path in (old / "parts").iterdir():
        shutil.copy(path, new / "parts" / path.name)
    with caplog.at_level(logging.WARNING):
        fresh = _run(inputs, new)
    assert fresh.equals(reference)  # recomputed: same data, same numbers, but none of the strays used
    assert caplog.text.count("written by another run") == len(list((old / "parts").glob("*.parquet")))


def test_a_worker_of_another_run_cannot_write(tmp_path):
    mine = RunStore(tmp_path)
    mine.open({"x": 1})
    stray = RunStore(tmp_path, run_id=uuid.uuid4().hex)
    with pytest.raises(DataError, match="now holds another run"):
        stray.write_part("a|b|c|1", pl.DataFrame({"x": [1]}))
    mine.release()


@pytest.mark.slow
def test_a_second_run_into_the_same_folder_is_refused_naming_the_holder(inputs, tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from gpllm.evaluate.runner.store import RunStore; "
            "s = RunStore(sys.argv[1]); s.lock(); print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunBusyError, match=f"pid {holder.pid}"):
            _run(inputs, tmp_path)
        assert not (tmp_path / "run.json").exists()
    finally:
        holder.kill()
        holder.wait()
    assert _run(inputs, tmp_path).height > 0  # the lock went with its process


@pytest.mark.slow
def test_written_files_follow_the_umask(inputs, tmp_path):
    old = os.umask(0o022)
    try:
        _run(inputs, tmp_path)
    finally:
        os.umask(old)
    for path in (tmp_path / "run.json", tmp_path / "results.parquet", *(tmp_path / "parts").glob("*.parquet")):
        assert path.stat().st_mode & 0o777 == 0o644, path


# ------------------------------------------------------------ killing the command

SMALL_TOML = synthetic_config_toml(
    {"n_perts": 60, "n_genes": 30},
    top={"name": "kill", "embeddings": ["text"], "pca_k": 4},
    sweep={"models": ["gp", "knn_k1", "ridge", "nonctrl_mean"], "sizes": [12, 24], "n_folds": 3},
)
# Two sizes keep a warm-start chain (the GP at 24 starts from its fit at 12) and 16 chunks, enough
# that two workers are still busy when the first part lands; a third size only lengthened every run.


def _gpllm_processes(marker: str) -> list[int]:
    """Pids of live processes started with ``marker`` in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def _start(config: Path, out: Path, marker: str) -> subprocess.Popen:
    """``gpllm reproduce`` in a child process marked by ``marker``; it compiles into the
    session's cache (tests/conftest.py), so a rerun loads the programs of the first run."""
    env = {**os.environ, "GPLLM_KILL_TEST": marker}
    command = [
        sys.executable,
        "-m",
        "gpllm.cli",
        "reproduce",
        "--config",
        str(config),
        "--out",
        str(out),
        "--no-progress",
        "--workers",
        "2",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    config = root / "kill.toml"
    config.write_text(SMALL_TOML)
    child = _start(config, root / "whole", uuid.uuid4().hex)
    _, err = child.communicate(timeout=600)
    assert child.returncode == 0, err.decode()[-2000:]
    return config, pl.read_parquet(root / "whole" / "results.parquet")


def _kill_after_a_new_part(config: Path, out: Path, sig: signal.Signals) -> None:
    """Start the command into ``out``, send ``sig`` once it has sealed a part beyond those already
    there, and check that none of its processes outlives it and no part lands after the kill."""
    marker = uuid.uuid4().hex
    before = set((out / "parts").glob("*.json"))
    child = _start(config, out, marker)
    deadline = time.time() + 300
    while not set((out / "parts").glob("*.json")) - before and time.time() < deadline and child.poll() is None:
        time.sleep(0.1)
    assert child.poll() is None, "the run finished before it could be killed"
    child.send_signal(sig)
    child.wait(timeout=30)
    deadline = time.time() + 5
    while _gpllm_processes(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _gpllm_processes(marker) == [], f"a worker outlived its parent ({sig.name})"
    parts = sorted(p.name for p in (out / "parts").glob("*.parquet"))
    time.sleep(2)
    assert sorted(p.name for p in (out / "parts").glob("*.parquet")) == parts, f"a part was written after {sig.name}"
    assert not (out / "results.parquet").exists()


@pytest.mark.slow
def test_killing_the_command_leaves_no_process_and_no_late_part_and_resumes_to_the_same_table(uninterrupted, tmp_path):
    """SIGTERM during the first run, SIGKILL during its resumption, then a last run: the second
    run resumes a folder that SIGTERM left and the last one a folder that SIGKILL left, so each
    kill is checked for orphans, late parts and a resumable folder, with one resumption fewer
    than a separate run per signal."""
    config, whole = uninterrupted
    out = tmp_path / "run"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        _kill_after_a_new_part(config, out, sig)
    resumed = _start(config, out, uuid.uuid4().hex)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-2000:]
    assert pl.read_parquet(out / "results.parquet").equals(whole)


@pytest.mark.slow
def test_a_run_that_failed_before_any_result_does_not_block_the_corrected_one(inputs, reference, tmp_path):
    store = RunStore(tmp_path)
    store.open({"config": "the broken one"})
    store.release()
    assert _run(inputs, tmp_path).equals(reference)
    with pytest.raises(DataError, match="different run"):  # with results, another run is still refused
        RunStore(tmp_path).open({"config": "yet another"})


@pytest.mark.slow
def test_a_folder_of_an_older_results_layout_is_refused_not_mixed(inputs, reference, tmp_path):
    """A folder written before the calibration columns (no results_schema in run.json) holds
    parts with other columns: resuming would mix them, so it is refused, saying why."""
    import json

    _run(inputs, tmp_path)
    manifest = tmp_path / "run.json"
    run = json.loads(manifest.read_text())
    del run["results_schema"]
    manifest.write_text(json.dumps(run))
    with pytest.raises(DataError, match="older layout.*schema 1.*writes schema 2"):
        _run(inputs, tmp_path)
