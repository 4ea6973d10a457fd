"""The sweep: grid rows, resumption after a crash, the run folder's guarantees."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import polars as pl
import pytest

from gpllm import gp
from gpllm.data.embeddings.assemble import build_embedding
from gpllm.data.synthetic.screens import make_screens
from gpllm.errors import DataError, InputError
from gpllm.evaluate.grid import NO_EMBEDDING, Chunk, SweepConfig
from gpllm.evaluate.metrics import perturbation_metrics
from gpllm.evaluate.rows import records_by_fold
from gpllm.evaluate.runner.store import RunStore, atomic_write
from gpllm.evaluate.runner.sweep import run_chunk, run_sweep
from gpllm.evaluate.splits import SplitPlan
from gpllm.models.gp import GPModel
from gpllm.models.registry import ModelSpec, build_model

MODELS = ("gp", "knn_k1", "ridge", "nonctrl_mean", "random_perturbation")


@pytest.fixture(scope="module")
def inputs():
    draw = make_screens(1, n_perts=60, n_genes=40)
    perts = draw.screens["K562"].perts
    embeddings = {
        "text": build_embedding({"text": draw.vectors["text"]}, perts, k=5),
        "text+sequence": build_embedding(dict(draw.vectors), perts, k=5),
    }
    return draw.screens, embeddings


CONFIG = SweepConfig(models=MODELS, embeddings=("text", "text+sequence"), sizes=(12, 24), n_folds=3, seed=2)


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    screens, embeddings = inputs
    root = tmp_path_factory.mktemp("sweep")
    return root, run_sweep(screens, embeddings, CONFIG, RunStore(root), data_id="t", progress=False)


@pytest.mark.slow
def test_one_row_per_configuration_fold_and_test_perturbation(inputs, finished):
    root, results = finished
    screens, embeddings = inputs
    plan = SplitPlan.load(root / "splits.json")
    n_test = sum(len(s.test) for s in plan.splits if s.size == 12)  # every perturbation once
    assert n_test == len(plan.perts)
    configs_per_screen_and_size = 2 + 3 * 2  # two baselines + three embedded models on two embeddings
    assert results.height == 2 * 2 * configs_per_screen_and_size * n_test
    keys = ["screen", "model", "embedding", "size", "fold", "pert"]
    assert results.select(keys).is_duplicated().sum() == 0
    baselines = results.filter(pl.col("model").is_in(["nonctrl_mean", "random_perturbation"]))
    assert set(baselines["embedding"]) == {NO_EMBEDDING}


@pytest.mark.slow
def test_rows_equal_an_independent_fit_and_score(inputs, finished):
    """Recompute one GP chunk by hand: fit on the plan's training rows, score with the metrics."""
    root, results = finished
    screens, embeddings = inputs
    plan = SplitPlan.load(root / "splits.json")
    data = screens["RPE1"].select(plan.perts)
    emb = embeddings["text"].select(plan.perts)
    split = next(s for s in plan.splits if s.size == 12 and s.fold == 1)
    model = build_model("ridge")
    pred = model.predict(model.fit(emb.Z[split.train], data.Y[split.train]), emb.Z[split.test])
    expected = perturbation_metrics(
        data.Y[split.test], np.asarray(pred.mean), reference=data.ctrl, de=data.de[split.test]
    )
    rows = results.filter(screen="RPE1", model="ridge", embedding="text", size=12, fold=1)
    assert rows["pert"].to_list() == [plan.perts[i] for i in split.test]
    np.testing.assert_allclose(rows["pearson_de"].to_numpy(), np.asarray(expected.pearson_de), rtol=1e-12)
    np.testing.assert_allclose(rows["mae_all"].to_numpy(), np.asarray(expected.mae_all), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gp", "knn_k1"])
def test_padded_and_fused_chunks_equal_plain_fits(inputs, finished, name):
    """The sweep pads "text" (5 columns) with zeros to "text+sequence"'s 10 and runs
    GP folds as one fused fit+predict program; neither may change a number."""
    root, results = finished
    screens, embeddings = inputs
    plan = SplitPlan.load(root / "splits.json")
    data = screens["K562"].select(plan.perts)
    emb = embeddings["text"].select(plan.perts)
    assert emb.Z.shape[1] < embeddings["text+sequence"].Z.shape[1]
    split = next(s for s in plan.splits if s.size == 12 and s.fold == 0)
    model = build_model(name)
    if name == "gp":
        model = dataclasses.replace(model, dtype=CONFIG.gp_dtype)
    assert model.zero_padding_invariant
    pred = model.predict(model.fit(emb.Z[split.train], data.Y[split.train]), emb.Z[split.test])
    expected = perturbation_metrics(
        data.Y[split.test], np.asarray(pred.mean, np.float64), reference=data.ctrl, de=data.de[split.test]
    )
    rows = results.filter(screen="K562", model=name, embedding="text", size=12, fold=0)
    tol = {"rtol": 1e-4, "atol": 1e-5} if name == "gp" else {"rtol": 1e-12}
    np.testing.assert_allclose(rows["pearson_all"].to_numpy(), np.asarray(expected.pearson_all), **tol)
    np.testing.assert_allclose(rows["mae_all"].to_numpy(), np.asarray(expected.mae_all), **tol)


@pytest.mark.slow
def test_each_fold_records_what_its_fit_chose_once(inputs, finished):
    """The model's record (GP hyperparameters, kNN's k, ridge's lam) on each fold's first row."""
    _, results = finished
    screens, embeddings = inputs
    per_fold = results.group_by(["screen", "model", "embedding", "size", "fold"], maintain_order=True)
    for (_, model, embedding, _, _), rows in per_fold:
        texts = rows["hyperparameters"].to_list()
        assert texts[1:] == [""] * (len(texts) - 1)
        if model in ("nonctrl_mean", "random_perturbation"):
            assert texts[0] == ""
            continue
        record = json.loads(texts[0])
        if model == "gp":
            assert record["noise"] > 0 and record["kernel"]["lengthscale"] > 0 and np.isfinite(record["lml"])
            Z = embeddings[embedding].Z[: int(rows["size"][0])]
            raw = GPModel().params_from_record(record, np.pad(Z, ((0, 0), (0, 10 - Z.shape[1]))))
            # The record's values were computed from the raw leaves in the fit's float32.
            np.testing.assert_allclose(gp.params_to_values(gp.RBF(), raw)["noise"], record["noise"], rtol=1e-6)
        else:
            assert set(record) == ({"k"} if model == "knn_k1" else {"lam"})


class Crash(Exception):
    pass


@pytest.mark.slow
def test_a_crashed_run_resumes_to_the_same_table(inputs, finished, tmp_path, monkeypatch):
    """Kill the sweep after 5 parts; the rerun skips them and ends with identical numbers."""
    screens, embeddings = inputs
    _, uninterrupted = finished
    written = []
    original = RunStore.write_part

    def write_then_crash(self, key, frame):
        if len(written) == 5:
            raise Crash("simulated kill")
        written.append(key)
        return original(self, key, frame)

    monkeypatch.setattr(RunStore, "write_part", write_then_crash)
    with pytest.raises(Crash):
        run_sweep(screens, embeddings, CONFIG, RunStore(tmp_path), data_id="t", progress=False)
    monkeypatch.setattr(RunStore, "write_part", original)
    assert len(list((tmp_path / "parts").glob("*.parquet"))) == 5
    assert not list((tmp_path / "parts").glob(".*.tmp"))

    redone = []
    monkeypatch.setattr(RunStore, "write_part", lambda self, k, f: redone.append(k) or original(self, k, f))
    resumed = run_sweep(screens, embeddings, CONFIG, RunStore(tmp_path), data_id="t", progress=False)
    assert not set(redone) & set(written)
    assert resumed.equals(uninterrupted)


@pytest.mark.slow
def test_a_folder_of_another_run_is_refused(inputs, finished):
    root, _ = finished
    screens, embeddings = inputs
    other = SweepConfig(models=MODELS, embeddings=("text",), sizes=(12,), n_folds=3, seed=3)
    with pytest.raises(DataError, match="different run"):
        run_sweep(screens, embeddings, other, RunStore(root), data_id="t", progress=False)


@pytest.mark.slow
def test_a_truncated_part_is_named_set_aside_and_recomputed(inputs, tmp_path, caplog):
    screens, embeddings = inputs
    config = SweepConfig(models=("nonctrl_mean",), embeddings=("text",), sizes=(12,), n_folds=3)
    whole = run_sweep(screens, embeddings, config, RunStore(tmp_path), data_id="t", progress=False)
    part = next((tmp_path / "parts").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:50])
    with caplog.at_level("WARNING"):
        again = run_sweep(screens, embeddings, config, RunStore(tmp_path), data_id="t", progress=False)
    assert again.equals(whole)
    assert part.name in caplog.text and (tmp_path / "parts" / "set_aside" / part.name).stat().st_size == 50


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "x.json"

    def half_then_fail(tmp):
        tmp.write_text("{")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, half_then_fail)
    assert list(tmp_path.iterdir()) == []


