"""Data parallelism: the device mesh, sharded batches, replicated state, the jitted
step over the mesh, and ``jax.distributed`` for several processes.

The step runs data-parallel over every device along a ``"data"`` mesh axis: the
batch is split across devices, the state replicated, and XLA inserts the
gradient all-reduce (what ``pmap`` + ``pmean`` did, on ``jax.jit`` +
``NamedSharding``). The state buffers are donated.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from shiftnet_jax.config import ConfigError
from shiftnet_jax.train import official_config
from shiftnet_jax.train.step import make_parts, train_step


def make_mesh(devices=None) -> Mesh:
    return Mesh(np.asarray(devices or jax.devices()), ("data",))


def check_batch_size(global_batch: int, mesh: Mesh):
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(f"batch_size {global_batch} is not divisible by the {n} devices; "
                         f"use a multiple of {n}")
    if global_batch % jax.process_count():
        raise ValueError(f"batch_size {global_batch} is not divisible by the "
                         f"{jax.process_count()} processes")


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(local_batch: dict, mesh: Mesh) -> dict:
    """This process's share of the batch -> global arrays split along ``"data"``."""
    sharding = NamedSharding(mesh, P("data"))
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local_batch.items()}


def jit_train_step(config, mesh: Mesh, parts=None, steps_per_epoch: float | None = None):
    """``train_step`` jitted over ``mesh`` with the state donated; ``parts``: the run's
    :class:`~shiftnet_jax.train.step.Parts` (built here when not given); ``steps_per_epoch``:
    the loader's (the official learning-rate policies count epochs)."""
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    if config.get("compat") == "official":   # the official code's step (docs/official-mode.md)
        step = functools.partial(official_config.train_step, config=config,
                                 steps_per_epoch=steps_per_epoch)
    else:
        step = functools.partial(train_step, config=config, parts=parts or make_parts(config))
    return jax.jit(step,
                   in_shardings=(replicated, split), out_shardings=(replicated, replicated),
                   donate_argnums=0)


def init_distributed():
    """``jax.distributed.initialize`` from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID`` where set (else JAX's own cluster detection), with CPU
    collectives over gloo so that processes without accelerators can all-reduce."""
    kwargs = {}
    for name, key, cast in (("JAX_COORDINATOR_ADDRESS", "coordinator_address", str),
                            ("JAX_NUM_PROCESSES", "num_processes", int),
                            ("JAX_PROCESS_ID", "process_id", int)):
        if os.environ.get(name):
            try:
                kwargs[key] = cast(os.environ[name])
            except ValueError:
                raise ConfigError(f"{name}={os.environ[name]!r} is not an integer") from None
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):  # option absent in this JAX: its default applies
        pass
    jax.distributed.initialize(**kwargs)


def gather(x):
    """A (possibly multi-process) global array -> the whole array as NumPy on every process."""
    if jax.process_count() == 1:
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
