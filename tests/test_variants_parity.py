"""Parity of the generator variants with the official code (tests/fixtures/variant_*.npz,
made by tools/make_variant_fixtures.py: res, res with BatchNorm, patch soft, res patch
soft, face, the plain one with --add_mask2input 0 and with --use_spectral_norm_G 1), and the documented differences where the official code is wrong."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES, assert_gradients_match, nhwc

from shiftnet_jax.nets.flip_shift import flip_shift
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.soft_shift import soft_shift
from shiftnet_jax.torchfile.state_dicts import from_torch_state_dict

CASES = ("res", "res_batch", "patch_soft", "res_patch_soft", "face", "rgb_input", "spectral")


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@functools.cache
def load_variant(name):
    """The fixture of one case, NHWC, with the model the converter builds for it."""
    z = np.load(IN_REPO_FIXTURES / f"variant_{name}.npz")
    ref = {k: z[k] for k in z.files if not k.startswith(("state/", "grad/"))}
    state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
    grad = {k[len("grad/"):]: z[k] for k in z.files if k.startswith("grad/")}
    variant = str(z["meta_variant"])
    # The soft variants have the keys of the hard ones: the variant must be named.
    kwargs, variables = from_torch_state_dict(state, variant=variant)
    assert kwargs.get("variant", "shift") == variant
    kwargs.update(shift_sz=int(z["meta_shift_sz"]), mask_thred=int(z["meta_mask_thred"]),
                  fuse=bool(z["meta_fuse"]),
                  patch_order="reference" if "soft" in variant else "spatial")
    image = (z["input_gt_u8"] / 127.5 - 1).astype(np.float32)
    return dict(ref, kwargs=kwargs, variables=variables, state=state, grad=grad,
                image=nhwc(image), hole=nhwc(z["mask"]).astype(np.float32),
                weights=nhwc(z["loss_weights"]).astype(np.float32))


@functools.cache
def compiled(kwargs_items):
    """One jitted function per architecture (compiling dominates on CPU): the gradient
    of sum(output * R) and, as its auxiliary, the output and the shift features."""
    model = ShiftNetGenerator(**dict(kwargs_items))

    def loss(v, x, h, r):
        output, features = model.apply(v, x, h, return_features=True)
        return jnp.sum(output * r), (output, features)

    return jax.jit(jax.grad(loss, has_aux=True))


@functools.cache
def run(name):
    """(gradients, output, features) of one case."""
    case = load_variant(name)
    fn = compiled(tuple(sorted(case["kwargs"].items())))
    return fn(case["variables"], case["image"], case["hole"], case["weights"])


def output_errors(case, output):
    """Relative output error; the face fixture keeps the hole square and the R-weighted
    row and column sums of its 256x256 output (the whole does not compress)."""
    if "output" in case:
        return {"output": rel(output, nhwc(case["output"]))}
    lo, hi = case["meta_crop"]
    weighted = np.asarray(output) * case["weights"]
    return {"hole square": rel(output[:, lo:hi, lo:hi], nhwc(case["output_crop"])),
            "row sums": rel(weighted.sum(axis=2), np.moveaxis(case["output_rows"], 1, -1)),
            "column sums": rel(weighted.sum(axis=1), np.moveaxis(case["output_cols"], 1, -1))}


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_the_official_code(name):
    case = load_variant(name)
    _, (output, features) = run(name)
    # Trained with --add_mask2input 0, the first conv reads RGB only: the converter sees it.
    assert case["kwargs"].get("add_mask2input", True) == (name != "rgb_input")
    for what, error in output_errors(case, output).items():
        assert error < 1e-4, (what, error)
    np.testing.assert_array_equal(np.asarray(features.hole), case["feature_mask"])
    shift_in = np.concatenate([features.decoded, features.encoded], axis=-1)
    assert rel(shift_in, nhwc(case["shift_in"])) < 1e-5


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_the_official_code(name):
    case = load_variant(name)
    grads, _ = run(name)
    _, expected = from_torch_state_dict(case["grad"], variant=case["kwargs"].get("variant"))
    grads = {"params": grads["params"]}
    assert jax.tree.structure(grads) == jax.tree.structure(expected)
    assert_gradients_match(grads, expected)


def test_soft_shift_alone_matches_on_the_official_features():
    case = load_variant("patch_soft")
    shift_in, c = nhwc(case["shift_in"]), case["shift_in"].shape[1] // 2
    k = case["kwargs"]
    shifted = soft_shift(shift_in[..., :c], shift_in[..., c:], case["feature_mask"].astype(bool),
                         patch_size=k["shift_sz"], mask_thred=k["mask_thred"], fuse=k["fuse"],
                         patch_order="reference")
    # The layer's output is [decoded, encoded, shifted].
    assert rel(shifted, nhwc(case["shift_out"])[..., 2 * c:]) < 1e-5


def test_face_shift_copies_one_feature_per_hole_position_unlike_the_official():
    """The official face shift sets its transition matrix with
    ``ind[selected_holes, all_chosen_sources] = 1`` (a broadcast), so every hole
    position receives the sum of all chosen sources: the fixture's 64 hole positions
    all get one and the same vector. Ours copies, per position, the own or flipped
    candidate of highest cosine, and matches the official network everywhere else."""
    case = load_variant("face")
    c = case["shift_in"].shape[1] // 2
    shift_in, flipped = nhwc(case["shift_in"]), nhwc(case["flip_feat"])
    hole = case["feature_mask"].astype(bool)
    official = nhwc(case["shifted_official"])[hole]
    assert len(np.unique(official.round(6), axis=0)) == 1
    ours = np.asarray(flip_shift(shift_in[..., :c], shift_in[..., c:], flipped, hole,
                                 hole[:, :, ::-1]))
    np.testing.assert_allclose(ours, nhwc(case["shifted"]), rtol=1e-6, atol=1e-7)
    candidates = np.concatenate([shift_in[..., c:][~hole], flipped[~hole[:, :, ::-1]]])
    picked = ours[hole]
    assert len(np.unique(picked.round(6), axis=0)) > 32
    for row in picked:   # each is exactly one candidate
        assert np.abs(candidates - row).sum(axis=1).min() == 0
    # ...the one of highest cosine with its decoder feature.
    unit = candidates / np.maximum(np.linalg.norm(candidates, axis=1, keepdims=True), 1e-8)
    best = (shift_in[..., :c][hole] @ unit.T).argmax(axis=1)
    np.testing.assert_array_equal(picked, candidates[best])


def test_variant_fixtures_are_small():
    sizes = {p.name: p.stat().st_size for p in IN_REPO_FIXTURES.glob("variant_*")}
    assert sorted(sizes) == sorted([f"variant_{c}.npz" for c in CASES]
                                   + ["variant_res_batch_legacy.pth"])
    assert max(sizes.values()) < 500_000
