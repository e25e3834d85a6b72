"""The face variant (official ``face_unet_shift_triple``, ``FaceUnetGenerator``).

The official face model runs the generator twice: first on the horizontally
flipped masked image (its shift level's encoder features, ``flip_feat``, are
kept), then on the masked image, where every hole position may copy its
nearest feature from the image's own known positions *or* from the flipped
image's known positions (faces are nearly symmetric). Its encoder's third conv
is 6x6 (stride 2, padding 2; same output size as 4x4/2/1).

Here the flipped pass runs only the encoder levels it needs, and
:func:`flip_shift` is the hard shift over both candidate sets. Where the official
code (a353431) is wrong we differ by default, and ``tests/test_variants_parity.py``
shows it (:func:`official_flip_shift`, the model option ``flip_fill="reference"``, is
the official arithmetic, for checkpoints the official code trained):

* its transition matrix is set with ``ind[selected_holes, all_sources] = 1``,
  which broadcasts to every pair, so all hole positions that chose an own
  feature receive the *sum* of every chosen source (likewise for the flipped
  ones), and a hole at flat index 0 is never filled; here each hole position
  gets exactly the feature it chose;
* its backward adds the gradient of flipped sources to the image's own encoder
  features at the flipped source's index, a position whose feature was never
  used; here the flipped features are constants (no gradient), as the official
  code intends by returning no gradient for ``flip_feat``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shiftnet_jax.nets.shift import flatten_positions, normalised, shift, shift_indices

FACE_CONV_LEVEL = 2   # encoder level whose conv is 6x6 (the official e3_c)
# How a hole position is filled: "chosen" (the feature it chose) or "reference"
# (the official code's broadcast sum, :func:`official_flip_shift`).
FLIP_FILLS = ("chosen", "reference")


def flip_shift(decoded, encoded, flipped, hole, flipped_hole, *, triple_weight=1.0, tile=None):
    """Hard shift with two candidate sets: own known features and flipped ones.

    Args:
      decoded, encoded: (B, H, W, C) decoder and encoder features of the masked image.
      flipped: (B, H, W, C) encoder features of the flipped masked image (constant).
      hole: (B, H, W) bool, the hole; flipped_hole: the hole of the flipped image there.
      triple_weight, tile: as :func:`shiftnet_jax.nets.shift.shift`.

    Returns:
      (B, H, W, C): at each hole position the candidate (own or flipped) of highest
      cosine similarity with its decoder feature (own first on exact ties); 0 elsewhere.
    """
    h = decoded.shape[1]
    # Stack both sets along H: the shift searches the known positions of the whole
    # (B, 2H, W, C) map. The queries of the lower half are zeros and their outputs
    # are dropped, so they change nothing.
    keys = jnp.concatenate([encoded, jax.lax.stop_gradient(flipped)], axis=1)
    queries = jnp.concatenate([decoded, jnp.zeros_like(decoded)], axis=1)
    holes = jnp.concatenate([hole, flipped_hole], axis=1)
    return shift(queries, keys, holes, triple_weight=triple_weight, tile=tile)[:, :h]


def _official_choices(decoded, encoded, flipped, hole, flipped_hole, tile):
    """The official face shift's choices, as (B, N) masks, N = H*W, float.

    ``own_rows`` / ``flip_rows``: hole positions that take the own / the flipped sum;
    ``own_sources`` / ``flip_sources``: every known position that some hole position
    chose (its own argmax over the own known features, its argmax over the flipped
    ones), whether or not that hole position took that side.
    """
    b, n = decoded.shape[0], decoded.shape[1] * decoded.shape[2]
    batch = jnp.arange(b)[:, None]
    queries = flatten_positions(decoded)
    zero_query = ~jnp.any(queries != 0, axis=-1)                  # (B, N)
    queries = normalised(queries)

    def best(keys, holes):
        """(score, NaN row, sources) of every query against one candidate set.

        The official cosine has no epsilon: a zero query or a zero known key makes
        0/0 = NaN, and torch.max picks the first NaN (the first known position for
        a zero query, else the first zero key), which then wins every comparison.
        """
        index, valid = shift_indices(decoded, keys, holes, tile=tile)
        known = ~flatten_positions(holes)
        zero_key = known & ~jnp.any(flatten_positions(keys) != 0, axis=-1)
        any_zero_key = jnp.any(zero_key, axis=1, keepdims=True)
        index = jnp.where(zero_query, jnp.argmax(known, axis=1)[:, None],
                          jnp.where(any_zero_key, jnp.argmax(zero_key, axis=1)[:, None], index))
        picked = jnp.take_along_axis(normalised(flatten_positions(keys)), index[..., None], axis=1)
        score = jnp.where(valid, jnp.sum(queries * picked, axis=-1), -jnp.inf)
        sources = jnp.zeros((b, n), bool).at[batch, index].max(valid)
        return score, valid & (zero_query | any_zero_key), sources

    own_score, own_nan, own_sources = best(encoded, hole)
    flip_score, flip_nan, flip_sources = best(flipped, flipped_hole)
    # The official code compares the k-th hole position's best own cosine with the
    # k-th *flipped* hole position's best flipped cosine (its queries are the decoded
    # features at the flipped hole): the same position only for a symmetric hole.
    hole_flat, flipped_flat = flatten_positions(hole), flatten_positions(flipped_hole)
    flip_rank = jnp.where(flipped_flat, jnp.cumsum(flipped_flat, axis=1) - 1, n)

    def rival(values, fill):
        by_rank = jnp.full((b, n), fill, values.dtype).at[batch, flip_rank].set(values, mode="drop")
        rank = jnp.maximum(jnp.cumsum(hole_flat, axis=1) - 1, 0)
        return jnp.take_along_axis(by_rank, rank, axis=1)

    # Ties go to the own feature (first in the official concatenation), as does a NaN
    # on the own side; a NaN on the flipped side beats any own cosine.
    own_wins = own_nan | (~rival(flip_nan, False) & (own_score >= rival(flip_score, -jnp.inf)))
    # The official selection multiplies the hole's flat index by the choice, so a hole
    # at index 0 takes neither side.
    rows = hole_flat & (jnp.arange(n) > 0)
    own_rows = rows & own_wins & (own_score > -jnp.inf)
    flip_rows = rows & ~own_wins
    dtype = encoded.dtype
    return (own_rows.astype(dtype), flip_rows.astype(dtype),
            own_sources.astype(dtype), flip_sources.astype(dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _official(decoded, encoded, flipped, hole, flipped_hole, triple_weight, tile):
    return _official_fwd(decoded, encoded, flipped, hole, flipped_hole, triple_weight, tile)[0]


def _official_fwd(decoded, encoded, flipped, hole, flipped_hole, triple_weight, tile):
    own_rows, flip_rows, own_sources, flip_sources = _official_choices(
        decoded, encoded, flipped, hole, flipped_hole, tile)
    # The transition matrices are rank one (every selected row, every chosen source).
    own_sum = jnp.einsum("bn,bnc->bc", own_sources, flatten_positions(encoded))
    flip_sum = jnp.einsum("bn,bnc->bc", flip_sources, flatten_positions(flipped))
    shifted = own_rows[..., None] * own_sum[:, None] + flip_rows[..., None] * flip_sum[:, None]
    return shifted.reshape(encoded.shape), (own_rows, flip_rows, own_sources, flip_sources,
                                            decoded, flipped, hole, flipped_hole)


def _official_bwd(triple_weight, tile, residuals, grad_shifted):
    own_rows, flip_rows, own_sources, flip_sources, decoded, flipped, hole, flipped_hole = residuals
    grad = flatten_positions(grad_shifted)
    own_grad = jnp.einsum("bn,bnc->bc", own_rows, grad)
    flip_grad = jnp.einsum("bn,bnc->bc", flip_rows, grad)
    # As the official backward: the flipped sources' gradient lands on the *own*
    # encoder features at the flipped sources' indices; the flipped features get none.
    grad_encoded = triple_weight * (own_sources[..., None] * own_grad[:, None]
                                    + flip_sources[..., None] * flip_grad[:, None])
    float0 = jax.dtypes.float0
    return (jnp.zeros_like(decoded), grad_encoded.reshape(grad_shifted.shape).astype(grad.dtype),
            jnp.zeros_like(flipped), np.zeros(hole.shape, float0),
            np.zeros(flipped_hole.shape, float0))


_official.defvjp(_official_fwd, _official_bwd)


def official_flip_shift(decoded, encoded, flipped, hole, flipped_hole, *, triple_weight=1.0,
                        tile=None):
    """The official face shift (``InnerFaceShiftTripleFunction``, a353431) as it computes.

    Each hole position compares its best own cosine with the best flipped cosine of
    the flipped hole position of the same rank; then, by the official broadcast
    ``ind[selected_holes, chosen_sources] = 1``, every hole position that took its own
    side receives the *sum* of the own features chosen by any hole position (the
    flipped side likewise), and the hole position at flat index 0 receives nothing.
    The gradient is the official backward's: ``triple_weight`` times the transposed
    matrices, both applied to the own encoder features; none to ``decoded`` or
    ``flipped``. Shapes as :func:`flip_shift`.
    """
    return _official(decoded, encoded, jax.lax.stop_gradient(flipped), hole.astype(bool),
                     flipped_hole.astype(bool), float(triple_weight), tile)
