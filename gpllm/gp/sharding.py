"""Spread a GP over devices with ``jax.sharding``: its outputs, or its datasets.

Outputs: the D columns of Y are independent given the kernel, so each device
can solve its own block of columns against the shared (replicated) factor;
only the scalar quadratic term and the N x N matrix W W^T of the gradient are
summed across devices. We only annotate the data: XLA's partitioner inserts
those reductions.

Datasets: the B datasets of ``gp.fit_batched`` (e.g. CV folds) are fitted
independently, so each device takes B / n of them and runs the same batched
fit on its share (``shard_map``; no communication). B is padded to a multiple
of n with copies of the last dataset, whose results are dropped: fold counts
rarely divide the device count, and the copies cost no wall time, since the
busiest device holds ceil(B / n) datasets either way.

Beyond one host, the same annotations work with JAX's own multi-host machinery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gpllm.errors import InputError
from gpllm.gp.memory import Device
from gpllm.gp.objective import Targets

OUTPUT_AXIS = "outputs"
DATASET_AXIS = "datasets"


def _mesh(devices: Sequence[Device] | None, axis: str) -> Mesh:
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise InputError(f"a mesh over {axis} needs at least one device")
    return Mesh(np.asarray(devices), (axis,))


def output_mesh(devices: Sequence[Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) whose axis shards outputs."""
    return _mesh(devices, OUTPUT_AXIS)


def dataset_mesh(devices: Sequence[Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) whose axis shards datasets (CV folds)."""
    return _mesh(devices, DATASET_AXIS)


def shard_columns(x: jax.Array, mesh: Mesh) -> jax.Array:
    """Place a (N, D) array with its columns split across ``mesh`` (rows replicated).

    D must be divisible by the number of devices, so every device gets an
    equal block; pad or drop genes upstream if it is not.
    """
    n_devices = mesh.devices.size
    if x.shape[-1] % n_devices:
        raise InputError(f"cannot split {x.shape[-1]} output columns evenly over {n_devices} devices")
    return jax.device_put(x, NamedSharding(mesh, PartitionSpec(None, OUTPUT_AXIS)))


def shard_targets(targets: Targets, mesh: Mesh) -> Targets:
    """Targets whose factor columns (outputs, or QR columns on the gram path) are sharded."""
    replicated = NamedSharding(mesh, PartitionSpec())
    return dataclasses.replace(
        targets,
        factor=shard_columns(targets.factor, mesh),
        n_outputs=jax.device_put(targets.n_outputs, replicated),
    )


def check_dataset_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` if it is a Mesh with a ``"datasets"`` axis (see :func:`dataset_mesh`), else InputError."""
    if not isinstance(mesh, Mesh) or DATASET_AXIS not in mesh.axis_names:
        raise InputError(
            f"mesh must be a jax.sharding.Mesh with a {DATASET_AXIS!r} axis (gp.sharding.dataset_mesh()), got {mesh!r}"
        )
    return mesh


def datasets_per_device(n_datasets: int, mesh: Mesh) -> int:
    """ceil(B / n): the datasets each device holds once B is spread over ``mesh``'s datasets axis."""
    return -(-n_datasets // mesh.shape[DATASET_AXIS])


def shard_datasets(tree, mesh: Mesh):
    """Every leaf (B, ...) of ``tree`` padded to B' = n ceil(B / n) datasets with copies of
    its last one, and placed with the leading axis split over ``mesh``'s datasets axis
    (any other mesh axis holds copies). Keep the first B entries of a result."""
    n_datasets = jax.tree.leaves(tree)[0].shape[0]
    padded = mesh.shape[DATASET_AXIS] * datasets_per_device(n_datasets, mesh)
    split = NamedSharding(mesh, PartitionSpec(DATASET_AXIS))

    def place(x):
        x = jnp.asarray(x)
        if padded > n_datasets:
            x = jnp.concatenate([x, jnp.repeat(x[-1:], padded - n_datasets, axis=0)])
        return jax.device_put(x, split)

    return jax.tree.map(place, tree)


def over_devices(run: Callable, mesh: Mesh) -> Callable:
    """``run(args)`` on each device's share of the leading axis of every leaf of ``args``,
    its results stacked back along that axis; inside ``jax.jit``, one program.

    ``check_vma`` is off: the shares never communicate, and the fit's while-loop
    carries start from constants that the check would ask to be marked per device.
    """
    spec = PartitionSpec(DATASET_AXIS)
    return jax.shard_map(run, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)
