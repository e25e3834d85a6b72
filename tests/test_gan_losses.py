"""Adversarial losses against the official GANLoss / cal_gradient_penalty
(tests/fixtures/gan_losses.npz, made by tools/make_loss_fixtures.py), and in the train step."""

import jax
import numpy as np
import pytest
from conftest import nhwc

from shiftnet_jax.nets.discriminators import Discriminator
from shiftnet_jax.train import losses
from tools.parity import discriminator_tree, gan_fixture, gradient_errors, rel

FIXTURE = gan_fixture()
REAL, FAKE = nhwc(FIXTURE["real_logits"]), nhwc(FIXTURE["fake_logits"])


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "wgan_gp", "re_s_gan", "re_avg_gan"])
def test_losses_and_their_gradients_match_the_official_code(kind):
    d_loss, d_grads = jax.value_and_grad(losses.discriminator_loss, argnums=(0, 1))(REAL, FAKE, kind)
    g_loss, g_grads = jax.value_and_grad(
        lambda r, f: losses.generator_adversarial_loss(f, kind, r), argnums=(0, 1))(REAL, FAKE)
    assert rel(d_loss, FIXTURE[f"{kind}/d_loss"]) < 1e-6
    assert rel(g_loss, FIXTURE[f"{kind}/g_loss"]) < 1e-6
    for ours, name in [(d_grads[0], "d_grad_real"), (d_grads[1], "d_grad_fake"),
                       (g_grads[0], "g_grad_real"), (g_grads[1], "g_grad_fake")]:
        expected = nhwc(FIXTURE[f"{kind}/{name}"])
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7 * np.abs(expected).max()
                                   + 1e-12)


def test_gradient_penalty_and_its_gradient_match_the_official_code():
    d = Discriminator(ndf=2, n_layers=3, norm="instance", spectral_norm=False)
    params = discriminator_tree("gp_state/")
    real, fake = nhwc(FIXTURE["gp_real"]), nhwc(FIXTURE["gp_fake"])

    def penalty(p):
        return losses.gradient_penalty(lambda x: d.apply({"params": p}, x), real, fake,
                                       FIXTURE["gp_alpha"])

    value, grads = jax.value_and_grad(penalty)(params)
    assert rel(value, FIXTURE["gp_value"]) < 1e-5
    _, worst, where = gradient_errors(grads, discriminator_tree("gp_grad/"))
    assert worst < 1e-3, where
