"""The patch soft shift of the official ``patch_soft_unet_shift_triple`` generator.

Instead of copying one known feature into each hole position (``shift.py``),
every position ``t`` gets a softmax-weighted mix of ``k x k`` encoder patches
(``k = patch_size``), DeepFill's contextual attention on Shift-Net's features:

1. patches: the ``k x k x C`` neighbourhood of every position of the encoder
   feature (zero-padded), each divided by its L2 norm (at least 1e-4);
2. scores ``s[q, t]``: the correlation of the normalised patch ``q`` with the
   decoder feature's ``k x k`` neighbourhood of ``t`` (the decoder is not
   normalised);
3. ``fuse`` (optional): each score becomes the sum along the diagonal of the
   (candidate, target) score matrix over ``k`` steps, first in row-major
   then in column-major position order, which favours large coherent patches;
4. candidates: a patch counts as known when at most ``mask_thred`` of its
   ``k x k`` feature positions are in the hole; softmax over candidates of
   ``10 * s``;
5. paste: the weighted patches are overlap-added back (a transposed conv) and
   divided by the overlap count.

Unlike the hard shift, every position (not only the hole) receives a mix, and
the gradient is plain autodiff through all of it (the official module is an
``nn.Module``, not a custom ``autograd.Function``, so its ``triple_weight`` is
unused), reaching both the encoder and the decoder features.

Two patch orders (``patch_order``):

* ``"reference"``: as the official code at a353431 computes it. It unfolds the
  NCHW map into ``(B, C, H, W, k, k)`` and *views* that as ``(B, H*W, C, k, k)``
  without moving the channel axis, so "patch" ``q`` holds ``C * k * k``
  consecutive values of the channel-major map (mostly one channel at
  neighbouring positions), not position ``q``'s neighbourhood. It also lets hole
  candidates into the softmax with score 0 and divides the paste by 9 whatever
  ``k`` is. Needed to reproduce checkpoints that the official code trained.
* ``"spatial"``: what the method describes: patch ``q`` is the neighbourhood of
  position ``q``; hole candidates are left out of the softmax (an image without
  a known candidate gets zeros); the paste is divided by ``k * k``.

All arrays are NHWC; ``stride`` 1 only (the official module crashes for other
strides: its score map must be ``H*W`` candidates by ``H*W`` targets).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

PATCH_ORDERS = ("reference", "spatial")
SCORE_SCALE = 10.0   # the official softmax temperature (scores times 10)
NORM_EPS = 1e-4      # the official lower bound of a patch norm


def _patches(x, k):
    """Every position's zero-padded k x k neighbourhood: (B, H, W, C) -> (B, H, W, k, k, C)."""
    p = k // 2
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    rows = [jnp.stack([xp[:, i:i + h, j:j + w] for j in range(k)], axis=3) for i in range(k)]
    return jnp.stack(rows, axis=3)


def _reference_order(patches):
    """The official layout: (B, H, W, k, k, C) -> (B, H*W, k, k, C) where "patch" q is
    row q of the channel-major (B, C, H, W, k, k) array reshaped to (B, H*W, C, k, k)."""
    b, h, w, k, _, c = patches.shape
    nchw = jnp.transpose(patches, (0, 5, 1, 2, 3, 4)).reshape(b, h * w, c, k, k)
    return jnp.transpose(nchw, (0, 1, 3, 4, 2))


def _diagonal_sum(scores, k):
    """out[q, t] = sum_d scores[q + d - k//2, t + d - k//2] (zero outside): (B, N, N)."""
    p, n = k // 2, scores.shape[-1]
    padded = jnp.pad(scores, ((0, 0), (p, p), (p, p)))
    return sum(padded[:, d:d + n, d:d + n] for d in range(k))


def _fuse(scores, h, w, k):
    """The official fuse: diagonal sums in row-major, then in column-major order."""
    b = scores.shape[0]
    transposed = lambda s, a, c: s.reshape(b, a, c, a, c).transpose(0, 2, 1, 4, 3).reshape(b, -1, a * c)
    scores = _diagonal_sum(scores, k)
    scores = _diagonal_sum(transposed(scores, h, w), k)
    return transposed(scores, w, h)


