"""gpllm.progress: one kind of bar, and other libraries' tqdm bars off around gpllm's calls."""

from __future__ import annotations

import sys
import types

import pytest

from gpllm.progress import bar, library_bars_off


class _FakeHFLogging:
    def __init__(self, on: bool):
        self.on = on

    def is_progress_bar_enabled(self) -> bool:
        return self.on

    def enable_progress_bar(self) -> None:
        self.on = True

    def disable_progress_bar(self) -> None:
        self.on = False


@pytest.fixture
def fake_transformers(monkeypatch):
    def install(on: bool) -> _FakeHFLogging:
        hf_logging = _FakeHFLogging(on)
        utils = types.ModuleType("transformers.utils")
        utils.logging = hf_logging
        package = types.ModuleType("transformers")
        package.utils = utils
        monkeypatch.setitem(sys.modules, "transformers", package)
        monkeypatch.setitem(sys.modules, "transformers.utils", utils)
        return hf_logging

    return install


@pytest.mark.parametrize("was_on", [True, False])
def test_library_bars_are_off_inside_and_as_they_were_after(fake_transformers, was_on):
    hf_logging = fake_transformers(was_on)
    with library_bars_off():
        assert not hf_logging.on
    assert hf_logging.on is was_on


def test_library_bars_are_restored_when_the_work_fails(fake_transformers):
    hf_logging = fake_transformers(True)
    with pytest.raises(RuntimeError), library_bars_off():
        raise RuntimeError("encode failed")
    assert hf_logging.on


def test_a_disabled_bar_takes_updates_and_draws_nothing(capsys):
    with bar("work", 3, enabled=False) as update:
        update(1)
        update(2, 5)
    assert capsys.readouterr() == ("", "")


def test_a_bar_leaves_nothing_on_stdout(capsys):
    with bar("work", 2) as update:
        update(1)
        update(2, total=2)
    assert capsys.readouterr().out == ""
