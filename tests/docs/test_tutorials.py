"""Every tutorial under docs/tutorials/ runs to the end at small sizes (GPLLM_TUTORIAL_SMALL=1)."""

from __future__ import annotations

import pytest

from tests.docs.run_docs import TUTORIALS, relative, run_python, tail


def test_there_are_tutorials():
    assert len(TUTORIALS) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("tutorial", TUTORIALS, ids=lambda path: path.name)
def test_tutorial_runs(tutorial, tmp_path):
    result = run_python([str(tutorial)], cwd=tmp_path)
    assert result.returncode == 0, f"{relative(tutorial)} raised:\n{tail(result)}"
