"""A command never destroys what the user has: outputs are written whole or not at all, and an
output path that is one of the command's inputs is refused before any work."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import anndata as ad
import polars as pl

from gpllm.data.screens.perturbation_data import PerturbationData
from tests.cli.conftest import fails


def _disk_full_after_half(self, path_or_data, *args, **kwargs):
    """A writer method (``DataFrame.write_csv(path)``, ``Path.write_bytes(data)``) that writes
    part of its file and then meets a full disk."""
    path = path_or_data if isinstance(path_or_data, (str, os.PathLike)) else self
    with open(path, "wb") as handle:
        handle.write(b"\x89HDF half")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_predict_on_a_full_disk_keeps_the_earlier_predictions(files, gp_run, monkeypatch):
    out, _, _ = gp_run
    earlier = out / "earlier.h5ad"
    shutil.copy(out / "pred.h5ad", earlier)
    monkeypatch.setattr(Path, "write_bytes", _disk_full_after_half)  # h5ad bytes are built in memory
    fails(
        "predict",
        out / "model.npz",
        "--genes",
        ",".join(files.test_names),
        "--out",
        earlier,
        naming=f"could not write {earlier}: disk full; the earlier earlier.h5ad is unchanged",
    )
    assert ad.read_h5ad(earlier).shape == ad.read_h5ad(out / "pred.h5ad").shape
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_evaluate_on_a_full_disk_leaves_no_empty_rows_file(files, gp_run, tmp_path, monkeypatch):
    out, _, _ = gp_run
    rows = tmp_path / "rows.csv"
    monkeypatch.setattr(pl.DataFrame, "write_csv", _disk_full_after_half)
    fails(
        "evaluate",
        out / "pred.h5ad",
        "--truth",
        files.screen,
        "--out",
        rows,
        naming=f"could not write {rows}: disk full",
    )
    assert list(tmp_path.iterdir()) == []


def test_process_refuses_to_overwrite_its_input(files, tmp_path):
    raw = tmp_path / "in.h5ad"
    shutil.copy(files.screen, raw)
    before = raw.read_bytes()
    fails("data", "process", raw, "-o", raw, naming=f"--out {raw} is also SCREEN")
    fails(
        "data",
        "process",
        raw,
        "-o",
        tmp_path / "x.h5ad",
        "--combos-out",
        tmp_path / "x.h5ad",
        naming="is also --combos-out",
    )
    assert raw.read_bytes() == before


def test_predict_and_evaluate_refuse_to_overwrite_their_inputs(files, gp_run, tmp_path):
    out, _, _ = gp_run
    link = tmp_path / "link.npz"
    link.symlink_to(out / "model.npz")
    before = (out / "model.npz").read_bytes()
    fails(
        "predict",
        out / "model.npz",
        "--genes",
        ",".join(files.test_names),
        "--out",
        link,
        naming=f"--out {link} is also MODEL_FILE",
    )
    train = shutil.copy(files.train, tmp_path / "train.csv")
    fails(
        "evaluate",
        out / "pred.h5ad",
        "--truth",
        files.screen,
        "--train",
        train,
        "--out",
        train,
        naming="is also --train",
    )
    fails("fit", files.screen, "--text", files.text, "--out", files.text, naming=f"--out {files.text} is also --text")
    assert (out / "model.npz").read_bytes() == before
    assert PerturbationData.load(files.screen).n_perts == len(files.train_names) + len(files.test_names)
