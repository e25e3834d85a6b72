"""Shift-Net's losses: L1, the guidance loss, and adversarial losses for a PatchGAN
(vanilla, LSGAN, hinge, WGAN-GP, relativistic standard and average).

``L = l1 * L_1 + guidance * L_g + adversarial * L_adv`` with the paper's weights
1, 0.01 and 0.002 (Sec. 3.3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shiftnet_jax.nets.layers import wide

GANS = ("vanilla", "lsgan", "hinge", "wgan_gp", "re_s_gan", "re_avg_gan")
GUIDANCE_KINDS = ("mse", "l1")   # the official --constrain
# Losses whose generator side also needs the discriminator's logits on real images.
RELATIVISTIC = ("re_s_gan", "re_avg_gan")

def l1(output, target):
    """Mean absolute error over the whole image. (B, H, W, C) -> scalar."""
    dtype = wide(output.dtype)
    return jnp.mean(jnp.abs(output.astype(dtype) - target.astype(dtype)))


def discounted_hole_l1(output, target, hole, *, gamma: float = 0.9, discounting: bool = True):
    """The official hole reconstruction loss (``Discounted_L1``, weight ``mask_weight_G``).

    The official code crops each centre or rectangular hole and takes the L1 of
    ``template * output`` against ``template * target`` over the crop, with DeepFill's
    template ``max(gamma**min(i, h - i), gamma**min(j, w - j))`` at row i, column j
    of an h x w hole (1 on its top and left border, gamma on the others). Here the
    template is laid over each image's hole bounding box and only hole pixels count,
    which is the same for rectangular holes and defined for any hole.

    Args:
      output, target: (B, H, W, C). hole: (B, H, W, 1) or (B, H, W), 1 = missing.
      discounting: False gives a plain L1 over the hole (the official ``--discounting 0``).
    Returns:
      scalar: mean over images with a hole of the mean over their hole pixels and channels.
    """
    hole = jnp.asarray(hole).reshape(output.shape[:3]) > 0.5
    if discounting:
        rows, cols = jnp.any(hole, axis=2), jnp.any(hole, axis=1)          # (B, H), (B, W)
        top = jnp.argmax(rows, axis=1)[:, None, None]
        left = jnp.argmax(cols, axis=1)[:, None, None]
        height = (rows.shape[1] - jnp.argmax(rows[:, ::-1], axis=1))[:, None, None] - top
        width = (cols.shape[1] - jnp.argmax(cols[:, ::-1], axis=1))[:, None, None] - left
        i = jnp.arange(hole.shape[1])[None, :, None] - top
        j = jnp.arange(hole.shape[2])[None, None, :] - left
        weight = jnp.maximum(gamma ** jnp.minimum(i, height - i).astype(jnp.float32),
                             gamma ** jnp.minimum(j, width - j).astype(jnp.float32))
    else:
        weight = jnp.ones(hole.shape, jnp.float32)
    weight = jnp.where(hole, weight, 0.0)[..., None]
    diff = jnp.abs(output.astype(jnp.float32) - target.astype(jnp.float32)) * weight
    count = jnp.sum(hole, axis=(1, 2)) * output.shape[-1]
    per_image = jnp.sum(diff, axis=(1, 2, 3)) / jnp.maximum(count, 1)
    has_hole = count > 0
    return jnp.sum(jnp.where(has_hole, per_image, 0.0)) / jnp.maximum(jnp.sum(has_hole), 1)


def total_variation(x):
    """The official ``TVLoss`` (weight 1): ``2 (sum dy^2 / count_y + sum dx^2 / count_x) / B``
    with ``count`` the number of differences per image. x: (B, H, W, C) -> scalar. (The
    official code applies it to ``output * hole``.)"""
    x = x.astype(wide(x.dtype))
    dy, dx = x[:, 1:] - x[:, :-1], x[:, :, 1:] - x[:, :, :-1]
    count_y, count_x = dy[0].size, dx[0].size
    return 2 * (jnp.sum(dy * dy) / count_y + jnp.sum(dx * dx) / count_x) / x.shape[0]


def guidance(decoded, target, hole, kind: str = "mse"):
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
    diff = decoded.astype(jnp.float32) - target
    # kind: the official --constrain, "mse" (default) or "l1".
    if kind not in GUIDANCE_KINDS:
        raise ValueError(f"guidance kind must be one of {GUIDANCE_KINDS}, got {kind!r}")
    error = (jnp.square(diff) if kind == "mse" else jnp.abs(diff)) * weight
    count = jnp.sum(weight) * decoded.shape[-1]
    return jnp.sum(error) / jnp.maximum(count, 1.0)


def _bce(logits, real: bool):
    """Binary cross-entropy of logits against an all-real (1) or all-fake (0) target."""
    return jnp.mean(jax.nn.softplus(-logits if real else logits))


def discriminator_loss(real_logits, fake_logits, kind: str = "vanilla"):
    """What the discriminator minimises (logits of any shape, e.g. PatchGAN maps).

    vanilla / lsgan / hinge: real -> 1, fake -> 0, averaged over the two halves.
    wgan_gp: ``mean(fake) - mean(real)`` (add ``gp_lambda *`` :func:`gradient_penalty`).
    re_s_gan: ``BCE(real - fake, 1)``; re_avg_gan: ``(BCE(real - mean(fake), 1) +
    BCE(fake - mean(real), 0)) / 2`` (relativistic GANs, Jolicoeur-Martineau 2018).
    """
    if kind == "vanilla":
        return 0.5 * (_bce(real_logits, True) + _bce(fake_logits, False))
    if kind == "lsgan":
        return 0.5 * (jnp.mean(jnp.square(real_logits - 1)) + jnp.mean(jnp.square(fake_logits)))
    if kind == "hinge":
        return 0.5 * (jnp.mean(jax.nn.relu(1 - real_logits)) + jnp.mean(jax.nn.relu(1 + fake_logits)))
    if kind == "wgan_gp":
        return jnp.mean(fake_logits) - jnp.mean(real_logits)
    if kind == "re_s_gan":
        return _bce(real_logits - fake_logits, True)
    if kind == "re_avg_gan":
        return _relativistic_average(real_logits, fake_logits, real_target=True)
    raise ValueError(f"gan must be one of {GANS}, got {kind!r}")


def _relativistic_average(real_logits, fake_logits, real_target: bool):
    """``(BCE(real - mean(fake), real_target) + BCE(fake - mean(real), not real_target)) / 2``:
    re_avg_gan's D loss (``real_target`` True) and G loss (False)."""
    return 0.5 * (_bce(real_logits - jnp.mean(fake_logits), real_target)
                  + _bce(fake_logits - jnp.mean(real_logits), not real_target))


