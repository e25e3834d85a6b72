"""Generator and discriminator: shapes, options, errors, and the state-dict mapping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import key
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax.data.masks import center_mask
from shiftnet_jax.nets.discriminators import Discriminator
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.torchfile.state_dicts import from_torch_state_dict, to_torch_state_dict


def batch(size=32, b=2, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, (b, size, size, 3)).astype(np.float32)
    hole = np.stack([center_mask(size, hole=size // 2)] * b)
    hole[1:, : size // 4] = 1.0      # a different hole for the second image
    return image, hole


@pytest.mark.parametrize("shift_layer", [2, 3, 4])
def test_shift_layer_ablation_levels(shift_layer):
    model = ShiftNetGenerator(ngf=4, num_downs=6, shift_layer=shift_layer)
    image, hole = batch(64)
    variables = jax.jit(model.init)(key(0), image, hole)
    output, features = jax.jit(lambda v: model.apply(v, image, hole, return_features=True))(
        variables)
    assert output.shape == image.shape and output.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(output)) <= 1)
    side = 64 // 2 ** shift_layer
    assert features.decoded.shape == features.encoded.shape
    assert features.decoded.shape[:3] == (2, side, side)
    assert features.hole.shape == (2, side, side) and bool(features.hole.any())
    # The up conv of the shift level reads [decoded, encoded, shifted].
    width = features.decoded.shape[-1]
    up = variables["params"][f"up_{shift_layer - 1}"]["conv"]["kernel"]
    assert up.shape[2] == 3 * width


def test_without_the_shift_is_the_plain_unet():
    """use_shift=False (the official unet_256): the shift level's up conv reads only
    [decoded, encoded], and the hole's content no longer comes from known features."""
    image, hole = batch(32)
    plain = ShiftNetGenerator(ngf=4, num_downs=5, use_shift=False)
    variables = jax.jit(plain.init)(key(0), image, hole)
    output, features = plain.apply(variables, image, hole, return_features=True)
    width = features.decoded.shape[-1]
    assert variables["params"]["up_2"]["conv"]["kernel"].shape[2] == 2 * width
    assert output.shape == image.shape and np.isfinite(np.asarray(output)).all()
    shifted = ShiftNetGenerator(ngf=4, num_downs=5)
    assert jax.jit(shifted.init)(key(0), image, hole)["params"]["up_2"]["conv"]["kernel"].shape[2] == 3 * width


def test_guidance_target_runs_only_the_encoder_levels_it_needs():
    model = ShiftNetGenerator(ngf=4, num_downs=5, shift_layer=3)
    image, hole = batch(32)
    variables = model.init(key(0), image, hole)
    needed = {k: v for k, v in variables["params"].items() if k in ("down_0", "down_1", "down_2")}
    target = model.apply({"params": needed}, image, hole, method=model.guidance_target)
    assert target.shape == (2, 4, 4, 16) and float(jnp.min(target)) >= 0
    # It is the encoder feature of the unmasked image at the shift level, after ReLU.
    skips = model.apply(variables, image, hole, zero_fill=False, method=model.encode)
    np.testing.assert_allclose(target, jax.nn.relu(skips[2]), rtol=1e-6)


def test_hole_and_image_change_the_output_as_they_should():
    model = ShiftNetGenerator(ngf=4, num_downs=5)
    image, hole = batch(32)
    variables = model.init(key(1), image, hole)
    out = model.apply(variables, image, hole)
    # Pixels inside the hole are not seen: changing them changes nothing.
    changed = np.where(hole > 0, -image, image)
    np.testing.assert_allclose(model.apply(variables, changed, hole), out, atol=1e-6)
    assert not np.allclose(model.apply(variables, image, np.zeros_like(hole)), out)


def test_bfloat16_and_batch_norm():
    image, hole = batch(32)
    model = ShiftNetGenerator(ngf=4, num_downs=5, dtype=jnp.bfloat16)
    variables = model.init(key(0), image, hole)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    f32 = ShiftNetGenerator(ngf=4, num_downs=5).apply(variables, image, hole)
    bf16 = model.apply(variables, image, hole)
    assert bf16.dtype == jnp.float32
    # A tiny random network (ngf 4) amplifies bf16 rounding; see BENCHMARKS.md for ngf 64.
    assert float(jnp.linalg.norm(bf16 - f32) / jnp.linalg.norm(f32)) < 0.15
    model = ShiftNetGenerator(ngf=4, num_downs=5, norm="batch")
    variables = model.init(key(0), image, hole)
    out, updates = model.apply(variables, image, hole, train=True, mutable=["batch_stats"])
    assert out.shape == image.shape
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"],
                           variables["batch_stats"])
    assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="group"), "norm"),
    (dict(feature_hole="bilinear"), "feature_hole"),
    (dict(shift_layer=5), "shift_layer"),
])
def test_bad_options_are_clear_errors(kwargs, message):
    image, hole = batch(32)
    with pytest.raises(ValueError, match=message):
        ShiftNetGenerator(ngf=4, num_downs=5, **kwargs).init(key(0), image, hole)


def test_bad_sizes_are_clear_errors():
    model = ShiftNetGenerator(ngf=4, num_downs=5)
    image, hole = batch(32)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*num_downs = 32"):
        model.init(key(0), image[:, :24], hole[:, :24])
    with pytest.raises(ValueError, match="hole must be"):
        model.init(key(0), image, hole[:1])


@settings(max_examples=6, deadline=None)
@given(ngf=st.sampled_from([2, 4]), num_downs=st.integers(4, 6), norm=st.sampled_from(
    ["instance", "batch"]), data=st.data())
def test_state_dict_mapping_round_trips(ngf, num_downs, norm, data):
    shift_layer = data.draw(st.integers(2, num_downs - 1))
    kwargs = dict(ngf=ngf, num_downs=num_downs, norm=norm, shift_layer=shift_layer,
                  output_channels=3)
    size = 2 ** num_downs
    image, hole = batch(size)
    variables = jax.eval_shape(ShiftNetGenerator(**kwargs).init, key(0), image, hole)
    # Distinct values everywhere, so that a swapped tensor cannot go unnoticed.
    leaves, tree = jax.tree.flatten(variables)
    rng = np.random.default_rng(0)
    variables = jax.tree.unflatten(tree, [rng.normal(size=x.shape).astype(np.float32)
                                          for x in leaves])
    if norm == "batch":
        variables["batch_stats"] = jax.tree.map(np.abs, variables["batch_stats"])
    state = to_torch_state_dict(kwargs, variables)
    if norm == "batch":   # PyTorch >= 0.4 writes these counters for BatchNorm only
        state["model.model.1.model.2.num_batches_tracked"] = np.array(7)
    back_kwargs, back = from_torch_state_dict(state)
    assert back_kwargs == kwargs
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)


def test_mapping_rejects_foreign_state_dicts():
    with pytest.raises(ValueError, match="model.model.0.weight"):
        from_torch_state_dict({"conv.weight": np.zeros((1, 1, 1, 1))})


def test_discriminator_patchgan():
    x = jnp.zeros((2, 64, 64, 3))
    for sn in (True, False):
        d = Discriminator(ndf=8, spectral_norm=sn)
        variables = jax.jit(d.init)(key(0), x)
        logits, _ = jax.jit(lambda v: d.apply(v, x, train=True, mutable=["batch_stats"]))(
            variables)
        assert logits.shape == (2, 6, 6, 1)
