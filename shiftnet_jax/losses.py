"""Shift-Net's losses: L1, the guidance loss, and adversarial losses for a PatchGAN.

``L = l1 * L_1 + guidance * L_g + adversarial * L_adv`` with the paper's weights
1, 0.01 and 0.002 (Sec. 3.3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

GANS = ("vanilla", "lsgan", "hinge")


def l1(output, target):
    """Mean absolute error over the whole image. (B, H, W, C) -> scalar."""
    return jnp.mean(jnp.abs(output.astype(jnp.float32) - target.astype(jnp.float32)))


def guidance(decoded, target, hole):
    """The paper's guidance loss: squared error inside the hole only (Eq. 2).

    ``sum_{y in hole} |decoded_y - target_y|^2``, averaged over hole positions and
    channels so that its weight does not depend on the hole size. (The reference
    PyTorch code also penalises known positions; the paper does not.)

    Args:
      decoded: (B, h, w, C) decoder features of the masked image (ShiftFeatures.decoded).
      target: (B, h, w, C) encoder features of the ground truth; no gradient flows into it.
      hole: (B, h, w) bool, the hole at that resolution.
    Returns:
      scalar; 0 when no position is a hole.
    """
    target = jax.lax.stop_gradient(target.astype(jnp.float32))
    weight = hole.astype(jnp.float32)[..., None]
    squared = jnp.square(decoded.astype(jnp.float32) - target) * weight
    count = jnp.sum(weight) * decoded.shape[-1]
    return jnp.sum(squared) / jnp.maximum(count, 1.0)


def discriminator_loss(real_logits, fake_logits, kind: str = "vanilla"):
    """What the discriminator minimises: real -> 1, fake -> 0."""
    if kind == "vanilla":
        return 0.5 * (jnp.mean(jax.nn.softplus(-real_logits))
                      + jnp.mean(jax.nn.softplus(fake_logits)))
    if kind == "lsgan":
        return 0.5 * (jnp.mean(jnp.square(real_logits - 1)) + jnp.mean(jnp.square(fake_logits)))
    if kind == "hinge":
        return 0.5 * (jnp.mean(jax.nn.relu(1 - real_logits)) + jnp.mean(jax.nn.relu(1 + fake_logits)))
    raise ValueError(f"gan must be one of {GANS}, got {kind!r}")


def generator_adversarial_loss(fake_logits, kind: str = "vanilla"):
    """What the generator minimises: make the discriminator call fakes real."""
    if kind == "vanilla":
        return jnp.mean(jax.nn.softplus(-fake_logits))
    if kind == "lsgan":
        return jnp.mean(jnp.square(fake_logits - 1))
    if kind == "hinge":
        return -jnp.mean(fake_logits)
    raise ValueError(f"gan must be one of {GANS}, got {kind!r}")
