"""An acquisition gets read-only copies of the design, and its failures are one line naming it,
with the traceback in the run folder's errors.log."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gpllm.cli import app
from tests.active.helpers import CONFIG
from tests.active.test_simulate import PLUGIN

MISBEHAVING = (
    PLUGIN
    + """
import sys

def writes_measured(design, batch_size, key):
    design.measured[:] = 0  # would make the run forget what it measured
    return np.flatnonzero(design.available)[:batch_size]

def exits(design, batch_size, key):
    sys.exit(3)
"""
)


@pytest.fixture
def config(tmp_path):
    (tmp_path / "my_acquisitions.py").write_text(MISBEHAVING)
    path = tmp_path / "tiny.toml"
    path.write_text(CONFIG.replace("repeats = 2", "repeats = 1"))
    return path


def _active(config, out, acquisitions):
    return CliRunner().invoke(
        app, ["active", "--config", str(config), "--out", str(out), "--no-progress", "--acquisitions", acquisitions]
    )


@pytest.mark.parametrize(
    ("attr", "says"),
    [("writes_measured", "raised ValueError: assignment destination is read-only"), ("exits", "raised SystemExit: 3")],
)
def test_a_misbehaving_acquisition_is_one_line_naming_it(config, tmp_path, attr, says):
    reference = f"{config.parent / 'my_acquisitions.py'}:{attr}"
    result = _active(config, tmp_path / "run", reference)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: acquisition {reference!r} {says}"), result.stderr
    assert f"(traceback in {tmp_path / 'run' / 'errors.log'})" in lines[0]
    assert "Traceback (most recent call last)" in (tmp_path / "run" / "errors.log").read_text()
    assert not (tmp_path / "run" / "results.parquet").exists()


def test_an_empty_acquisitions_option_says_so(config, tmp_path):
    result = _active(config, tmp_path / "run", ",")
    assert result.exit_code == 1 and result.stderr.strip() == "error: --acquisitions ',' names no acquisition"
