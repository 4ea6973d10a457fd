"""A disk so full that not even the run folder's empty lock file can be made: one line, no traceback."""

from __future__ import annotations

import pytest

from tests.cli.conftest import fails
from tests.robustness.conftest import fill_up


@pytest.mark.slow  # whole commands on a tmpfs
@pytest.mark.parametrize("command", ["reproduce", "active"])
def test_a_run_on_a_completely_full_disk_is_one_line(tiny_tmpfs, command):
    fill_up(tiny_tmpfs, leave=0)
    while True:  # fill_up leaves what a block rounds off: take the last of it
        try:
            with open(tiny_tmpfs / f"crumb{len(list(tiny_tmpfs.iterdir()))}", "wb") as crumb:
                crumb.write(b"\0" * 512)
        except OSError:
            break
    line = fails(command, "--out", tiny_tmpfs / "run", "--no-progress", naming="disk full")
    assert line.startswith(f"error: could not write {tiny_tmpfs / 'run' / '.lock'}: disk full"), line
