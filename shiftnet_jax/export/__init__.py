"""Export a generator for use outside this package: ONNX, StableHLO (LiteRT: refused).

    python -m shiftnet_jax.export --format onnx --out demo.onnx              # the bundled model
    python -m shiftnet_jax.export --ckpt DIR --format stablehlo --out m.jax --size 256
    python -m shiftnet_jax.export --format onnx --pipeline --out demo_u8.onnx

From Python: :func:`export_checkpoint` (a checkpoint directory) or
:func:`export_generator` (a model and its variables). Formats:

* ``onnx``: opset 17 through ``jax2onnx`` (:mod:`.onnx`), run by ONNX Runtime
  (also onnxruntime-web in the browser: ``studio/static/local.html``);
* ``stablehlo``: ``jax.export`` serialized, CPU and CUDA in one file (:mod:`.stablehlo`);
* ``litert``: refused in one line (:data:`LITERT_REFUSAL`).

Inputs and outputs (NHWC, batch axis dynamic) are those of :mod:`.graphs`:
``image`` float32 (N, S, S, 3) in [-1, 1] and ``hole`` float32 (N, S, S, 1),
1 = missing -> ``output`` float32 (N, S, S, 3); ``sources=True`` adds ``source``
int32 (N, h, w); ``pipeline=True`` takes ``image`` uint8 (N, S, S, 3) and ``mask``
uint8 (N, S, S, 1), nonzero = hole, and returns ``inpainted`` uint8 (N, S, S, 3).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp

from shiftnet_jax import __version__, checkpoint
from shiftnet_jax.errors import UserError
from shiftnet_jax.export import graphs

FORMATS = ("onnx", "stablehlo", "litert")
SUFFIXES = {"onnx": ".onnx", "stablehlo": ".jax"}
LITERT_REFUSAL = (
    "litert: no maintained JAX -> LiteRT converter works without TensorFlow (the documented "
    "path is jax2tf / orbax-export + tf.lite.TFLiteConverter); export --format onnx and convert "
    "that with a TensorFlow install (e.g. onnx2tf) instead")


def signature(size, *, pipeline: bool = False, sources: bool = False):
    """(inputs {name: (per-image shape, dtype)}, output names) of an exported graph;
    ``size`` is S (square) or (H, W)."""
    h, w = (size, size) if isinstance(size, int) else size
    if pipeline:
        return ({"image": ((h, w, 3), jnp.uint8), "mask": ((h, w, 1), jnp.uint8)},
                ["inpainted"])
    inputs = {"image": ((h, w, 3), jnp.float32), "hole": ((h, w, 1), jnp.float32)}
    return inputs, ["output", "source"] if sources else ["output"]


def export_generator(model, variables, fmt: str, out_path, *, size, pipeline: bool = False,
                     sources: bool = False, metadata: dict | None = None) -> Path:
    """Export ``model`` (a ShiftNetGenerator) with ``variables`` to ``out_path``; returns it.

    ``size``: the working size, S (square, what the command line exports) or (H, W).

    Raises :class:`~shiftnet_jax.errors.UserError` (one line) for what cannot be exported.
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (choose one of {', '.join(FORMATS)})")
    if fmt == "litert":
        raise UserError(LITERT_REFUSAL)
    if pipeline and sources:
        raise UserError("--pipeline returns the inpainted image only; drop --sources")
    if fmt == "onnx" and model.use_shift and model.variant == "face" and model.flip_fill == "reference":
        raise UserError("the official face shift (flip_fill reference) does not export to ONNX "
                        "yet; use --format stablehlo, or convert with --flip-fill chosen")
    for side in ((size,) if isinstance(size, int) else size):
        graphs.check_size(model, side)
    model = graphs.export_model(model, dense_shift=fmt == "onnx")
    fn = (graphs.pipeline_fn(model, variables) if pipeline
          else graphs.network_fn(model, variables, sources=sources))
    inputs, outputs = signature(size, pipeline=pipeline, sources=sources)
    meta = {"producer": f"shiftnet_jax {__version__}", "size": str(size),
            "variant": model.variant if model.use_shift else "unet",
            "kind": "pipeline" if pipeline else "network", **(metadata or {})}
    if fmt == "onnx":
        from shiftnet_jax.export import onnx

        return onnx.save(onnx.to_onnx(fn, inputs, outputs, metadata=meta), out_path)
    from shiftnet_jax.export import stablehlo

    return stablehlo.save(stablehlo.export(fn, inputs), out_path)


def export_checkpoint(ckpt_dir, fmt: str, out_path, *, size: int | None = None,
                      pipeline: bool = False, sources: bool = False, step: int | None = None):
    """Load a checkpoint (default working size: its training crop) and export it.

    Returns ``(path, size)``.
    """
    model, variables, config = checkpoint.load_generator(ckpt_dir, step)
    size = size or (config.get("data") or {}).get("crop_size") or 256
    path = export_generator(model, variables, fmt, out_path, size=size, pipeline=pipeline,
                            sources=sources, metadata={"checkpoint": Path(ckpt_dir).name})
    return path, size
