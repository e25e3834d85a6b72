"""The one jitted prediction function (generator forward, composite, the shift's flow) and
the size a checkpoint works at by default.

Used by the training loop's sample grids and final evaluation, ``eval.py``,
``inpaint.py`` and the studio. Inputs may be host arrays or global arrays
sharded over a device mesh (training); the computation is the same.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np

from shiftnet_jax.inference import metrics
from shiftnet_jax.nets.shift import shift_indices


DEFAULT_SIZE = 256   # working size of a checkpoint whose config names no training crop


def default_size(config: dict) -> int:
    """The working size a checkpoint is used at unless told otherwise: its training crop
    (``config["data"]["crop_size"]``), else :data:`DEFAULT_SIZE`."""
    return (config.get("data") or {}).get("crop_size") or DEFAULT_SIZE


class ShiftFlow(NamedTuple):
    """Where the shift copied each position from, at its layer (n = h * w positions)."""

    index: Any          # (B, n) int: the flat source position of each position
    valid: Any          # (B, n) bool: False where a hole position had nothing to copy
    feature_hole: Any   # (B, h, w) bool


class Prediction(NamedTuple):
    """What :func:`forward` returns (arrays with a leading batch axis)."""

    composite: Any   # (B, H, W, 3) in [-1, 1]: the input outside the hole, the output inside
    output: Any      # (B, H, W, 3): the raw generator output
    flow: Any        # None, or a ShiftFlow


@functools.partial(jax.jit, static_argnames=("model", "flow"))
def forward(model, variables, image, hole, flow: bool = False):
    """Eval-mode generator output, composited, and optionally the shift's sources.

    Args:
      model: a ``ShiftNetGenerator`` (static: one compilation per model and shape).
      variables: its variables ({"params", ["batch_stats"]}).
      image: (B, H, W, 3) in [-1, 1]; hole: (B, H, W, 1), 1 = missing.
      flow: also return where each hole feature was copied from.

    Returns:
      a :class:`Prediction`; its ``flow`` (with ``flow=True``) is the shift at its
      layer, a :class:`ShiftFlow`.
    """
    output, features = model.apply(variables, image, hole, return_features=True)
    composite = metrics.composite(output, image, hole)
    if not flow:
        return Prediction(composite, output, None)
    index, valid = shift_indices(features.decoded, features.encoded, features.hole,
                                 tile=model.shift_tile)
    return Prediction(composite, output, ShiftFlow(index, valid, features.hole))


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Pad (B, ...) with zeros to (size, ...), so that a short last batch reuses the
    compiled shape; callers drop the padded rows. Zeros are a valid input: no hole."""
    x = np.asarray(x)
    if len(x) > size:
        raise ValueError(f"batch of {len(x)} does not fit in {size}")
    if len(x) == size:
        return x
    return np.concatenate([x, np.zeros((size - len(x),) + x.shape[1:], x.dtype)])
