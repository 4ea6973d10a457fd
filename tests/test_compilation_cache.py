"""Where the command line keeps compiled JAX programs."""

from __future__ import annotations

import jax
import pytest

from gpllm import compilation_cache


@pytest.mark.parametrize("value", ["off", "OFF", "0", "no"])
def test_the_cache_can_be_switched_off(monkeypatch, value):
    monkeypatch.setenv(compilation_cache.ENV, value)
    assert compilation_cache.location() is None
    assert compilation_cache.enable() is None


def test_enable_points_jax_at_the_chosen_folder(monkeypatch, tmp_path):
    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / "programs"))
    try:
        assert compilation_cache.enable() == tmp_path / "programs"
        assert (tmp_path / "programs").is_dir()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "programs")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_default_location_is_in_the_user_cache(monkeypatch):
    monkeypatch.delenv(compilation_cache.ENV, raising=False)
    assert compilation_cache.location().name == "jax-compilation"
