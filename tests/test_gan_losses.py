"""Adversarial losses against the official GANLoss / cal_gradient_penalty
(tests/fixtures/gan_losses.npz, made by tools/make_loss_fixtures.py), and in the train step."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax import losses
from shiftnet_jax.model import Discriminator

from conftest import IN_REPO_FIXTURES, nhwc

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


def _official_discriminator_params():
    """The fixture's NLayerDiscriminator weights in our Discriminator's tree."""
    state = {k[len("gp_state/"):]: FIXTURE[k] for k in FIXTURE.files if k.startswith("gp_state/")}
    conv = lambda w: np.transpose(w, (2, 3, 1, 0))
    params = {}
    for i, index in enumerate((0, 2, 5, 8, 11)):
        params[f"conv_{i}"] = {"kernel": conv(state[f"model.{index}.weight"]),
                               "bias": state[f"model.{index}.bias"]}
        if 0 < i < 4:
            params[f"norm_{i}"] = {"scale": state[f"model.{index + 1}.weight"],
                                   "bias": state[f"model.{index + 1}.bias"]}
    return params


def test_gradient_penalty_and_its_gradient_match_the_official_code():
    d = Discriminator(ndf=2, n_layers=3, norm="instance", spectral_norm=False)
    params = _official_discriminator_params()
    real, fake = nhwc(FIXTURE["gp_real"]), nhwc(FIXTURE["gp_fake"])

    def penalty(p):
        return losses.gradient_penalty(lambda x: d.apply({"params": p}, x), real, fake,
                                       FIXTURE["gp_alpha"])

    value, grads = jax.value_and_grad(penalty)(params)
    assert rel(value, FIXTURE["gp_value"]) < 1e-5
    expected = _official_grads_tree()
    largest = max(np.linalg.norm(g) for g in jax.tree.leaves(expected))
    for path, got, ref in zip(jax.tree.leaves_with_path(expected), jax.tree.leaves(grads),
                              jax.tree.leaves(expected)):
        scale = max(np.linalg.norm(ref), 1e-2 * largest)
        assert np.linalg.norm(np.asarray(got) - ref) / scale < 1e-3, jax.tree_util.keystr(path[0])


def _official_grads_tree():
    grads = {k[len("gp_grad/"):]: FIXTURE[k] for k in FIXTURE.files if k.startswith("gp_grad/")}
    conv = lambda w: np.transpose(w, (2, 3, 1, 0))
    tree = {}
    for i, index in enumerate((0, 2, 5, 8, 11)):
        tree[f"conv_{i}"] = {"kernel": conv(grads[f"model.{index}.weight"]),
                             "bias": grads[f"model.{index}.bias"]}
        if 0 < i < 4:
            tree[f"norm_{i}"] = {"scale": grads[f"model.{index + 1}.weight"],
                                 "bias": grads[f"model.{index + 1}.bias"]}
    return tree


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from(losses.GANS))
def test_losses_are_finite_and_the_relativistic_ones_are_shift_invariant(seed, kind):
    rng = np.random.default_rng(seed)
    real, fake = (rng.normal(size=(2, 3, 3, 1)) * 30).astype(np.float32), \
        (rng.normal(size=(2, 3, 3, 1)) * 30).astype(np.float32)
    d = losses.discriminator_loss(real, fake, kind)
    g = losses.generator_adversarial_loss(fake, kind, real)
    assert np.isfinite(d) and np.isfinite(g)
    if kind in losses.RELATIVISTIC:   # only differences of logits matter
        np.testing.assert_allclose(losses.discriminator_loss(real + 5, fake + 5, kind), d,
                                   rtol=1e-4, atol=1e-4)


def test_relativistic_generator_loss_needs_real_logits():
    with pytest.raises(ValueError, match="needs real_logits"):
        losses.generator_adversarial_loss(FAKE, "re_s_gan")


def test_train_step_runs_with_the_gradient_penalty_and_the_official_extra_terms(tmp_path):
    """(One loss only: a train step takes ~15 s to compile on 2 cores. The relativistic
    losses' only train-step change is the extra real-logits forward.)"""
    from shiftnet_jax import config as config_lib
    from shiftnet_jax.train import create_state, train_step

    config = config_lib.default_config()
    config.model.update(dict(ngf=2, num_downs=5, spectral_norm=True))   # and SN on G
    config.discriminator.update(dict(ndf=2))
    config.loss.gan = "wgan_gp"
    config.loss.update(dict(hole_l1=4.0, tv=0.01, guidance_kind="l1"))   # and the other terms
    import hostile_checkpoints as hostile

    vgg_state = {k[len("vgg_state/"):]: FIXTURE[k] for k in FIXTURE.files
                 if k.startswith("vgg_state/")}
    hostile.write_state_dict(tmp_path / "vgg16.pth", vgg_state)
    config.loss.update(dict(style=0.1, content=0.01, vgg16=str(tmp_path / "vgg16.pth")))
    config_lib.validate(config)
    state = create_state(config, 32)
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32),
             "hole": np.zeros((2, 32, 32, 1), np.float32)}
    batch["hole"][:, 8:24, 8:24] = 1
    new_state, scalars = jax.jit(lambda s, b: train_step(s, b, config=config))(state, batch)
    assert all(np.isfinite(float(v)) for v in scalars.values())
    assert int(new_state.step) == 1
    for term in ("hole_l1", "tv", "style", "content"):
        assert float(scalars[term]) > 0, term


