"""JAX's persistent compilation cache, switched on by the ``gpllm`` command.

On CPU, compiling one GP fit (L-BFGS with its line search, the Cholesky with
jitter retries, the hand-written gradient) takes seconds per input shape,
and ``gpllm reproduce`` needs one program per training size. JAX can keep
compiled programs on disk, keyed by the program, the jaxlib version, the
backend and the XLA flags, so a repeated run loads them instead.

Location: ``$GPLLM_JAX_CACHE`` if set (``off`` disables it), else
``jax-compilation`` in gpllm's user cache folder (``~/.cache/gpllm``). Library
users opt in by calling :func:`enable` themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "GPLLM_JAX_CACHE"


def location() -> Path | None:
    """Where compiled programs go, or None when ``$GPLLM_JAX_CACHE`` is ``off``."""
    env = os.environ.get(ENV, "").strip()
    if env.lower() in ("off", "0", "false", "no"):
        return None
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("gpllm")) / "jax-compilation"


def enable() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`location`; returns it (None if off)."""
    where = location()
    if where is None:
        return None
    import jax

    where.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(where))
    # Only programs that took a second or more to compile: the GP fits, not
    # the many small helpers, so the folder stays small.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return where
