"""Adversarial losses against the official GANLoss / cal_gradient_penalty
(tests/fixtures/gan_losses.npz, made by tools/make_loss_fixtures.py), and in the train step."""

import jax
import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES, nhwc

from shiftnet_jax.nets.discriminators import Discriminator
from shiftnet_jax.train import losses

FIXTURE = np.load(IN_REPO_FIXTURES / "gan_losses.npz")
REAL, FAKE = nhwc(FIXTURE["real_logits"]), nhwc(FIXTURE["fake_logits"])


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-12))


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


def _discriminator_tree(prefix):
    """The fixture's NLayerDiscriminator arrays under ``prefix`` (weights or their
    gradients) in our Discriminator's tree."""
    arrays = {k[len(prefix):]: FIXTURE[k] for k in FIXTURE.files if k.startswith(prefix)}
    conv = lambda w: np.transpose(w, (2, 3, 1, 0))  # noqa: E731
    tree = {}
    for i, index in enumerate((0, 2, 5, 8, 11)):
        tree[f"conv_{i}"] = {"kernel": conv(arrays[f"model.{index}.weight"]),
                             "bias": arrays[f"model.{index}.bias"]}
        if 0 < i < 4:
            tree[f"norm_{i}"] = {"scale": arrays[f"model.{index + 1}.weight"],
                                 "bias": arrays[f"model.{index + 1}.bias"]}
    return tree


def test_gradient_penalty_and_its_gradient_match_the_official_code():
    d = Discriminator(ndf=2, n_layers=3, norm="instance", spectral_norm=False)
    params = _discriminator_tree("gp_state/")
    real, fake = nhwc(FIXTURE["gp_real"]), nhwc(FIXTURE["gp_fake"])

    def penalty(p):
        return losses.gradient_penalty(lambda x: d.apply({"params": p}, x), real, fake,
                                       FIXTURE["gp_alpha"])

    value, grads = jax.value_and_grad(penalty)(params)
    assert rel(value, FIXTURE["gp_value"]) < 1e-5
    expected = _discriminator_tree("gp_grad/")
    largest = max(np.linalg.norm(g) for g in jax.tree.leaves(expected))
    for path, got, ref in zip(jax.tree.leaves_with_path(expected), jax.tree.leaves(grads),
                              jax.tree.leaves(expected)):
        scale = max(np.linalg.norm(ref), 1e-2 * largest)
        assert np.linalg.norm(np.asarray(got) - ref) / scale < 1e-3, jax.tree_util.keystr(path[0])
