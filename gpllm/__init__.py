"""gpllm: multi-output Gaussian processes on LLM gene embeddings, in JAX.

Importing gpllm changes nothing global: no JAX flag, no environment variable.
Two documented calls do what a library must not do on its own:

- :func:`use_float64` turns on JAX's float64 (``jax_enable_x64``). gpllm follows
  its inputs' dtype; without float64, float64 arrays given to gpllm are
  truncated to float32 by JAX, and gpllm warns once when that happens.
- :func:`gpllm.blas.limit_openblas_spin` shortens OpenBLAS's idle spinning
  (``OPENBLAS_THREAD_TIMEOUT``), which makes the likelihood ~25% faster on
  few CPU cores; call it before SciPy's LAPACK is loaded.

The ``gpllm`` command does both, and switches on JAX's persistent compilation
cache (:func:`gpllm.compilation_cache.enable`). ``gpllm.blas`` and
``gpllm.compilation_cache`` are imported with the package (neither loads JAX
nor sets anything on import); ``gpllm.gp`` is imported on first use.
"""

from __future__ import annotations

from gpllm import blas, compilation_cache
from gpllm.precision import float64_enabled, use_float64

__version__ = "0.1.0"

__all__ = ["use_float64", "float64_enabled", "blas", "compilation_cache", "__version__"]
