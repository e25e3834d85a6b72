"""The shift operation, as other JAX code imports it: ``from shiftnet_jax.shift import shift``.

``shift(decoded, encoded, hole)`` copies, for every hole position, the most
similar known encoder feature (cosine similarity, argmax) with the paper's
gradient; ``soft_shift`` is the official patch soft shift, ``flip_shift`` the
face variant's. Definitions: :mod:`shiftnet_jax.nets.shift` and its neighbours.
"""

from shiftnet_jax.nets.flip_shift import flip_shift
from shiftnet_jax.nets.shift import shift, shift_indices
from shiftnet_jax.nets.soft_shift import soft_shift

__all__ = ["flip_shift", "shift", "shift_indices", "soft_shift"]
