"""The one jitted prediction function: generator forward, composite, and the shift's flow.

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


class Prediction(NamedTuple):
    """What :func:`forward` returns (arrays with a leading batch axis)."""

    composite: Any   # (B, H, W, 3) in [-1, 1]: the input outside the hole, the output inside
    output: Any      # (B, H, W, 3): the raw generator output
    flow: Any        # None, or (index (B, n), valid (B, n), feature hole (B, h, w)), n = h * w


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
      layer: ``index`` the flat source position of each position, ``valid`` False
      where a hole position had nothing to copy, and the feature hole.
    """
    output, features = model.apply(variables, image, hole, return_features=True)
    composite = metrics.composite(output, image, hole)
    if not flow:
        return Prediction(composite, output, None)
    index, valid = shift_indices(features.decoded, features.encoded, features.hole,
                                 tile=model.shift_tile)
    return Prediction(composite, output, (index, valid, features.hole))


def pad_batch(x: np.ndarray, size: int) -> np.ndarray:
    """Pad (B, ...) with zeros to (size, ...), so that a short last batch reuses the
    compiled shape; callers drop the padded rows. Zeros are a valid input: no hole."""
    x = np.asarray(x)
    if len(x) > size:
        raise ValueError(f"batch of {len(x)} does not fit in {size}")
    if len(x) == size:
        return x
    return np.concatenate([x, np.zeros((size - len(x),) + x.shape[1:], x.dtype)])
