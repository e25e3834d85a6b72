"""The generator variants beyond parity: convert (detection, --variant), load and inpaint
each; the name mapping both ways; the soft shift's properties and where it differs
from the official code on purpose."""

import hostile_checkpoints as hostile
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES, key
from hypothesis import given, settings
from hypothesis import strategies as st
from test_variants_parity import OFFICIAL_FACE, load_variant, rel

from shiftnet_jax import checkpoint
from shiftnet_jax.convert import main
from shiftnet_jax.inference import predict
from shiftnet_jax.inference.inpaint import inpaint_image
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.soft_shift import soft_shift
from shiftnet_jax.torchfile.state_dicts import from_torch_state_dict, to_torch_state_dict

# case -> (the official generator the converter reports, the flags that make it exact)
CONVERSIONS = {
    "res": ("res_unet_shift_triple", []),
    "patch_soft": ("patch_soft_unet_shift_triple", ["--variant", "patch_soft", "--shift-sz", "3",
                                         "--fuse", "1"]),
    "res_patch_soft": ("res_patch_soft_unet_shift_triple", ["--variant", "res_patch_soft_unet_shift_triple",
                                                 "--shift-sz", "3", "--mask-thred", "2"]),
    "face": ("face_unet_shift_triple", []),
    "spectral": ("unet_shift_triple", []),   # spectral norm: weight_orig/_u/_v keys
}


def _pth(name, tmp_path):
    """The case's official state dict as a zip checkpoint (the res_batch case: the legacy
    file torch itself wrote)."""
    if name == "res_batch":
        return IN_REPO_FIXTURES / "variant_res_batch_legacy.pth"
    path = tmp_path / f"{name}.pth"
    hostile.write_state_dict(path, load_variant(name)["state"])
    return path


@pytest.mark.parametrize("name", [*CONVERSIONS, "res_batch"])
def test_convert_detects_loads_and_inpaints_each_variant(name, tmp_path, capsys):
    found, flags = CONVERSIONS.get(name, CONVERSIONS["res"])
    out = tmp_path / "converted"
    assert main([str(_pth(name, tmp_path)), str(out), *flags]) == 0
    printed = capsys.readouterr().out
    assert f"found {found}" in printed
    if found == "res_unet_shift_triple":
        assert "--variant res_patch_soft" in printed   # which has the same keys
    model, variables, config = checkpoint.load_generator(out)
    # convert's default for the face variant is the official face shift (--flip-fill reference).
    case = load_variant(OFFICIAL_FACE if name == "face" else name)
    assert config["model"].get("variant", "shift") == str(case["meta_variant"])
    if name == "res_batch":
        assert config["model"]["norm"] == "batch"
    assert config["model"].get("spectral_norm", False) == (name == "spectral")
    # The checkpoint reproduces the official output (first image, through the jitted
    # prediction that inpaint uses: one compilation for both)...
    output = predict.forward(model, variables, case["image"][:1], case["hole"][:1]).output
    if "output" in case:
        assert rel(output, np.moveaxis(case["output"][:1], 1, -1)) < 1e-4
    else:
        lo, hi = case["meta_crop"]
        assert rel(output[:, lo:hi, lo:hi], np.moveaxis(case["output_crop"], 1, -1)) < 1e-4
    # ...and inpaints a photo, exactly outside the hole.
    size = case["image"].shape[1]
    photo = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = np.zeros(photo.shape[:2], bool)
    mask[size // 3:size // 2, size // 4:size // 2] = True
    filled = inpaint_image(model, variables, photo, mask, size=size)
    assert filled.shape == photo.shape and (filled[mask] != photo[mask]).any()
    np.testing.assert_array_equal(filled[~mask], photo[~mask])


def test_convert_refuses_a_variant_the_keys_do_not_have_in_one_line(tmp_path, capsys):
    path = _pth("res", tmp_path)
    assert main([str(path), str(tmp_path / "o"), "--variant", "patch_soft"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path.name}: ")
    assert "res_unet_shift_triple" in err and "res_patch_soft" in err
    assert main([str(path), str(tmp_path / "o"), "--variant", "nope"]) == 1
    assert "unknown variant 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("variant, norm", [("res", "batch"), ("face", "instance"),
                                           ("res_patch_soft", "instance")])
