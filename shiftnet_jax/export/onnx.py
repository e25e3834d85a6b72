"""ONNX export through the maintained converter ``jax2onnx`` (the ``export`` extra).

``jax2onnx`` traces the JAX function to a jaxpr and lowers every primitive to
ONNX operators; the whole Shift-Net forward, every variant, needs none built
by hand: the convs become ``Conv`` / ``ConvTranspose``, the hard shift
``Einsum`` (the cosine similarity) + ``Where`` + ``ArgMax`` + ``GatherND``, the
soft shift ``Softmax`` and ``ScatterND`` (the overlap-add). The shift's
``custom_vjp`` only defines a gradient: the forward is what is traced. The
weights are initializers of the graph (float32), and the batch axis is
symbolic (``N``), so one file serves any batch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp

from shiftnet_jax.errors import UserError, write_atomically

OPSET = 17
BATCH = "N"


def _converter():
    """``jax2onnx.to_onnx``, with only the plugins this model needs registered.

    By default jax2onnx imports all of its plugins on the first conversion, and
    its Equinox examples build (and compile) small models at import time: 30 s
    on a loaded 2-core machine against 4 s for the JAX and Flax ones. The
    loading below uses the same registry; if a later jax2onnx changes it, the
    default (slower) loading applies.
    """
    try:
        import jax2onnx
        from jax2onnx.plugins import plugin_system
    except ImportError:
        raise UserError("ONNX export needs jax2onnx, onnx and onnxruntime: "
                        "pip install -e '.[export]'") from None
    if (hasattr(plugin_system, "_import_tree")
            and getattr(plugin_system, "_already_imported_plugins", True) is False):
        root = Path(plugin_system.__file__).parent
        for tree in ("jax", "flax"):
            plugin_system._import_tree(root / tree, f"jax2onnx.plugins.{tree}")
        plugin_system._already_imported_plugins = True
    # onnx_ir logs a warning per untyped shape constant; none of them matters here.
    logging.getLogger("onnx_ir.serde").setLevel(logging.ERROR)
    return jax2onnx.to_onnx


def to_onnx(fn, inputs: dict, outputs: list[str], *, model_name: str = "shiftnet",
            metadata: dict | None = None):
    """Convert ``fn`` to an ONNX ModelProto with a dynamic batch axis.

    Args:
      fn: a JAX function of the arrays named by ``inputs``.
      inputs: name -> (per-image shape, dtype), e.g. ``{"image": ((256, 256, 3), jnp.float32)}``.
      outputs: names of ``fn``'s outputs, in order.
      metadata: written into the model's ``metadata_props`` (strings).
    """
    convert = _converter()
    batch, = jax.export.symbolic_shape(BATCH)
    specs = [jax.ShapeDtypeStruct((batch, *shape), jnp.dtype(dtype))
             for shape, dtype in inputs.values()]
    proto = convert(fn, specs, opset=OPSET, model_name=model_name,
                    input_names=list(inputs), output_names=outputs)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    return proto


def save(proto, out_path) -> Path:
    """Write a ModelProto (weights inline: all our models are far below 2 GB)."""
    return write_atomically(out_path, proto.SerializeToString())


def session(path_or_bytes, *, threads: int | None = None):
    """An ONNX Runtime CPU session (warnings off: ORT notes layout merges of BatchNorm)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = str(path_or_bytes) if isinstance(path_or_bytes, (str, Path)) else path_or_bytes
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
