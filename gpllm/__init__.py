"""gpllm: multi-output Gaussian processes on LLM gene embeddings, in JAX.

float64 is the default, as in GPJax: importing gpllm enables ``jax_enable_x64``
unless the environment sets ``GPLLM_X64=0`` (float32 inputs then stay float32;
everything is tested in both precisions).
"""

from __future__ import annotations

import os

import jax

if os.environ.get("GPLLM_X64", "1") != "0":
    jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"
