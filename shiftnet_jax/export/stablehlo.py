"""StableHLO export through ``jax.export``: one serialized artifact for CPU and CUDA.

The file is ``jax.export.Exported.serialize()``; another JAX program runs it with
no model code at all::

    exported = jax.export.deserialize(open("model.jax", "rb").read())
    output = exported.call(image, hole)

The batch axis is symbolic, so any batch runs. Versioned by JAX's export
compatibility guarantees (an artifact loads in JAX releases of the next months).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from shiftnet_jax.errors import write_atomically
from shiftnet_jax.export.onnx import BATCH

PLATFORMS = ("cpu", "cuda")


def export(fn, inputs: dict, *, platforms=PLATFORMS) -> jax.export.Exported:
    """``jax.export`` of ``fn`` for ``platforms``; ``inputs`` as :func:`onnx.to_onnx`."""
    batch, = jax.export.symbolic_shape(BATCH)
    specs = [jax.ShapeDtypeStruct((batch, *shape), jnp.dtype(dtype))
             for shape, dtype in inputs.values()]
    return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*specs)


def save(exported: jax.export.Exported, out_path) -> Path:
    """Write the serialized artifact (atomically: never a partial file)."""
    return write_atomically(out_path, exported.serialize())


def load(path) -> jax.export.Exported:
    """The artifact back, callable as ``exported.call(*arrays)``."""
    return jax.export.deserialize(bytearray(Path(path).read_bytes()))
