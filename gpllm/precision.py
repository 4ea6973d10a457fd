"""Floating-point precision: one explicit switch, and a warning instead of silent truncation.

JAX computes in float32 unless ``jax_enable_x64`` is on, and then converts
float64 inputs to float32 without a word. gpllm follows its inputs' dtype and
never flips the flag on import; :func:`use_float64` is the one call that does
(the ``gpllm`` command makes it), and :func:`warn_if_truncated` tells a user
once per process when float64 data is about to lose its precision.
"""

from __future__ import annotations

import warnings

import numpy as np


class PrecisionWarning(UserWarning):
    """float64 input computed in float32 because JAX's float64 is off."""


_warned = False


def use_float64(enable: bool = True) -> None:
    """Turn JAX's float64 support on (or off): ``jax.config.update("jax_enable_x64", enable)``.

    Call it before creating arrays; it affects every JAX computation in the
    process, which is why importing gpllm does not do it.
    """
    import jax  # here, not at the top: `import gpllm` (and so `gpllm --help`) does not load JAX

    jax.config.update("jax_enable_x64", bool(enable))


def float64_enabled() -> bool:
    """Whether JAX computes in float64 when asked (``jax_enable_x64``)."""
    import jax

    return bool(jax.config.jax_enable_x64)


def warn_if_truncated(name: str, x) -> None:
    """Warn once per process if ``x`` is float64 but JAX will compute it in float32."""
    global _warned
    if _warned or float64_enabled() or getattr(x, "dtype", None) != np.float64:
        return
    _warned = True
    warnings.warn(
        f"{name} is float64 but JAX's float64 is off, so gpllm computes in float32. Call "
        "gpllm.use_float64() before creating arrays for float64 results, or pass float32 "
        "arrays to silence this warning (shown once).",
        PrecisionWarning,
        stacklevel=3,
    )
