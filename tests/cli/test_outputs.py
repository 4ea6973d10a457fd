"""Work is never lost to an output path, and an unwritable cache never breaks a command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli.conftest import K, fails, ok


def test_fit_output_problems_are_named_before_the_fit(files, tmp_path, monkeypatch):
    calls = []
    import gpllm.models.fitted as fitted

    monkeypatch.setattr(fitted, "train", lambda *a, **k: calls.append(a))  # must never be reached
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    base = ("fit", files.screen, "--text", files.text, "--k", K)
    fails(*base, "--out", tmp_path, naming="is a folder")
    fails(*base, "--out", a_file / "model.npz", naming="exists and is not a folder")
    assert calls == []


def test_a_missing_output_folder_is_made(files, tmp_path):
    out = tmp_path / "new" / "deeper" / "m.npz"
    ok("fit", files.screen, "--text", files.text, "--k", K, "--model", "knn_k1", "--out", out)
    assert out.is_file()


def test_predict_evaluate_and_reproduce_outputs_are_checked_first(files, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    fails(
        "predict",
        "--screen",
        files.screen,
        *files.text_and_train(),
        "--model",
        "knn_k1",
        "--k",
        K,
        "--out",
        a_file / "p.h5ad",
        naming="is not a folder",
    )
    fails("evaluate", files.screen, "--truth", files.screen, "--out", a_file / "rows.csv", naming="is not a folder")
    fails("reproduce", "--out", a_file, "--sizes", "10", naming="is a file; give a folder")
    fails("data", "synth", a_file, naming="is a file; give a folder")


def test_a_malformed_size_names_the_option(tmp_path):
    fails("reproduce", "--sizes", "100,abc", "--out", tmp_path / "r", naming="--sizes: 'abc' is not an integer")


def _gpllm(*args, env):
    code = "import sys; from gpllm.cli import main; sys.argv = ['gpllm', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_an_unwritable_home_or_cache_is_a_warning_not_a_failure(tmp_path):
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("x")
    base = {k: v for k, v in os.environ.items() if k not in ("GPLLM_JAX_CACHE", "XDG_CACHE_HOME")}
    missing = str(tmp_path / "missing.h5ad")
    for env in ({**base, "HOME": str(a_file)}, {**base, "GPLLM_JAX_CACHE": str(a_file / "cache")}):
        for args in (("--help",), ("data", "list")):
            done = _gpllm(*args, env=env)
            assert done.returncode == 0, done.stderr
            assert "Traceback" not in done.stderr
        # the cache is set up when a command computes: a warning, and the command goes on
        done = _gpllm("evaluate", missing, "--truth", missing, env=env)
        assert "not writable" in done.stderr and "running without it" in done.stderr
        assert done.stderr.strip().splitlines()[-1] == f"error: {missing}: no such h5ad file"