def test_discounted_hole_l1_and_tv_match_the_official_code():
    out, target = nhwc(FIXTURE["aux_output"]), nhwc(FIXTURE["aux_target"])
    hole = np.broadcast_to(nhwc(FIXTURE["aux_hole"]), out.shape[:3] + (1,)).astype(np.float32)
    value, grad = jax.value_and_grad(lambda o: losses.discounted_hole_l1(o, target, hole))(out)
    assert rel(value, FIXTURE["discounted_l1"]) < 1e-6
    assert rel(grad, nhwc(FIXTURE["discounted_l1_grad"])) < 1e-6
    value, grad = jax.value_and_grad(lambda o: losses.total_variation(o * hole))(out)
    assert rel(value, FIXTURE["tv"]) < 1e-6
    assert rel(grad, nhwc(FIXTURE["tv_grad"])) < 1e-5


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_discounted_hole_l1_sees_only_the_hole_and_discounts_its_centre(seed):
    rng = np.random.default_rng(seed)
    out, target = rng.uniform(-1, 1, (2, 16, 16, 3)), rng.uniform(-1, 1, (2, 16, 16, 3))
    hole = np.zeros((2, 16, 16, 1), np.float32)
    top, left = rng.integers(0, 8, 2)
    hole[0, top:top + 6, left:left + 5] = 1          # image 1: no hole, not counted
    changed = np.where(hole > 0, out, rng.uniform(-1, 1, out.shape))
    loss = losses.discounted_hole_l1(out, target, hole)
    np.testing.assert_allclose(losses.discounted_hole_l1(changed, target, hole), loss, rtol=1e-6)
    plain = losses.discounted_hole_l1(out, target, hole, discounting=False)
    np.testing.assert_allclose(plain, np.abs(out - target)[0][hole[0, ..., 0] > 0].mean(),
                               rtol=1e-5)
    assert loss <= plain + 1e-7                       # weights are at most 1


def test_vgg_style_and_content_match_the_official_code(tmp_path):
    import hostile_checkpoints as hostile
    from shiftnet_jax import vgg

    state = {k[len("vgg_state/"):]: FIXTURE[k] for k in FIXTURE.files if k.startswith("vgg_state/")}
    hostile.write_state_dict(tmp_path / "vgg16.pth", state)   # as a user would supply it
    params = vgg.load_vgg16(tmp_path / "vgg16.pth")
    fake, real = nhwc(FIXTURE["vgg_fake"]), nhwc(FIXTURE["vgg_real"])
    (style, content), vjp = jax.vjp(lambda f: vgg.style_and_content(params, f, real), fake)
    assert rel(style, FIXTURE["vgg_style"]) < 1e-5
    assert rel(content, FIXTURE["vgg_content"]) < 1e-5
    assert rel(vjp((1.0, 0.0))[0], nhwc(FIXTURE["vgg_style_grad"])) < 1e-4
    assert rel(vjp((0.0, 1.0))[0], nhwc(FIXTURE["vgg_content_grad"])) < 1e-4
    with pytest.raises(ValueError, match="features.0.weight"):
        vgg.vgg16_params({"classifier.0.weight": np.zeros((2, 2))})


def test_vgg_losses_without_weights_are_refused_in_one_line():
    from shiftnet_jax import config as config_lib

    config = config_lib.default_config()
    config.loss.style = 0.1
    with pytest.raises(config_lib.ConfigError, match="need 'loss.vgg16'") as e:
        config_lib.validate(config)
    assert "\n" not in str(e.value)