def generator_adversarial_loss(fake_logits, kind: str = "vanilla", real_logits=None):
    """What the generator minimises: make the discriminator call fakes real.

    ``real_logits`` (the discriminator's on the real images) are needed for the
    relativistic losses (:data:`RELATIVISTIC`): re_s_gan ``BCE(fake - real, 1)``,
    re_avg_gan ``(BCE(real - mean(fake), 0) + BCE(fake - mean(real), 1)) / 2``.
    """
    if kind in RELATIVISTIC and real_logits is None:
        raise ValueError(f"the {kind} generator loss needs real_logits")
    if kind == "vanilla":
        return _bce(fake_logits, True)
    if kind == "lsgan":
        return jnp.mean(jnp.square(fake_logits - 1))
    if kind in ("hinge", "wgan_gp"):
        return -jnp.mean(fake_logits)
    if kind == "re_s_gan":
        return _bce(fake_logits - real_logits, True)
    if kind == "re_avg_gan":
        return _relativistic_average(real_logits, fake_logits, real_target=False)
    raise ValueError(f"gan must be one of {GANS}, got {kind!r}")


def gradient_penalty(critic, real, fake, alpha, constant: float = 1.0, has_aux: bool = False):
    """WGAN-GP's penalty (Gulrajani et al. 2017), as the official ``cal_gradient_penalty``
    ("mixed"): ``mean_b (|d critic / d x_b + 1e-16|_2 - constant)^2`` at
    ``x_b = alpha_b real_b + (1 - alpha_b) fake_b``.

    Args:
      critic: images (B, H, W, C) -> logits (any shape); its sum is differentiated.
        With ``has_aux``: -> (logits, aux), e.g. the critic's updated statistics.
      real, fake: (B, H, W, C); no gradient flows into ``fake`` (it is the generator's).
      alpha: (B,) mixing weights in [0, 1], one per image.
    Returns:
      scalar (times ``gp_lambda`` in the discriminator's loss); (scalar, aux) with ``has_aux``.
    """
    alpha = alpha.astype(real.dtype)[:, None, None, None]
    mixed = alpha * real + (1 - alpha) * jax.lax.stop_gradient(fake)

    def summed(x):
        logits, aux = critic(x) if has_aux else (critic(x), None)
        return jnp.sum(logits.astype(wide(logits.dtype))), aux

    grads, aux = jax.grad(summed, has_aux=True)(mixed)
    # The official code adds 1e-16 to every element before the norm (no NaN gradient at 0).
    norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1) + 1e-16), axis=1))
    penalty = jnp.mean(jnp.square(norms - constant))
    return (penalty, aux) if has_aux else penalty
