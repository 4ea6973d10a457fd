"""A damaged run folder is one line naming the damaged file, said before any computing."""

from __future__ import annotations

import polars as pl
import pytest

from gpllm.errors import DataError
from gpllm.evaluate.runner.store import RunStore

RUN = {"config": {"models": ["gp"]}, "data": "d"}


def _with_a_part(root):
    store = RunStore(root)
    store.open(RUN)
    store.write_part("chunk", pl.DataFrame({"a": [1]}))
    store.release()


@pytest.mark.parametrize("content", [b"", b'{"config": {"mo', b"\xff\xfe", b"[1, 2]"])
def test_a_truncated_or_empty_run_json_is_named(tmp_path, content):
    _with_a_part(tmp_path)
    (tmp_path / "run.json").write_bytes(content)
    with pytest.raises(DataError, match=rf"{tmp_path / 'run.json'} is damaged \(not a run manifest"):
        RunStore(tmp_path).open(RUN)


@pytest.mark.parametrize(("name", "make"), [(".lock", "folder"), ("results.parquet", "folder"), ("parts", "file")])
def test_a_file_where_a_folder_belongs_or_the_reverse_is_named(tmp_path, name, make):
    (tmp_path / name).mkdir() if make == "folder" else (tmp_path / name).write_text("x")
    with pytest.raises(DataError, match=rf"{tmp_path / name} is a {make} where a run keeps a"):
        RunStore(tmp_path).open(RUN)


def test_parts_of_relative_plugin_references_are_not_hidden_files(tmp_path):
    assert not RunStore(tmp_path).part_path("./my_acquisitions.py:first|0|1").name.startswith(".")
