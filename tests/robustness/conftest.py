"""A real full disk: a small tmpfs, where this machine lets the tests mount one."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 1 MiB tmpfs (root and a kernel that allows mounting it), else the test is skipped."""
    where = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    except OSError as err:  # no mount command
        pytest.skip(f"cannot mount a tmpfs here: {err}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def fill_up(folder, leave: int) -> None:
    """Fill ``folder``'s file system until about ``leave`` bytes are free."""
    stat = os.statvfs(folder)
    (folder / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
