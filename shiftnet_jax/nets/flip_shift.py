"""The face variant (official ``face_unet_shift_triple``, ``FaceUnetGenerator``).

The official face model runs the generator twice: first on the horizontally
flipped masked image (its shift level's encoder features, ``flip_feat``, are
kept), then on the masked image, where every hole position may copy its
nearest feature from the image's own known positions *or* from the flipped
image's known positions (faces are nearly symmetric). Its encoder's third conv
is 6x6 (stride 2, padding 2; same output size as 4x4/2/1).

Here the flipped pass runs only the encoder levels it needs, and
:func:`flip_shift` is the hard shift over both candidate sets. Where the official
code (a353431) is wrong we differ, and ``tests/test_variants_parity.py`` shows it:

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

import jax
import jax.numpy as jnp

from shiftnet_jax.nets.shift import shift

FACE_CONV_LEVEL = 2   # encoder level whose conv is 6x6 (the official e3_c)


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
