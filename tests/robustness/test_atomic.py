"""Every file gpllm writes is whole or absent: a failed write keeps the earlier file and says why."""

from __future__ import annotations

import errno
import os

import numpy as np
import polars as pl
import pytest

from gpllm.atomic import atomic_write, write_frame, write_text
from gpllm.data.screens.perturbation_data import PerturbationData
from gpllm.errors import WriteError


def _fail_half_way(code: int):
    def write(tmp):
        tmp.write_text("half a fi")
        raise OSError(code, os.strerror(code))

    return write


@pytest.mark.parametrize(("code", "cause"), [(errno.ENOSPC, "disk full"), (errno.EACCES, "permission denied")])
def test_a_failed_write_keeps_the_earlier_file_and_names_path_and_cause(tmp_path, code, cause):
    target = write_text(tmp_path / "rows.csv", "a,b\n1,2\n")
    with pytest.raises(WriteError, match=f"could not write {target}: {cause}; the earlier rows.csv is unchanged"):
        atomic_write(target, _fail_half_way(code))
    assert target.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def test_an_errno_carried_only_in_the_message_is_recognised(tmp_path, monkeypatch):
    # polars reports a full disk writing parquet as ComputeError('... (os error 28)')
    def full(self, path, *args, **kwargs):
        raise pl.exceptions.ComputeError("parquet: underlying IO error: No space left on device (os error 28)")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", full)
    with pytest.raises(WriteError, match="disk full"):
        write_frame(tmp_path / "t.parquet", pl.DataFrame({"a": [1]}))
    assert list(tmp_path.iterdir()) == []


def test_a_bug_in_the_writer_is_not_dressed_up_as_an_io_error(tmp_path):
    def buggy(tmp):
        raise TypeError("not an I/O failure")

    with pytest.raises(TypeError):
        atomic_write(tmp_path / "x", buggy)
    assert list(tmp_path.iterdir()) == []


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_a_real_full_disk_keeps_the_earlier_h5ad(tiny_tmpfs):
    rng = np.random.default_rng(0)
    genes = tuple(f"G{i}" for i in range(40))

    def screen(n_perts: int) -> PerturbationData:
        return PerturbationData(
            Y=rng.normal(size=(n_perts, len(genes))),
            ctrl=np.zeros(len(genes)),
            de=np.tile(np.arange(5), (n_perts, 1)),
            perts=tuple(f"P{i}" for i in range(n_perts)),
            genes=genes,
        )

    path = screen(10).save(tiny_tmpfs / "proc.h5ad")
    with pytest.raises(WriteError, match=f"could not write {path}: disk full"):
        screen(20_000).save(path)  # 6.4 MB of float64: more than the disk holds
    assert PerturbationData.load(path).n_perts == 10
    assert [p.name for p in tiny_tmpfs.iterdir()] == ["proc.h5ad"]
