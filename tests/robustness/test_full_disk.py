"""A full disk ends a command with one line naming the file and the cause, not a traceback."""

from __future__ import annotations

from tests.active.helpers import CONFIG
from tests.cli.conftest import fails
from tests.robustness.conftest import fill_up

SWEEP = CONFIG.split("[active]")[0] + '[sweep]\nmodels = ["nonctrl_mean", "ridge"]\nsizes = [20]\nn_folds = 2\n'


def test_reproduce_on_a_full_disk_is_one_line(tiny_tmpfs, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(SWEEP)
    fill_up(tiny_tmpfs, leave=16 * 1024)  # run.json and splits.json fit, the parts do not
    fails(
        "reproduce",
        "--config",
        config,
        "--out",
        tiny_tmpfs / "run",
        "--no-progress",
        "--workers",
        "1",
        naming=f"could not write {tiny_tmpfs / 'run'}",
    )


def test_data_synth_on_a_full_disk_is_one_line(tiny_tmpfs):
    fill_up(tiny_tmpfs, leave=8 * 1024)
    fails("data", "synth", tiny_tmpfs / "synth", "--n-perts", 40, "--n-genes", 30, naming="disk full")
    assert sorted(p.name for p in (tiny_tmpfs / "synth").iterdir()) == []
