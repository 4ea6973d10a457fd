"""gpllm active names a model whose own code raises (the acquisition and round where it happened),
in one line, with the traceback in the run folder's errors.log and on --debug."""

from __future__ import annotations

from tests.active.helpers import CONFIG
from tests.cli.conftest import fails, invoke

KERNEL = """
from gpllm.gp.kernels import RBF

class Raising(RBF):
    def gram(self, params, X1, X2=None):
        raise RuntimeError("gram is broken")

raising = Raising()
"""


def _args(tmp_path, *options):
    (tmp_path / "kernels.py").write_text(KERNEL)
    config = CONFIG.replace('"random", "max_variance", "my_acquisitions.py:first_free"', '"random"')
    (tmp_path / "tiny.toml").write_text(config.replace("repeats = 2", 'repeats = 1\nmodel = "kernels.py:raising"'))
    return ("active", "--config", tmp_path / "tiny.toml", "--out", tmp_path / "run", "--no-progress", *options)


def test_a_raising_kernel_is_one_line_naming_the_model_and_round(tmp_path):
    line = fails(*_args(tmp_path), naming="RuntimeError: gram is broken")
    assert "(acquisition 'random', repeat 0, round 0, 6 measured)" in line, line
    assert f"(traceback in {tmp_path / 'run' / 'errors.log'})" in line
    assert 'raise RuntimeError("gram is broken")' in (tmp_path / "run" / "errors.log").read_text()


def test_debug_prints_the_traceback(tmp_path):
    result = invoke(*_args(tmp_path, "--debug"))
    assert result.exit_code == 1 and 'raise RuntimeError("gram is broken")' in result.stderr
