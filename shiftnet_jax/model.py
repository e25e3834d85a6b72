"""The networks, as other JAX code imports them: ``import shiftnet_jax.model``.

Example::

    from shiftnet_jax.model import ShiftNetGenerator
    model = ShiftNetGenerator(ngf=64)
    variables = model.init(jax.random.key(0), image, hole)   # image (B, H, W, 3), hole (B, H, W, 1)
    output = model.apply(variables, image, hole)            # (B, H, W, 3) in [-1, 1]

The definitions live in :mod:`shiftnet_jax.nets`.
"""

from shiftnet_jax.nets.discriminators import DenseNetDiscriminator, Discriminator
from shiftnet_jax.nets.generator import ShiftFeatures, ShiftNetGenerator
from shiftnet_jax.nets.layers import NORMS
from shiftnet_jax.nets.shift_level import VARIANTS

__all__ = ["DenseNetDiscriminator", "Discriminator", "NORMS", "ShiftFeatures",
           "ShiftNetGenerator", "VARIANTS"]
