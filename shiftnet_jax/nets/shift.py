"""The shift-connection operation of Shift-Net (Yan et al., ECCV 2018, Sec. 3.2).

For every hole position ``y`` of an image, find the known position ``x*(y)``
whose *encoder* feature is most similar (cosine) to the *decoder* feature at
``y``, and copy that encoder feature to ``y``:

    shifted[y] = encoded[x*(y)]   for y in the hole,   0 elsewhere.

With ``P`` the one-hot shift matrix (one 1 per hole row), ``shifted = P @ encoded``,
and the paper's gradient is ``d encoded = triple_weight * P.T @ d shifted``;
nothing flows through the argmax (``d decoded = 0``). That is what the
``jax.custom_vjp`` below implements. ``P`` is never materialised: the forward
keeps the argmax indices, the backward scatters with them.

All arrays are NHWC. Unlike the reference PyTorch code, each image of a batch
may have its own hole (any number of positions, also none), zero feature
vectors give no NaN, and an image without any known position yields zeros.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shiftnet_jax.nets.layers import wide

# Encoded features are normalised as e / max(|e|, EPS): a zero vector (common
# after ReLU) then has similarity 0 with everything instead of NaN.
EPS = 1e-8

# Above this many similarity entries per image, the similarity is computed in
# column tiles with a running max/argmax (O(N*tile) memory instead of O(N^2)).
# From 64x64 maps on, tiles were also faster on CPU (BENCHMARKS.md).
DENSE_MAX_ENTRIES = 2048 * 2048
DEFAULT_TILE = 2048


def flatten_positions(x):
    """(B, H, W, ...) -> (B, H*W, ...): features (or a hole) indexed by flat position."""
    return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])


def _scores_dtype_and_precision(dtype):
    # float32 similarities use full-precision matmuls so that the argmax does not
    # depend on the backend's default (TF32 on GPUs); bf16 runs at bf16 speed.
    if dtype == jnp.float32 or dtype == jnp.float64:
        return jax.lax.Precision.HIGHEST
    return jax.lax.Precision.DEFAULT


def normalised(encoded):
    """Unit-normalise feature vectors along the last axis (zero stays zero)."""
    enc32 = encoded.astype(wide(encoded.dtype))
    norm = jnp.sqrt(jnp.sum(enc32 * enc32, axis=-1, keepdims=True))
    return (enc32 / jnp.maximum(norm, EPS)).astype(encoded.dtype)


def _dense_argmax(queries, keys, known):
    """First-index argmax of ``queries @ keys.T`` over known columns.

    queries: (B, N, C); keys: (B, M, C) unit-normalised; known: (B, M) bool.
    Returns indices (B, N) int32.
    """
    precision = _scores_dtype_and_precision(queries.dtype)
    scores = jnp.einsum("bnc,bmc->bnm", queries, keys, precision=precision,
                        preferred_element_type=wide(queries.dtype))
    scores = jnp.where(known[:, None, :], scores, -jnp.inf)
    return jnp.argmax(scores, axis=-1).astype(jnp.int32)


def _tiled_argmax(queries, keys, known, tile):
    """Same result as :func:`_dense_argmax`, in column tiles of width ``tile``.

    A running (max, argmax) pair is updated only where a later tile is strictly
    better, which keeps the first index on ties, as the dense argmax does.
    """
    b, m, c = keys.shape
    n_tiles = -(-m // tile)
    pad = n_tiles * tile - m
    keys = jnp.pad(keys, ((0, 0), (0, pad), (0, 0)))
    known = jnp.pad(known, ((0, 0), (0, pad)))
    keys = keys.reshape(b, n_tiles, tile, c).swapaxes(0, 1)
    known = known.reshape(b, n_tiles, tile).swapaxes(0, 1)
    precision = _scores_dtype_and_precision(queries.dtype)

    def step(carry, xs):
        best, best_index = carry
        tile_index, tile_keys, tile_known = xs
        scores = jnp.einsum("bnc,bmc->bnm", queries, tile_keys, precision=precision,
                            preferred_element_type=wide(queries.dtype))
        scores = jnp.where(tile_known[:, None, :], scores, -jnp.inf)
        local = jnp.argmax(scores, axis=-1)
        local_best = jnp.take_along_axis(scores, local[..., None], axis=-1)[..., 0]
        better = local_best > best
        best = jnp.where(better, local_best, best)
        best_index = jnp.where(better, local + tile_index * tile, best_index)
        return (best, best_index), None

    n = queries.shape[1]
    init = (jnp.full((b, n), -jnp.inf, wide(queries.dtype)), jnp.zeros((b, n), jnp.int32))
    (_, best_index), _ = jax.lax.scan(
        step, init, (jnp.arange(n_tiles, dtype=jnp.int32), keys, known))
    return best_index


def shift_indices(decoded, encoded, hole, *, tile=None):
    """Source position of every shifted feature.

    Args:
      decoded: (B, H, W, C) decoder features of the masked image.
      encoded: (B, H, W, C) encoder features of the masked image.
      hole: (B, H, W) bool, True = missing at this resolution.
      tile: column-tile width for the similarity; ``None`` picks dense for small
        maps and tiles of ``DEFAULT_TILE`` for large ones; ``0`` forces dense.

    Returns:
      index: (B, H*W) int32, flat index ``x*(y)`` of the chosen known position
        for every position ``y`` (meaningful only where ``valid``).
      valid: (B, H*W) bool, ``y`` is in the hole and the image has a known
        position to copy from.
    """
    if decoded.shape != encoded.shape:
        raise ValueError(f"decoded {decoded.shape} and encoded {encoded.shape} must have "
                         "the same shape")
    if hole.shape != decoded.shape[:3]:
        raise ValueError(f"hole {hole.shape} must be (B, H, W) = {decoded.shape[:3]}")
    hole = flatten_positions(hole).astype(bool)
    known = ~hole
    queries = flatten_positions(decoded)
    keys = normalised(flatten_positions(encoded))
    # Scaling a query row does not change its argmax, so the decoded features
    # need no normalisation (and a zero query stays harmless).
    n = queries.shape[1]
    if tile is None:
        tile = DEFAULT_TILE if n * n > DENSE_MAX_ENTRIES else 0
    if tile and tile < n:
        index = _tiled_argmax(queries, keys, known, tile)
    else:
        index = _dense_argmax(queries, keys, known)
    valid = hole & jnp.any(known, axis=1, keepdims=True)
    return jax.lax.stop_gradient(index), valid


def _gather(encoded_flat, index, valid):
    """shifted = P @ encoded without P: (B, N, C) gather, zero where not valid."""
    picked = jnp.take_along_axis(encoded_flat, index[..., None], axis=1)
    return jnp.where(valid[..., None], picked, jnp.zeros((), encoded_flat.dtype))


def _scatter(grad_flat, index, valid):
    """P.T @ grad: sums every hole row's gradient into its source position."""
    b, n, c = grad_flat.shape
    grad_flat = jnp.where(valid[..., None], grad_flat, jnp.zeros((), grad_flat.dtype))
    # Accumulate in float32 (or wider): many hole positions may pick the same source.
    out = jnp.zeros((b, n, c), wide(grad_flat.dtype))
    batch = jnp.arange(b)[:, None]
    out = out.at[batch, index].add(grad_flat.astype(out.dtype))
    return out.astype(grad_flat.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _shift(decoded, encoded, hole, triple_weight, tile):
    index, valid = shift_indices(decoded, encoded, hole, tile=tile)
    return _gather(flatten_positions(encoded), index, valid).reshape(encoded.shape)


def _shift_fwd(decoded, encoded, hole, triple_weight, tile):
    index, valid = shift_indices(decoded, encoded, hole, tile=tile)
    shifted = _gather(flatten_positions(encoded), index, valid).reshape(encoded.shape)
    # Residuals are the indices only: no N x N matrix is kept for the backward.
    return shifted, (index, valid, decoded, hole)


def _shift_bwd(triple_weight, tile, residuals, grad_shifted):
    index, valid, decoded, hole = residuals
    grad_encoded = _scatter(flatten_positions(grad_shifted), index, valid)
    grad_encoded = (grad_encoded * triple_weight).astype(grad_shifted.dtype)
    # The hole is boolean: its cotangent is of JAX's float0 type.
    hole_cotangent = np.zeros(hole.shape, jax.dtypes.float0)
    return (jnp.zeros_like(decoded), grad_encoded.reshape(grad_shifted.shape),
            hole_cotangent)


_shift.defvjp(_shift_fwd, _shift_bwd)


def shift(decoded, encoded, hole, *, triple_weight=1.0, tile=None):
    """The shift-connection: copy the most similar known encoder feature into the hole.

    Args:
      decoded: (B, H, W, C) decoder features of the masked image ("former").
      encoded: (B, H, W, C) encoder (skip) features of the masked image ("latter").
      hole: (B, H, W) bool (or 0/1), True = missing at this resolution. Each image
        may have its own hole.
      triple_weight: scale of the gradient sent back to ``encoded`` through the
        shift (the reference's ``triple_weight``).
      tile: see :func:`shift_indices`.

    Returns:
      shifted: (B, H, W, C), ``encoded[x*(y)]`` at hole positions ``y``, 0 elsewhere
      (all zeros for an image with an empty hole or without any known position).
    """
    hole = jnp.asarray(hole)
    if hole.dtype != jnp.bool_:
        hole = hole > 0.5
    return _shift(decoded, encoded, hole, float(triple_weight), tile)
