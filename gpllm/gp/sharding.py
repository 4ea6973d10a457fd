"""Spread Y's D output columns over devices with ``jax.sharding``.

The outputs are independent given the kernel, so each device can solve its
own block of columns against the shared (replicated) factor; only the scalar
quadratic term and the N x N matrix W W^T of the gradient are summed across
devices. We only annotate the data: XLA's partitioner inserts those
reductions. Beyond one host, the same annotations work with JAX's own
multi-host machinery.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gpllm.errors import InputError
from gpllm.gp.objective import Targets

OUTPUT_AXIS = "outputs"


def output_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) whose axis shards outputs."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise InputError("output_mesh needs at least one device")
    return Mesh(np.asarray(devices), (OUTPUT_AXIS,))


def shard_columns(x: jax.Array, mesh: Mesh) -> jax.Array:
    """Place a (N, D) array with its columns split across ``mesh`` (rows replicated).

    D must be divisible by the number of devices, so every device gets an
    equal block; pad or drop genes upstream if it is not.
    """
    n_devices = mesh.devices.size
    if x.shape[-1] % n_devices:
        raise InputError(
            f"cannot split {x.shape[-1]} output columns evenly over {n_devices} devices"
        )
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec(None, OUTPUT_AXIS)))


def shard_targets(targets: Targets, mesh: Mesh) -> Targets:
    """Targets whose factor columns (outputs, or QR columns on the gram path) are sharded."""
    replicated = NamedSharding(mesh, PartitionSpec())
    return Targets(
        factor=shard_columns(targets.factor, mesh),
        n_outputs=jax.device_put(targets.n_outputs, replicated),
        lower_triangular=targets.lower_triangular,
    )
