"""The functions that get exported: the network, its shift sources, and the uint8 pipeline.

Each is a plain JAX function of arrays with the variables closed over (they
become constants of the exported graph). NHWC throughout:

* :func:`network_fn`: ``image`` float32 (N, H, W, 3) in [-1, 1], ``hole``
  float32 (N, H, W, 1), 1 = missing -> raw ``output`` (N, H, W, 3) in [-1, 1];
  with ``sources`` also ``source`` int32 (N, h, w): the flat index ``y * w + x``
  of the known position whose feature the hard shift copied into each hole
  position (-1 elsewhere; ``>= h * w`` for the face variant's flipped candidates).
* :func:`pipeline_fn`: ``image`` uint8 (N, H, W, 3), ``mask`` uint8 (N, H, W, 1),
  nonzero = hole -> the composited uint8 (N, H, W, 3): the input outside the
  hole bit for bit, the network's output rounded inside, as ``inpaint.py``
  computes it at the working size.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from shiftnet_jax.errors import UserError
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.shift import shift_indices
from shiftnet_jax.nets.shift_level import SOFT, shift_hole


def export_model(model: ShiftNetGenerator, *, dense_shift: bool) -> ShiftNetGenerator:
    """The same generator (same parameters, same results) in the form that exports well.

    float32; 4x4 convs as one ``lax`` convolution each (ONNX ``Conv`` /
    ``ConvTranspose``, cuDNN on GPU) whatever ``conv_impl`` says; with
    ``dense_shift`` the shift's similarity as one matmul + argmax, not a scan
    over column tiles (``Loop`` in ONNX).
    """
    changes = dict(dtype=jnp.float32, conv_impl="lax")
    if dense_shift:
        changes["shift_tile"] = 0
    return dataclasses.replace(model, **changes)


def check_size(model: ShiftNetGenerator, size: int):
    multiple = 2 ** model.num_downs
    if size < multiple or size % multiple:
        raise UserError(f"--size {size} must be a multiple of 2**num_downs = {multiple} "
                        f"for this model")


def shift_inputs(model, variables, image, hole, features):
    """What the hard shift compares: (queries (N, m, w, C), keys (N, m, w, C), holes (N, m, w)),
    ``m = h`` (or ``2 h`` for the face variant, whose flipped features are candidates too)."""
    holes = shift_hole(features.hole, model.shift_sz, model.mask_thred)
    queries, keys = features.decoded, features.encoded
    if model.variant == "face":   # as nets/flip_shift.py
        flipped = model.apply(variables, image[:, :, ::-1], hole[:, :, ::-1],
                              levels=model.shift_layer, method="encode")[-1]
        keys = jnp.concatenate([keys, nn.relu(flipped)], axis=1)
        queries = jnp.concatenate([queries, jnp.zeros_like(queries)], axis=1)
        holes = jnp.concatenate([holes, holes[:, :, ::-1]], axis=1)
    return queries, keys, holes


def _sources(model, variables, image, hole, features):
    """Flat source index (N, h, w) of every hole position, -1 where none (hard shifts only)."""
    h, w = features.hole.shape[1:]
    queries, keys, holes = shift_inputs(model, variables, image, hole, features)
    index, valid = shift_indices(queries, keys, holes, tile=model.shift_tile)
    index, valid = index[:, :h * w], valid[:, :h * w]
    return jnp.where(valid, index, -1).reshape(-1, h, w).astype(jnp.int32)


def network_fn(model: ShiftNetGenerator, variables, *, sources: bool = False):
    """``fn(image, hole) -> output`` (or ``(output, source)``); see the module docstring."""
    if sources and (not model.use_shift or model.variant in SOFT):
        raise UserError(f"--sources: the {model.variant if model.use_shift else 'unet'} "
                        "generator has no hard shift, so no source positions to export")
    if sources and model.variant == "face" and model.flip_fill == "reference":
        raise UserError("--sources: the official face shift fills the hole with sums of "
                        "sources, not one source per position (convert with --flip-fill chosen)")

    def fn(image, hole):
        output, features = model.apply(variables, image, hole, return_features=True)
        if not sources:
            return output
        return output, _sources(model, variables, image, hole, features)

    return fn


def pipeline_fn(model: ShiftNetGenerator, variables):
    """``fn(image_u8, mask_u8) -> composited uint8``; see the module docstring."""

    def fn(image, mask):
        hole = (mask > 0).astype(jnp.float32)
        x = image.astype(jnp.float32) / 127.5 - 1.0
        output = model.apply(variables, x, hole)
        # train.reporting.to_uint8: round half to even, as np.round and ONNX Round.
        filled = jnp.clip(jnp.round((output + 1.0) * 127.5), 0, 255).astype(jnp.uint8)
        return jnp.where(mask > 0, filled, image)

    return fn
