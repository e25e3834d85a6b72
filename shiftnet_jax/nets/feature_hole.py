"""The hole at a feature resolution: which feature positions count as missing.

Two rules, chosen by name:

* ``"nearest"`` (the reference PyTorch code): nearest-neighbour downsampling of
  the pixel hole by ``2**levels``; feature position ``(i, j)`` is a hole if pixel
  ``(i * 2**levels, j * 2**levels)`` is.
* ``"conv"`` (the paper's Torch code): ``levels`` 4x4 stride-2 convolutions
  (padding 1) whose weights are all 1/16, thresholded once at the end at
  ``> 5/16``. It marks more positions along the hole's border (252 instead of
  225 for the reference's 120x120 centre hole at 32x32).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

RULES = ("nearest", "conv")   # how a pixel hole becomes a feature hole (``method``)
CONV_THRESHOLD = 5.0 / 16.0


def feature_hole(hole, levels: int, method: str = "nearest"):
    """Downsample a pixel hole to the resolution ``levels`` stride-2 steps down.

    Args:
      hole: (B, H, W, 1) or (B, H, W), 1/True = missing pixel.
      levels: number of stride-2 downsamplings (3 for 32x32 from 256x256).
      method: ``"nearest"`` or ``"conv"`` (see the module docstring).

    Returns:
      (B, H / 2**levels, W / 2**levels) bool, True = missing feature position.
    """
    if method not in RULES:
        raise ValueError(f"feature_hole method must be one of {RULES}, got {method!r}")
    hole = jnp.asarray(hole)
    if hole.ndim == 4:
        hole = hole[..., 0]
    hole = hole.astype(jnp.float32)
    factor = 2 ** levels
    if method == "nearest":
        return hole[:, ::factor, ::factor] > 0.5
    x = hole[..., None]
    kernel = jnp.full((4, 4, 1, 1), 1.0 / 16.0, jnp.float32)
    for _ in range(levels):
        x = jax.lax.conv_general_dilated(
            x, kernel, window_strides=(2, 2), padding=((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST)
    return x[..., 0] > CONV_THRESHOLD
