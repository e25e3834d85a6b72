import jax
import jax.numpy as jnp
import numpy as np
import pytest

from shiftnet_jax.train import losses


def test_guidance_counts_only_hole_positions_and_stops_gradient_to_the_target():
    rng = np.random.default_rng(0)
    decoded = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    target = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    hole = np.zeros((2, 4, 4), bool)
    hole[0, 1:3, 1:3] = True
    expected = np.mean((decoded[hole] - target[hole]) ** 2)
    assert float(losses.guidance(decoded, target, hole)) == pytest.approx(expected, rel=1e-6)
    outside = decoded.copy()
    outside[~hole] += 5.0
    assert float(losses.guidance(outside, target, hole)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.guidance(decoded, target, np.zeros_like(hole))) == 0.0
    grad_target = jax.grad(lambda t: losses.guidance(decoded, t, hole))(target)
    assert not np.any(np.asarray(grad_target))


@pytest.mark.parametrize("kind", losses.GANS)
def test_gan_losses_reward_the_right_side(kind):
    good, bad = jnp.full((2, 3, 3, 1), 3.0), jnp.full((2, 3, 3, 1), -3.0)
    assert losses.discriminator_loss(good, bad, kind) < losses.discriminator_loss(bad, good, kind)
    # (The relativistic generator losses compare with real logits; here those are 0.)
    real = jnp.zeros_like(good)
    assert (losses.generator_adversarial_loss(good, kind, real)
            < losses.generator_adversarial_loss(bad, kind, real))


def test_known_values_and_errors():
    zeros = jnp.zeros((1, 2, 2, 1))
    assert float(losses.discriminator_loss(zeros, zeros)) == pytest.approx(np.log(2))
    assert float(losses.l1(jnp.ones((1, 2, 2, 3)), zeros)) == 1.0
    with pytest.raises(ValueError, match="gan must be one of"):
        losses.discriminator_loss(zeros, zeros, "wgan")