def test_name_mapping_round_trips(variant, norm):
    num_downs = 8 if variant == "face" else 5
    kwargs = dict(ngf=2, num_downs=num_downs, norm=norm, shift_layer=3, output_channels=3,
                  variant=variant)
    size = 2 ** num_downs
    image, hole = jnp.zeros((1, size, size, 3)), jnp.zeros((1, size, size, 1))
    variables = jax.eval_shape(ShiftNetGenerator(**kwargs).init, key(0), image, hole)
    leaves, tree = jax.tree.flatten(variables)
    rng = np.random.default_rng(0)
    variables = jax.tree.unflatten(tree, [np.abs(rng.normal(size=x.shape)).astype(np.float32)
                                          for x in leaves])
    state = to_torch_state_dict(kwargs, variables)
    if variant == "face":
        assert state["e3_c.weight"].shape == (8, 4, 6, 6) and "d8_dc.weight" in state
    if norm == "batch":
        state["model.model.1.model.2.num_batches_tracked"] = np.array(3)
    back_kwargs, back = from_torch_state_dict(state, variant=variant)
    assert back_kwargs == kwargs
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)


def test_model_refuses_options_no_variant_runs():
    image, hole = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 32, 1))
    for kwargs, message in [(dict(variant="nope"), "variant must be one of"),
                            (dict(shift_sz=2), "odd"), (dict(stride=2), "stride must be 1"),
                            (dict(variant="face", shift_layer=4), "face variant")]:
        with pytest.raises(ValueError, match=message):
            ShiftNetGenerator(ngf=2, num_downs=5, **kwargs).init(key(0), image, hole)


# ---------------------------------------------------------------- the soft shift itself
# Shapes from a short list: each new shape costs compilations.
features = st.tuples(st.sampled_from([(1, 3, 4), (3, 4, 4)]), st.integers(0, 2 ** 31 - 1))


