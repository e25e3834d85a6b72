"""The generator's 4x4 stride-2 convolutions, in forms that are fast on each backend.

Mathematically these are ``nn.Conv(F, (4, 4), strides=2, padding=1)`` and
``nn.ConvTranspose(F, (4, 4), strides=2, padding=2)`` (= PyTorch's
``ConvTranspose2d(4, 2, 1)`` with a flipped kernel), with the same parameters
(``kernel`` (4, 4, Cin, Cout) HWIO, ``bias`` (Cout,)), so checkpoints and the
reference mapping are unaffected. What differs is how XLA is asked to compute:

* ``lax``: one strided / input-dilated convolution. Best where cuDNN runs it
  (GPU); on XLA:CPU dilated convolutions, and the backward of strided ones,
  fall off the fast path (a training step at 256x256 took 6 s instead of 1.3 s).
* ``subpixel`` (transposed): each output phase (r, s) of a stride-2 transposed
  conv sees a 2x2 window of the input, so one stride-1 2x2 conv with 4*Cout
  outputs followed by a depth-to-space.
* ``subpixel_gemm`` (transposed): ``subpixel``'s forward with the backward of its
  im2col form (the 2x2 windows concatenated on channels, one matmul): XLA:CPU computes
  the kernel gradient of the 2x2 conv slowly when the batch grows (32x32x768->128 at
  batch 4: 0.75 s backward, 0.23 s as matmuls), while the conv is the faster forward.
* ``taps`` (transposed): the 16 kernel taps as one batched matmul; for tiny maps
  (the innermost levels), where the work is reading weights.
* ``im2col`` (conv): the 16 strided taps concatenated on channels, one matmul.
* ``auto``: ``lax`` on GPU/TPU; on CPU the formulation per layer that measured
  fastest on a 2-core machine (BENCHMARKS.md).

Per axis, the transposed conv computes ``out[2i + r] = xp[i + r] k[r] + xp[i + r + 1] k[r + 2]``
with ``xp`` the input padded by one zero on each side.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

DN = ("NHWC", "HWIO", "NHWC")
IMPLS = ("auto", "lax", "subpixel", "subpixel_gemm", "taps", "im2col")
_TAP_OFFSET = (0, 1, 1, 2)   # padded-input offset of kernel tap a = r + 2 dy is r + dy


def conv_lax(x, k):
    return jax.lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DN)


def conv_im2col(x, k):
    b, h, w, c = x.shape
    ho, wo = h // 2, w // 2
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, a:a + 2 * ho:2, e:e + 2 * wo:2]
                               for a in range(4) for e in range(4)], axis=-1)  # (B, h, w, 16C)
    return (patches.reshape(b * ho * wo, 16 * c) @ k.reshape(16 * c, -1)).reshape(b, ho, wo, -1)


def conv_transpose_lax(x, k):
    return jax.lax.conv_transpose(x, k, (2, 2), ((2, 2), (2, 2)), dimension_numbers=DN)


def _interleave(phases, b, h, w, co):
    """phases[r][s] (B, H, W, C) -> (B, 2H, 2W, C) with out[2i + r, 2j + s]."""
    rows = [jnp.stack(phases[r], axis=3) for r in range(2)]        # (B, H, W, 2, C)
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, co)    # (B, H, 2, W, 2, C)


def conv_transpose_subpixel(x, k):
    b, h, w, c = x.shape
    co = k.shape[-1]
    # k[r + 2 dy, s + 2 dx] -> k2[dy, dx, :, (r, s, co)]
    k2 = k.reshape(2, 2, 2, 2, c, co).transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, c, 4 * co)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = jax.lax.conv_general_dilated(xp, k2, (1, 1), "VALID", dimension_numbers=DN)
    y = y.reshape(b, h + 1, w + 1, 2, 2, co)
    return _interleave([[y[:, r:r + h, s:s + w, r, s] for s in range(2)] for r in range(2)],
                       b, h, w, co)


def conv_transpose_subpixel_im2col(x, k):
    """``conv_transpose_subpixel`` with the 2x2 conv as one matmul over its windows."""
    b, h, w, c = x.shape
    co = k.shape[-1]
    k2 = k.reshape(2, 2, 2, 2, c, co).transpose(0, 2, 4, 1, 3, 5).reshape(4 * c, 4 * co)
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = jnp.concatenate([xp[:, dy:dy + h + 1, dx:dx + w + 1]
                               for dy in range(2) for dx in range(2)], axis=-1)  # (B, h+1, w+1, 4C)
    y = (windows.reshape(-1, 4 * c) @ k2).reshape(b, h + 1, w + 1, 2, 2, co)
    return _interleave([[y[:, r:r + h, s:s + w, r, s] for s in range(2)] for r in range(2)],
                       b, h, w, co)


def forward_with_backward_of(forward, backward):
    """``forward(x, k)`` whose VJP is ``backward``'s (the same function, computed another
    way): each formulation where XLA:CPU runs it fastest."""
    @jax.custom_vjp
    def f(x, k):
        return forward(x, k)

    def f_fwd(x, k):
        return forward(x, k), (x, k)

    def f_bwd(residuals, dy):
        return jax.vjp(backward, *residuals)[1](dy)

    f.defvjp(f_fwd, f_bwd)
    return f


conv_transpose_subpixel_gemm = forward_with_backward_of(conv_transpose_subpixel,
                                                        conv_transpose_subpixel_im2col)


def conv_transpose_taps(x, k):
    b, h, w, c = x.shape
    co = k.shape[-1]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    off = _TAP_OFFSET
    taps = jnp.stack([xp[:, off[a]:off[a] + h, off[e]:off[e] + w].reshape(b * h * w, c)
                      for a in range(4) for e in range(4)])           # (16, BHW, C)
    y = jnp.einsum("tnc,tco->tno", taps, k.reshape(16, c, co))        # (16, BHW, Cout)
    y = y.reshape(2, 2, 2, 2, b, h, w, co).sum(axis=(0, 2))           # taps (r+2dy, s+2dx)
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(b, 2 * h, 2 * w, co)


CONV = {"lax": conv_lax, "im2col": conv_im2col}
CONV_TRANSPOSE = {"lax": conv_transpose_lax, "subpixel": conv_transpose_subpixel,
                  "subpixel_gemm": conv_transpose_subpixel_gemm, "taps": conv_transpose_taps}


def choose(impl: str, transpose: bool, in_size: int) -> str:
    """The formulation ``impl`` stands for, for an input of side ``in_size``."""
    if impl not in IMPLS:
        raise ValueError(f"conv_impl must be one of {IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if jax.default_backend() != "cpu":
        return "lax"
    if transpose:
        return "taps" if in_size <= 8 else "subpixel_gemm" if in_size <= 64 else "subpixel"
    return "im2col" if in_size <= 64 else "lax"


class Conv4x4(nn.Module):
    """4x4 stride-2 conv (``transpose=False``: halves H, W) or transposed conv (doubles)."""

    features: int
    transpose: bool = False
    impl: str = "auto"
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (4, 4, x.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        name = choose(self.impl, self.transpose, min(x.shape[1:3]))
        if self.transpose:
            if name not in CONV_TRANSPOSE:
                raise ValueError(f"{name!r} is not a transposed-conv formulation")
            return CONV_TRANSPOSE[name](x, kernel) + bias
        if name not in CONV:
            raise ValueError(f"{name!r} is not a conv formulation")
        return CONV[name](x, kernel) + bias
