"""Shift-Net generator (a U-Net with a shift-connection) and PatchGAN discriminator.

NHWC throughout. The generator follows the reference PyTorch ``unet_shift_triple``
layer for layer, so that its checkpoints load (see :mod:`shiftnet_jax.convert`):

* ``num_downs`` encoder levels ``down_0 .. down_{L-1}``: 4x4 stride-2 convs with
  ``ngf * min(2**i, 8)`` channels; LeakyReLU(0.2) before every conv but the
  first; a norm after every conv but the first and the innermost.
* decoder levels ``up_{L-1} .. up_0``: ReLU -> 4x4 stride-2 transposed conv ->
  norm (``up_0``: tanh instead of a norm). Each level's input is
  ``concat[decoded, encoded]`` from the level below and the skip.
* the shift level ``k = shift_layer - 1`` (features at ``H / 2**shift_layer``):
  the input of ``up_k`` is ``concat[decoded, encoded, shift(decoded, encoded)]``.

Example::

    model = ShiftNetGenerator(ngf=64)
    variables = model.init(jax.random.key(0), image, hole)
    output = model.apply(variables, image, hole)        # (B, H, W, 3) in [-1, 1]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from shiftnet_jax.nets.conv import Conv4x4
from shiftnet_jax.nets.feature_hole import RULES as FEATURE_HOLE_RULES
from shiftnet_jax.nets.feature_hole import feature_hole
from shiftnet_jax.nets.layers import NORMS, SpectralNorm, conv_init, make_norm, wide
from shiftnet_jax.nets.shift_level import ShiftLevel, ShiftOptions, check_analysis_options, shift_options


def size_multiple(num_downs: int) -> int:
    """What every image side must be a multiple of: one halving per encoder level."""
    return 2 ** num_downs


def check_image_size(height: int, width: int, num_downs: int):
    """ValueError (one line) unless both sides are multiples of :func:`size_multiple`."""
    multiple = size_multiple(num_downs)
    if height % multiple or width % multiple:
        raise ValueError(f"image size {height}x{width} must be a multiple of 2**num_downs = {multiple}")


class ShiftFeatures(NamedTuple):
    """What the generator saw at the shift layer (all NHWC at H / 2**shift_layer).

    decoded: (B, h, w, C) decoder features after ReLU (what the guidance loss trains).
    encoded: (B, h, w, C) encoder skip features after ReLU (what is copied).
    hole: (B, h, w) bool, True = missing feature position.
    """

    decoded: jax.Array
    encoded: jax.Array
    hole: jax.Array


def _conv_then_norm(level, conv, x, train: bool):
    """``conv`` (spectrally normalised if ``level.spectral_norm``), then ``level.norm`` if
    any: the tail of a U-Net level, inside its ``__call__`` (submodules "sn", "norm")."""
    x = SpectralNorm(conv, name="sn")(x, train) if level.spectral_norm else conv(x)
    if level.norm:
        x = make_norm(level.norm, train, level.dtype, "norm")(x)
    return x


class Down(nn.Module):
    """One encoder level: [LeakyReLU(0.2)] -> conv 4x4/2 -> [norm]."""

    features: int
    activation: bool
    norm: str | None
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    kernel_size: int = 4   # 6 for the face variant's level 2 (padding 2: same output size)
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.activation:
            x = nn.leaky_relu(x, 0.2)
        if self.kernel_size == 4:
            conv = Conv4x4(self.features, impl=self.conv_impl, dtype=self.dtype,
                           kernel_init=conv_init, name="conv")
        else:
            pad = (self.kernel_size - 2) // 2
            conv = nn.Conv(self.features, (self.kernel_size,) * 2, strides=(2, 2),
                           padding=((pad, pad), (pad, pad)), dtype=self.dtype,
                           kernel_init=conv_init, name="conv")
        return _conv_then_norm(self, conv, x, train)


class Up(nn.Module):
    """One decoder level: ReLU (applied by the caller) -> transposed conv 4x4/2 -> norm."""

    features: int
    norm: str | None
    conv_impl: str = "auto"
    dtype: Any = jnp.float32
    spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        # = nn.ConvTranspose(padding=2): padding k-1-p = 2 on the 2x-dilated input is
        # PyTorch's ConvTranspose2d(4, 2, 1) with the kernel flipped (see torchfile/state_dicts.py).
        conv = Conv4x4(self.features, transpose=True, impl=self.conv_impl, dtype=self.dtype,
                       kernel_init=conv_init, name="conv")
        return _conv_then_norm(self, conv, x, train)


class ShiftNetGenerator(ShiftOptions, nn.Module):
    """The Shift-Net U-Net generator.

    Attributes:
      ngf: width of the first level (64 in the paper).
      num_downs: number of stride-2 levels; inputs must be multiples of 2**num_downs.
      norm: ``"instance"`` (reference default) or ``"batch"``.
      shift_layer: the shift sits at H / 2**shift_layer (3: 32x32 for 256x256).
      feature_hole: ``"nearest"`` (reference PyTorch) or ``"conv"`` (paper's Torch code).
      triple_weight: gradient scale through the shift (reference: 1).
      output_channels: 3 for RGB.
      dtype: computation dtype (parameters stay float32).
      shift_tile: column tile of the shift's similarity; None = automatic.
      conv_impl: how the 4x4 stride-2 convs are computed (same parameters and
        results): "auto" (per backend) or one of :data:`shiftnet_jax.nets.conv.IMPLS`;
        see :mod:`shiftnet_jax.nets.conv`.
      variant, use_shift, triple_weight, shift_sz, mask_thred, fuse, stride,
        patch_order, flip_fill: the shift level's options (keyword-only), declared once in
        :class:`shiftnet_jax.nets.shift_level.ShiftOptions`. ``use_shift=False`` gives
        the same U-Net without the shift (the official ``unet_256``, the paper's
        ablation); its features are still returned for the guidance loss.
      add_mask2input: append the known-pixel channel to the input (official default).
      spectral_norm: spectral normalisation of every U-Net conv, PyTorch's semantics
        (the official ``--use_spectral_norm_G``; :mod:`shiftnet_jax.nets.layers`).
      ablate, shift_mode: the paper's analysis options (Figs. 10, 11; no parameters, no
        training option): zero the "decoded", "encoded" or "shifted" third at the shift
        level; copy from a "random" known position instead of the "nearest".
    """

    ngf: int = 64
    num_downs: int = 8
    norm: str = "instance"
    shift_layer: int = 3
    feature_hole: str = "nearest"
    output_channels: int = 3
    dtype: Any = jnp.float32
    shift_tile: int | None = None
    conv_impl: str = "auto"
    add_mask2input: bool = True
    spectral_norm: bool = False
    ablate: str | None = None
    shift_mode: str = "nearest"

    def setup(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.feature_hole not in FEATURE_HOLE_RULES:
            raise ValueError(f"feature_hole must be one of {FEATURE_HOLE_RULES}, "
                             f"got {self.feature_hole!r}")
        if not 2 <= self.shift_layer <= self.num_downs - 1:
            raise ValueError(f"shift_layer must lie in [2, num_downs - 1 = "
                             f"{self.num_downs - 1}], got {self.shift_layer}")
        self.check_shift_options(self.shift_layer)
        check_analysis_options(self.variant, self.ablate, self.shift_mode)
        widths = self.widths
        last = self.num_downs - 1
        # Unlike pix2pix, the reference gives every generator conv a bias, also
        # before a norm (where it is inert) and with BatchNorm.
        self.down = [
            Down(widths[i], activation=i > 0, norm=None if i in (0, last) else self.norm,
                 conv_impl=self.conv_impl, dtype=self.dtype, name=f"down_{i}",
                 kernel_size=6 if self.variant == "face" and i == 2 else 4,
                 spectral_norm=self.spectral_norm)
            for i in range(self.num_downs)]
        self.shift_level = ShiftLevel(**shift_options(self), shift_tile=self.shift_tile,
                                      dtype=self.dtype, ablate=self.ablate, shift_mode=self.shift_mode)
        self.up = [
            Up(widths[i - 1] if i else self.output_channels, norm=self.norm if i else None,
               conv_impl=self.conv_impl, dtype=self.dtype, name=f"up_{i}",
               spectral_norm=self.spectral_norm)
            for i in range(self.num_downs)]

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this (``2**num_downs``)."""
        return size_multiple(self.num_downs)

    @property
    def widths(self):
        return [self.ngf * min(2 ** i, 8) for i in range(self.num_downs)]

    def _input(self, image, hole, zero_fill: bool):
        """[RGB with the hole zero-filled (or not), 1 on known pixels]: (B, H, W, 4) (3 without
        ``add_mask2input``)."""
        if image.ndim != 4 or image.shape[-1] != 3:
            raise ValueError(f"image must be (B, H, W, 3), got shape {image.shape}")
        if hole.ndim == 3:
            hole = hole[..., None]
        if hole.shape != image.shape[:3] + (1,):
            raise ValueError(f"hole must be (B, H, W, 1) matching image {image.shape}, "
                             f"got {hole.shape}")
        check_image_size(image.shape[1], image.shape[2], self.num_downs)
        known = 1.0 - hole.astype(self.dtype)
        image = image.astype(self.dtype)
        rgb = image * known if zero_fill else image
        if not self.add_mask2input:   # the official --add_mask2input 0: RGB only
            return rgb, hole
        return jnp.concatenate([rgb, known], axis=-1), hole

    def encode(self, image, hole, *, levels: int | None = None, zero_fill: bool = True,
               train: bool = False):
        """Run the first ``levels`` encoder levels (all by default).

        Returns a list of (B, H / 2**(i+1), W / 2**(i+1), widths[i]) features, before ReLU.
        """
        x, _ = self._input(image, hole, zero_fill)
        skips = []
        for down in self.down[:levels]:
            x = down(x, train)
            skips.append(x)
        return skips

    def guidance_target(self, image, hole, *, train: bool = False):
        """Encoder features of the ground truth at the shift layer, after ReLU.

        Runs only the ``shift_layer`` encoder levels it needs. As the reference, the
        input is the unmasked image plus the known-pixel channel. (B, h, w, C).
        """
        skips = self.encode(image, hole, levels=self.shift_layer, zero_fill=False,
                            train=train)
        return nn.relu(skips[-1])

    def decode(self, skips, hole, *, flipped=None, train: bool = False):
        """Decode encoder features; ``hole`` is the pixel hole (B, H, W, 1).

        ``flipped``: the face variant's encoder features of the flipped input at the
        shift level (B, h, w, C). Returns (output (B, H, W, C_out) in [-1, 1], ShiftFeatures).
        """
        k = self.shift_layer - 1
        x = nn.relu(skips[-1])
        features = None
        for i in reversed(range(self.num_downs)):
            if i < self.num_downs - 1:
                decoded, encoded = nn.relu(x), nn.relu(skips[i])
                if i == k:
                    small_hole = feature_hole(hole, self.shift_layer, self.feature_hole)
                    features = ShiftFeatures(decoded, encoded, small_hole)
                    # The flipped image's hole is the flipped feature hole (as the official code).
                    x = self.shift_level(decoded, encoded, small_hole, flipped,
                                         small_hole[:, :, ::-1])
                else:
                    x = jnp.concatenate([decoded, encoded], axis=-1)
            x = self.up[i](x, train)
        return jnp.tanh(x).astype(wide(self.dtype)), features

    def __call__(self, image, hole, *, train: bool = False, return_features: bool = False):
        """Inpaint: image (B, H, W, 3) in [-1, 1], hole (B, H, W, 1) with 1 = missing.

        The hole is zero-filled and the known-pixel channel appended here, as the
        reference builds its input. Returns the raw output (B, H, W, 3), not
        composited; with ``return_features`` also the :class:`ShiftFeatures`.
        """
        _, hole = self._input(image, hole, True)
        flipped = None
        if self.variant == "face" and self.use_shift:
            # The official face model's first pass, on the flipped masked image.
            flipped = nn.relu(self.encode(image[:, :, ::-1], hole[:, :, ::-1],
                                          levels=self.shift_layer, train=train)[-1])
        output, features = self.decode(self.encode(image, hole, train=train), hole,
                                       flipped=flipped, train=train)
        return (output, features) if return_features else output