def test_config_errors_name_the_problem(inputs, tmp_path):
    screens, embeddings = inputs
    with pytest.raises(InputError, match="unknown model"):
        SweepConfig(models=("gp", "transformer"))
    with pytest.raises(InputError, match="sequence"):
        run_sweep(screens, embeddings, SweepConfig(embeddings=("sequence",)), RunStore(tmp_path), progress=False)


@pytest.mark.slow
def test_worker_processes_fill_the_same_table(inputs, finished, tmp_path):
    """Two worker processes give the in-process rows (GP rows to float32 rounding: a
    one-core worker sums in another order), and resuming with workers is exact."""
    screens, embeddings = inputs
    _, serial = finished
    parallel = run_sweep(screens, embeddings, CONFIG, RunStore(tmp_path), data_id="t", progress=False, workers=2)
    keys = ["screen", "model", "embedding", "size", "fold", "pert"]
    assert parallel.select(keys).equals(serial.select(keys))
    is_gp = (serial["model"] == "gp").to_numpy()
    for column in ("pearson_de", "pearson_all", "mae_de", "mae_all", "nll"):
        a, b = parallel[column].to_numpy(), serial[column].to_numpy()
        np.testing.assert_allclose(a[~is_gp], b[~is_gp], rtol=1e-9, atol=1e-12, err_msg=column)
        np.testing.assert_allclose(a[is_gp], b[is_gp], rtol=1e-3, atol=1e-4, err_msg=column)
    timings = RunStore(tmp_path).read_timings()
    assert len(timings) == len(list((tmp_path / "parts").glob("*.parquet")))
    assert os.getpid() not in {t["pid"] for t in timings}

    for part in sorted((tmp_path / "parts").glob("*.parquet"))[::3]:
        part.unlink()
    resumed = run_sweep(screens, embeddings, CONFIG, RunStore(tmp_path), data_id="t", progress=False, workers=2)
    assert resumed.equals(parallel)


