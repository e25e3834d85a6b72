"""The official generator variants: what the shift level feeds its up conv.

One registry, ``VARIANTS``: our ``ShiftNetGenerator(variant=...)`` name -> the
official ``--which_model_netG``. All share the U-Net of ``nets/generator.py``; they
differ at the shift level (features at ``H / 2**shift_layer``, decoder part
``d`` and encoder skip ``e``, both after ReLU, the hole ``m`` there):

* ``shift`` (``unet_shift_triple``): ``[d, e, shift(d, e)]``, 3C channels.
* ``res`` (``res_unet_shift_triple``): ``r = ResBlock([d, d * shift(d, e)])``,
  then ``[d + r, e]``, 2C channels. ``ResBlock`` is conv3x3 -> InstanceNorm ->
  ReLU -> conv3x3 -> InstanceNorm (norms without scale and offset, whatever the
  generator's norm, as the official code builds them).
* ``patch_soft`` (``patch_soft_unet_shift_triple``): ``[d, e, soft_shift(d, e)]``
  (``soft_shift.py``).
* ``res_patch_soft`` (``res_patch_soft_unet_shift_triple``): ``res`` with the soft shift.
* ``face`` (``face_unet_shift_triple``): ``[d, e, flip_shift(d, e, f)]`` where ``f``
  are the encoder features of the horizontally flipped input (``nets/flip_shift.py``);
  its encoder's level 2 conv is 6x6 (stride 2, padding 2).

``use_shift=False`` (the official ``unet_256``) gives ``[d, e]``.

Two analysis options of the paper (Figs. 10 and 11), off by default and apart from
:class:`ShiftOptions` (they are no training option); neither adds or changes a
parameter, so any checkpoint runs with them:

* ``ablate``: ``"decoded"``, ``"encoded"`` or ``"shifted"`` zeroes that third of
  ``[d, e, shift(d, e)]`` (Fig. 10: which part the decoder relies on).
* ``shift_mode="random"``: every hole position copies the encoder feature of a
  known position drawn at random (seed ``RANDOM_SHIFT_SEED``, the same draw for
  the same shapes) instead of its nearest neighbour (Fig. 11).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from shiftnet_jax.nets import soft_shift as soft
from shiftnet_jax.nets.flip_shift import FLIP_FILLS, flip_shift, official_flip_shift
from shiftnet_jax.nets.shift import shift

VARIANTS = {
    "shift": "unet_shift_triple",
    "res": "res_unet_shift_triple",
    "patch_soft": "patch_soft_unet_shift_triple",
    "res_patch_soft": "res_patch_soft_unet_shift_triple",
    "face": "face_unet_shift_triple",
}
OFFICIAL_TO_VARIANT = {v: k for k, v in VARIANTS.items()}
SOFT = ("patch_soft", "res_patch_soft")
RESIDUAL = ("res", "res_patch_soft")
ABLATIONS = (None, "decoded", "encoded", "shifted")
SHIFT_MODES = ("nearest", "random")
RANDOM_SHIFT_SEED = 0


def random_shift(encoded, hole, seed: int = RANDOM_SHIFT_SEED):
    """Each hole position gets the encoder feature of a uniformly drawn known position
    (0 where nothing is known; 0 outside the hole), like ``shift`` with a random source.

    encoded: (B, h, w, C); hole: (B, h, w) bool. Returns (B, h, w, C).
    """
    b, h, w, c = encoded.shape
    known = ~hole.reshape(b, h * w)
    count = known.sum(axis=1, keepdims=True)
    draw = jax.random.uniform(jax.random.key(seed), (b, h * w))
    k = jnp.minimum((draw * count).astype(jnp.int32), jnp.maximum(count - 1, 0))
    order = jnp.argsort(~known, axis=1, stable=True)  # known positions first
    source = jnp.take_along_axis(order, k, axis=1)
    copied = jnp.take_along_axis(encoded.reshape(b, h * w, c), source[..., None], axis=1)
    use = (hole.reshape(b, h * w) & (count > 0))[..., None]
    return jnp.where(use, copied, 0).reshape(b, h, w, c).astype(encoded.dtype)


def check_analysis_options(variant: str, ablate, shift_mode) -> None:
    """ValueError (one line) for an unknown ``ablate`` / ``shift_mode`` or another variant."""
    if ablate not in ABLATIONS:
        raise ValueError(f"ablate must be one of decoded, encoded, shifted (or None), got {ablate!r}")
    if shift_mode not in SHIFT_MODES:
        raise ValueError(f"shift_mode must be one of {', '.join(SHIFT_MODES)}, got {shift_mode!r}")
    if (ablate or shift_mode != "nearest") and variant != "shift":
        raise ValueError(f"ablate and shift_mode apply to the shift variant (unet_shift_triple), "
                         f"not {variant!r}")


def shift_hole(hole, shift_sz: int, mask_thred: int):
    """The positions the hard shift fills (the official ``cal_flag_given_mask_thred``):
    at least ``mask_thred`` hole positions in the ``shift_sz`` window. The hole itself
    for the defaults (1, 1). (B, H, W) bool."""
    if shift_sz == 1 and mask_thred == 1:
        return hole
    return soft.hole_counts(hole, shift_sz) >= mask_thred


@dataclasses.dataclass(repr=False, eq=False)
class ShiftOptions:
    """The shift level's options: their one declaration.

    ``ShiftLevel`` and ``ShiftNetGenerator`` inherit these fields (keyword-only),
    the training config's ``model`` group and ``convert``'s flags take their
    defaults from :data:`SHIFT_DEFAULTS`, and :meth:`check_shift_options` is
    their one validation. ``variant``: a key of :data:`VARIANTS`; ``use_shift``:
    False gives the official ``unet_256`` (no shift); ``triple_weight``: gradient
    scale through the hard shift; ``shift_sz``, ``mask_thred``, ``fuse``,
    ``stride``: the official options of those names; ``patch_order``: soft shift
    patches as the official code orders them ("reference") or as the method
    describes ("spatial"); see :mod:`shiftnet_jax.nets.soft_shift`; ``flip_fill``: the
    face variant fills each hole position with the feature it "chose", or as the
    official code computes it ("reference", a broadcast sum); see
    :mod:`shiftnet_jax.nets.flip_shift`.
    """

    _: dataclasses.KW_ONLY
    variant: str = "shift"
    use_shift: bool = True
    triple_weight: float = 1.0
    shift_sz: int = 1
    mask_thred: int = 1
    fuse: bool = False
    stride: int = 1
    patch_order: str = "spatial"
    flip_fill: str = "chosen"

    def check_shift_options(self, shift_layer: int = 3):
        """ValueError (one line) for options no variant runs (``shift_layer``: where the
        shift sits, which the face variant fixes)."""
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.shift_sz < 1 or self.shift_sz % 2 == 0:
            raise ValueError(f"shift_sz must be odd and positive, got {self.shift_sz}")
        if self.stride != 1:
            raise ValueError(f"stride must be 1 (the official shifts crash for others), got {self.stride}")
        if self.mask_thred < 0:
            raise ValueError(f"mask_thred must be >= 0, got {self.mask_thred}")
        if self.patch_order not in soft.PATCH_ORDERS:
            raise ValueError(f"patch_order must be one of {soft.PATCH_ORDERS}, got {self.patch_order!r}")
        if self.flip_fill not in FLIP_FILLS:
            raise ValueError(f"flip_fill must be one of {FLIP_FILLS}, got {self.flip_fill!r}")
        if self.variant == "face" and shift_layer != 3:
            raise ValueError(f"the face variant shifts at shift_layer 3 (its 6x6 conv is "
                             f"there), got {shift_layer}")


SHIFT_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ShiftOptions)}


def shift_options(source) -> dict:
    """The shift options of a generator, a ShiftOptions or a dict (missing: the defaults)."""
    get = source.get if isinstance(source, dict) else lambda k, d: getattr(source, k, d)
    return {k: get(k, d) for k, d in SHIFT_DEFAULTS.items()}


class ResBlock(nn.Module):
    """conv3x3 -> InstanceNorm -> ReLU -> conv3x3 -> InstanceNorm (no affine), C channels."""

    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i in range(2):
            x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                        kernel_init=nn.initializers.normal(0.02), name=f"conv_{i}")(x)
            x = nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False,
                                use_fast_variance=False, dtype=self.dtype, name=f"norm_{i}")(x)
            if i == 0:
                x = nn.relu(x)
        return x


class ShiftLevel(ShiftOptions, nn.Module):
    """The shift level of a variant: (decoded, encoded, hole[, flipped, flipped hole]) ->
    the up conv's input. Shapes (B, h, w, C) and (B, h, w) bool. The options:
    :class:`ShiftOptions`; ``shift_tile``: column tile of the hard shift (None: automatic)."""

    shift_tile: int | None = None
    dtype: Any = jnp.float32
    ablate: str | None = None
    shift_mode: str = "nearest"

    @nn.compact
    def __call__(self, decoded, encoded, hole, flipped=None, flipped_hole=None):
        if not self.use_shift:
            return jnp.concatenate([decoded, encoded], axis=-1)
        if self.variant in SOFT:
            shifted = soft.soft_shift(decoded, encoded, hole, patch_size=self.shift_sz,
                                      mask_thred=self.mask_thred, fuse=self.fuse,
                                      stride=self.stride, patch_order=self.patch_order)
        elif self.variant == "face":
            fill = official_flip_shift if self.flip_fill == "reference" else flip_shift
            shifted = fill(decoded, encoded, flipped,
                                 shift_hole(hole, self.shift_sz, self.mask_thred),
                                 shift_hole(flipped_hole, self.shift_sz, self.mask_thred),
                                 triple_weight=self.triple_weight, tile=self.shift_tile)
        elif self.shift_mode == "random":
            shifted = random_shift(encoded, shift_hole(hole, self.shift_sz, self.mask_thred))
        else:
            shifted = shift(decoded, encoded, shift_hole(hole, self.shift_sz, self.mask_thred),
                            triple_weight=self.triple_weight, tile=self.shift_tile)
        if self.variant in RESIDUAL:
            fused = jnp.concatenate([decoded, decoded * shifted], axis=-1)
            residual = ResBlock(decoded.shape[-1], dtype=self.dtype, name="res")(fused)
            return jnp.concatenate([decoded + residual, encoded], axis=-1)
        parts = {"decoded": decoded, "encoded": encoded, "shifted": shifted}
        if self.ablate:
            parts[self.ablate] = jnp.zeros_like(parts[self.ablate])
        return jnp.concatenate(list(parts.values()), axis=-1)

