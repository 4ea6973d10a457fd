"""The memory guard counts the address-space limit (``ulimit -v``): a GP that cannot fit under it is
refused up front with the estimate, not ended by XLA's RESOURCE_EXHAUSTED."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from gpllm.gp import memory

CHECK = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
from gpllm.errors import MemoryLimitError
from gpllm.gp.memory import check_gp_fits, gp_peak_bytes
n = 10_000
assert gp_peak_bytes(n, 50, 16, "float64") > limit  # more than the whole address space may hold
try:
    check_gp_fits(n, 50, 16, "float64", what="gp.fit")
except MemoryLimitError as err:
    print(err)
else:
    print("not refused")
"""


def _vmsize_bytes() -> int:
    """This process's address space now, read from /proc/self/status independently of gpllm."""
    line = next(row for row in Path("/proc/self/status").read_text().splitlines() if row.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


def test_the_budget_is_the_limit_less_the_address_space_in_use(monkeypatch):
    limit = 3 * memory.GIB
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limit, resource.RLIM_INFINITY))
    budget = memory._address_space_headroom()
    assert budget.free == max(0, limit - _vmsize_bytes()) and "ulimit -v" in budget.source
    assert memory.host_budget().free <= budget.free


def test_no_limit_means_no_budget_of_its_own(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert memory._address_space_headroom() is None


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/status are Linux's")
def test_a_gp_beyond_ulimit_v_is_refused_with_the_estimate():
    done = subprocess.run(
        [sys.executable, "-c", CHECK, str(3_000_000 * 1024)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "needs about" in done.stdout and "the address-space limit (ulimit -v)" in done.stdout, done.stdout
