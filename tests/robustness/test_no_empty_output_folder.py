"""A command that fails before writing anything leaves no output folder it made; one that
existed before stays."""

from __future__ import annotations

import pytest

from tests.cli.conftest import fails


def _commands(out):
    """(arguments, a word of the error) per command, each failing after its output checks."""
    return {
        "fit": (("fit", "missing.h5ad", "-o", out / "m.npz"), "missing.h5ad"),
        "predict": (("predict", "m.npz", "--screen", "s.h5ad", "-o", out / "p.h5ad"), "not both"),
        "evaluate": (
            ("evaluate", "missing_pred.h5ad", "--truth", "missing_truth.h5ad", "-o", out / "rows.csv"),
            "missing",
        ),
        "data process": (
            ("data", "process", "missing_raw.h5ad", "--preset", "replogle_bulk", "-o", out / "p.h5ad"),
            "missing",
        ),
        "data fetch": (("data", "fetch", "no-such-source", "--dest", out), "no-such-source"),
        "reproduce": (("reproduce", "-o", out, "--models", "no_such_model", "--no-progress"), "no_such_model"),
        "active": (("active", "-o", out, "--acquisitions", "no_such_acquisition", "--no-progress"), "no_such"),
    }


@pytest.mark.parametrize("command", ["fit", "predict", "evaluate", "data process", "data fetch", "reproduce", "active"])
def test_a_failed_command_leaves_no_folder_it_made(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "new" / "deeper"
    args, naming = _commands(out)[command]
    fails(*args, naming=naming)
    assert not (tmp_path / "new").exists()


def test_a_folder_that_existed_stays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    fails("fit", "missing.h5ad", "-o", tmp_path / "mine" / "new" / "m.npz", naming="missing.h5ad")
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "new").exists()