@pytest.mark.slow
def test_a_warm_started_gp_below_the_threshold_keeps_its_better_start(inputs, finished):
    """At size 24 (< fresh_start_below) each fold's GP is the warm-started fit or the
    fresh-start fit, whichever ends with the higher LML, and never worse than either."""
    root, results = finished
    screens, embeddings = inputs
    assert 24 < GPModel().fresh_start_below
    plan = SplitPlan.load(root / "splits.json")
    data = screens["K562"].select(plan.perts)
    emb = embeddings["text"].select(plan.perts)
    splits = [s for s in plan.splits if s.size == 24]
    chunk = Chunk("K562", "text", "gp", 24)
    previous = results.filter(screen="K562", model="gp", embedding="text", size=12)

    def lml_per_fold(previous, fresh_start_below):
        # float32 throughout, as the race was designed for (float64 fits here end together).
        spec = ModelSpec(
            "gp", options=(("fresh_start_below", fresh_start_below), ("float64_below", 0), ("warm_start", True))
        )
        frame = run_chunk(chunk, data, emb, splits, CONFIG.seed, spec=spec, gp_dtype=CONFIG.gp_dtype, previous=previous)
        return np.array([r["lml"] for r in records_by_fold(frame).values()]), frame

    warm, _ = lml_per_fold(previous, fresh_start_below=0)
    fresh, _ = lml_per_fold(None, fresh_start_below=0)
    better, frame = lml_per_fold(previous, fresh_start_below=300)
    tol = 1e-5 * np.abs(warm)  # float32 fits, batched 2B wide instead of B
    assert np.any(np.abs(warm - fresh) > tol)  # the two starts end apart, so the choice matters
    assert np.all(better >= np.maximum(warm, fresh) - tol)
    assert np.all(np.minimum(np.abs(better - warm), np.abs(better - fresh)) <= tol)
    assert frame.height == sum(len(s.test) for s in splits)


@pytest.mark.slow
def test_a_size_that_cannot_run_is_explained_and_recorded(inputs, tmp_path, caplog):
    screens, embeddings = inputs
    config = SweepConfig(models=("nonctrl_mean",), embeddings=("text",), sizes=(12, 500), n_folds=3)
    with caplog.at_level("WARNING"):
        results = run_sweep(screens, embeddings, config, RunStore(tmp_path), data_id="t", progress=False)
    largest = int(results["size"].max())
    assert sorted(results["size"].unique()) == [12, largest] and largest < 500
    assert "[500] cannot be run" in caplog.text and "shared by every screen and embedding" in caplog.text
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["sizes_run"] == [12, largest] and "3 folds trains on at most" in run["size_note"]
