"""Parity of the generator variants with the official code (tests/fixtures/variant_*.npz,
made by tools/make_variant_fixtures.py: res, res with BatchNorm, patch soft, res patch
soft, face with our flip shift and with the official one, the plain one with
--add_mask2input 0 and with --use_spectral_norm_G 1), and the documented differences
where the official code is wrong."""

import jax
import numpy as np
import pytest
from conftest import IN_REPO_FIXTURES, assert_gradients_match, nhwc

from shiftnet_jax.nets.flip_shift import flip_shift, official_flip_shift
from shiftnet_jax.nets.soft_shift import soft_shift
from tools.parity import OFFICIAL_FACE
from tools.parity import VARIANT_CASES as CASES
from tools.parity import expected_variant_gradients, load_variant, output_errors, rel
from tools.parity import run_variant as run


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
    grads, _ = run(name)
    expected = expected_variant_gradients(name)
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


def test_official_face_shift_alone_matches_the_official_function():
    """``InnerFaceShiftTripleFunction`` itself, forward and backward, on an asymmetric
    hole that covers flat index 0 (the fixture's ``face_shift/*``): the broadcast sums,
    the pairing of the k-th hole with the k-th flipped hole, the empty index 0 and the
    gradient sent to the own encoder features at the flipped sources."""
    z = np.load(IN_REPO_FIXTURES / "variant_face.npz")
    x, flipped = nhwc(z["face_shift/input"]), nhwc(z["face_shift/flip_feat"])
    hole = z["face_shift/hole"][None]
    c = x.shape[-1] // 2
    weight = float(z["face_shift/triple_weight"])

    def layer(decoded, encoded):
        shifted = official_flip_shift(decoded, encoded, flipped, hole, hole[:, :, ::-1],
                                      triple_weight=weight)
        return shifted

    shifted, vjp = jax.vjp(layer, x[..., :c], x[..., c:])
    official = nhwc(z["face_shift/output"])
    assert rel(shifted, official[..., 2 * c:]) < 1e-6
    assert len(np.unique(np.asarray(shifted)[hole].round(5), axis=0)) == 3   # own, flipped, none
    assert not np.asarray(shifted)[0, 0, 0].any()
    weights = nhwc(z["face_shift/weights"])
    grad_decoded, grad_encoded = vjp(weights[..., 2 * c:])
    official_grad = nhwc(z["face_shift/grad_input"])
    # The layer's input passes to its first two thirds unchanged: their gradient is the
    # weights' first two thirds; the shift adds to the encoded third only.
    np.testing.assert_array_equal(official_grad[..., :c], weights[..., :c])
    assert not np.asarray(grad_decoded).any()
    assert rel(np.asarray(grad_encoded) + weights[..., c:2 * c], official_grad[..., c:]) < 1e-6


def test_variant_fixtures_are_small():
    sizes = {p.name: p.stat().st_size for p in IN_REPO_FIXTURES.glob("variant_*")}
    assert sorted(sizes) == sorted([f"variant_{c}.npz" for c in CASES if c != OFFICIAL_FACE]
                                   + ["variant_res_batch_legacy.pth"])
    # The face case holds its network twice (our flip shift, the official one) at 256x256.
    assert sizes.pop("variant_face.npz") < 800_000
    assert max(sizes.values()) < 500_000