@settings(max_examples=12, deadline=None)
@given(features, st.sampled_from([1, 3]), st.booleans())
def test_spatial_soft_shift_mixes_only_known_neighbourhoods(shape, k, fuse):
    """Spatial order: every output is a convex mix of known k x k neighbourhoods (its
    softmax weights sum to 1 over known candidates); with no known candidate, zeros.
    (mask_thred 0: a candidate holds no hole position. The official default 1 lets a
    patch hold one, so with k = 1 every position is a candidate.)"""
    (c, h, w), seed = shape
    rng = np.random.default_rng(seed)
    encoded = rng.normal(size=(1, h, w, c)).astype(np.float32)
    decoded = rng.normal(size=(1, h, w, c)).astype(np.float32)
    hole = np.zeros((1, h, w), bool)
    hole[0, h // 2, w // 2] = True
    out = np.asarray(soft_shift(decoded, encoded, hole, patch_size=k, fuse=fuse, mask_thred=0))
    assert out.shape == encoded.shape and np.isfinite(out).all()
    if k == 1:   # no overlap: a convex combination of known features, channel by channel
        known = encoded[0][~hole[0]]
        assert (out[0] <= known.max(axis=0) + 1e-5).all()
        assert (out[0] >= known.min(axis=0) - 1e-5).all()
    everything = np.ones_like(hole)
    assert not np.asarray(soft_shift(decoded, encoded, everything, patch_size=k,
                                     mask_thred=0)).any()


def test_spatial_soft_shift_copies_a_clear_winner_and_the_official_order_does_not():
    """One known position whose feature matches the hole's decoder feature far better
    than the others: the spatial soft shift copies it (softmax of 10 x cosine); the
    official patch order builds its "patches" from channel-major memory, so what it
    mixes is not that feature."""
    c, h, w = 4, 4, 4
    rng = np.random.default_rng(1)
    encoded = np.abs(rng.normal(size=(1, h, w, c))).astype(np.float32) * 0.01
    target = np.array([5.0, 0.0, 0.0, 0.0], np.float32)
    encoded[0, 0, 3] = target
    decoded = np.zeros((1, h, w, c), np.float32)
    decoded[0, 2, 2] = 100 * target          # a hole position, scores 10 x 100 apart
    hole = np.zeros((1, h, w), bool)
    hole[0, 2, 2] = True
    spatial = np.asarray(soft_shift(decoded, encoded, hole, patch_size=1, mask_thred=0))
    np.testing.assert_allclose(spatial[0, 2, 2], target, rtol=1e-4)
    official = np.asarray(soft_shift(decoded, encoded, hole, patch_size=1, mask_thred=0,
                                     patch_order="reference"))
    assert rel(official[0, 2, 2] * 9, target) > 0.5
    # Why: official "patch" q is the q-th run of C values of the channel-major map
    # (here channel 0 at 4 neighbouring positions), not position q's feature.
    from shiftnet_jax.nets.soft_shift import _patches, _reference_order

    ramp = np.arange(h * w * c, dtype=np.float32).reshape(1, c, h, w).transpose(0, 2, 3, 1)
    patches = np.asarray(_reference_order(_patches(ramp, 1)))[0, :, 0, 0]   # (h*w, c)
    np.testing.assert_array_equal(patches[3], [12, 13, 14, 15])
    assert not np.array_equal(patches[3], ramp[0, 0, 3])


def test_spectral_norm_power_iteration_finds_the_largest_singular_value():
    """Training mode: one power iteration per call, u and v stored; repeated calls
    converge to W's largest singular value, and evaluation divides by u . W v."""
    import flax.linen as nn

    from shiftnet_jax.nets.layers import SpectralNorm

    class Layer(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            return SpectralNorm(nn.Conv(3, (3, 3)), name="sn")(x, train)

    x = np.random.default_rng(0).normal(size=(1, 5, 5, 2)).astype(np.float32)
    variables = Layer().init(key(0), x, False)
    conv = variables["params"]["Conv_0"]
    w = np.asarray(conv["kernel"]).reshape(-1, 3).T                 # (out, in)
    for _ in range(30):
        _, updates = Layer().apply(variables, x, True, mutable=["batch_stats"])
        variables = {**variables, **updates}
    stats = variables["batch_stats"]["sn"]
    sigma = float(stats["u"] @ w @ stats["v"])
    np.testing.assert_allclose(sigma, np.linalg.svd(w, compute_uv=False)[0], rtol=1e-4)
    expected = nn.Conv(3, (3, 3)).apply({"params": {**conv, "kernel": conv["kernel"] / sigma}}, x)
    np.testing.assert_allclose(Layer().apply(variables, x, False), expected, rtol=1e-4, atol=1e-6)


def test_convert_runs_the_face_variant_the_official_way_unless_told(tmp_path, capsys):
    """The face variant converts with the official face shift (``flip_fill`` reference;
    its outputs: test_convert_detects_loads_and_inpaints_each_variant), also under
    ``--compat official``, which refuses ``--flip-fill chosen`` in one line."""
    pth = str(_pth("face", tmp_path))
    assert main([pth, str(tmp_path / "official"), "--compat", "official"]) == 0
    config = checkpoint.read_config(tmp_path / "official")
    assert config["compat"] == "official" and config["model"]["flip_fill"] == "reference"
    capsys.readouterr()
    assert main([pth, str(tmp_path / "refused"), "--compat", "official", "--flip-fill", "chosen"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--flip-fill reference" in err
    assert not (tmp_path / "refused").exists()
    assert main([pth, str(tmp_path / "chosen"), "--flip-fill", "chosen"]) == 0
    assert checkpoint.read_config(tmp_path / "chosen")["model"]["flip_fill"] == "chosen"