def hole_counts(hole, size):
    """Hole positions in each zero-padded ``size x size`` window: (B, H, W) -> (B, H, W)."""
    return _patches(hole.astype(jnp.float32)[..., None], size).sum(axis=(3, 4, 5))


def known_candidates(hole, patch_size, mask_thred):
    """(B, H, W) bool hole -> (B, H*W) bool: at most ``mask_thred`` hole positions
    in the zero-padded ``patch_size`` window (the official ``mm``: mean <= thred / k^2)."""
    return (hole_counts(hole, patch_size) <= mask_thred).reshape(hole.shape[0], -1)


def soft_shift(decoded, encoded, hole, *, patch_size=3, mask_thred=1, fuse=False, stride=1,
               patch_order="spatial"):
    """Patch soft shift (see the module docstring).

    Args:
      decoded: (B, H, W, C) decoder features ("former").
      encoded: (B, H, W, C) encoder features ("latter"), the patches mixed in.
      hole: (B, H, W) bool (or 0/1), True = missing at this resolution.
      patch_size: odd k (the official ``shift_sz``; 3 in its examples).
      mask_thred: a candidate patch may hold at most this many hole positions.
      fuse: the official ``fuse`` (diagonal score fusion).
      stride: 1 (the only value the official code runs).
      patch_order: ``"reference"`` or ``"spatial"``.

    Returns:
      (B, H, W, C): the pasted mix at every position.
    """
    if patch_order not in PATCH_ORDERS:
        raise ValueError(f"patch_order must be one of {PATCH_ORDERS}, got {patch_order!r}")
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be odd and positive, got {patch_size}")
    if stride != 1:
        raise ValueError(f"soft shift stride must be 1 (the official code crashes for "
                         f"others), got {stride}")
    if decoded.shape != encoded.shape or hole.shape != decoded.shape[:3]:
        raise ValueError(f"decoded {decoded.shape}, encoded {encoded.shape} and hole "
                         f"{hole.shape} must share (B, H, W)")
    hole = jnp.asarray(hole)
    hole = hole if hole.dtype == jnp.bool_ else hole > 0.5
    b, h, w, c = encoded.shape
    k, n = patch_size, h * w
    dtype = decoded.dtype
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT

    windows = _patches(encoded, k)                                  # (B, H, W, k, k, C)
    windows = (_reference_order(windows) if patch_order == "reference"
               else windows.reshape(b, n, k, k, c)).reshape(b, n, k * k * c)
    norms = jnp.sqrt(jnp.sum(jnp.square(windows.astype(jnp.float32)), axis=-1, keepdims=True))
    normalised = (windows / jnp.maximum(norms, NORM_EPS)).astype(dtype)
    targets = _patches(decoded, k).reshape(b, n, k * k * c)
    scores = jnp.einsum("bqf,btf->bqt", normalised, targets, precision=precision,
                        preferred_element_type=jnp.float32)       # (B, candidates, targets)
    if fuse:
        scores = _fuse(scores, h, w, k)

    known = known_candidates(hole, k, mask_thred)[..., None]      # (B, N, 1)
    if patch_order == "reference":
        # Hole candidates keep score 0 inside the softmax, then are zeroed.
        weights = jax.nn.softmax(SCORE_SCALE * scores * known, axis=1) * known
        overlap = 9.0
    else:
        weights = jax.nn.softmax(jnp.where(known, SCORE_SCALE * scores, -jnp.inf), axis=1)
        weights = jnp.where(jnp.any(known, axis=1, keepdims=True), weights, 0.0)
        overlap = float(k * k)

    mixed = jnp.einsum("bqt,bqf->btf", weights.astype(dtype), windows, precision=precision,
                       preferred_element_type=jnp.float32)        # (B, targets, k*k*C)
    mixed = mixed.reshape(b, h, w, k, k, c)
    # Overlap-add (the transposed conv): target t's tap (i, j) lands on t + (i, j) - k//2.
    p = k // 2
    out = jnp.zeros((b, h + 2 * p, w + 2 * p, c), jnp.float32)
    for i in range(k):
        for j in range(k):
            out = out.at[:, i:i + h, j:j + w].add(mixed[:, :, :, i, j])
    return (out[:, p:p + h, p:p + w] / overlap).astype(dtype)
