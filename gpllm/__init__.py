"""gpllm: multi-output Gaussian processes on LLM gene embeddings, in JAX.

float64 is the default, as in GPJax: importing gpllm enables ``jax_enable_x64``
unless the environment sets ``GPLLM_X64=0`` (float32 inputs then stay float32;
everything is tested in both precisions). It also limits how long OpenBLAS's
idle threads spin (``OPENBLAS_THREAD_TIMEOUT``, unless already set): see
:mod:`gpllm.blas`.
"""

from __future__ import annotations

import os

from gpllm.blas import limit_openblas_spin

# Before anything loads SciPy's OpenBLAS (see gpllm.blas).
limit_openblas_spin()

import jax  # noqa: E402

if os.environ.get("GPLLM_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
