"""JAX's persistent compilation cache, switched on by the ``gpllm`` command.

On CPU, compiling one GP fit (L-BFGS with its line search, the Cholesky with
jitter retries, the hand-written gradient) takes seconds per input shape,
and ``gpllm reproduce`` needs one program per training size. JAX can keep
compiled programs on disk, keyed by the program, the jaxlib version, the
backend and the XLA flags, so a repeated run loads them instead.

Location: ``$GPLLM_JAX_CACHE`` if set (``off`` disables it), else
``jax-compilation`` in gpllm's user cache folder (``~/.cache/gpllm``). Library
users opt in by calling :func:`enable` themselves. A cache that cannot be
written (a read-only home, a path under a file) is a one-line warning, never
a failure: the command then compiles as if the cache were off.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

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


def _writable(where: Path) -> str | None:
    """None if ``where`` can be made and written to, else why not."""
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".probe-"):
            pass
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"
    return None


def enable() -> Path | None:
    """Point JAX's persistent compilation cache at :func:`location`; returns it (None if
    off, or if it cannot be written: then a one-line warning, and no cache)."""
    try:
        where = location()
    except OSError as err:  # no usable home folder at all
        log.warning("gpllm: no folder for the compilation cache (%s); running without it", err)
        return None
    if where is None:
        return None
    problem = _writable(where)
    if problem:
        log.warning(
            "gpllm: the compilation cache %s is not writable (%s); running without it "
            "(set %s to another folder, or to 'off')",
            where,
            problem,
            ENV,
        )
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(where))
    # Only programs that took a second or more to compile: the GP fits, not
    # the many small helpers, so the folder stays small.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return where
