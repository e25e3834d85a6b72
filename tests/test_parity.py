"""Parity with the reference PyTorch generator.

Every test runs on the small fixture committed in tests/fixtures (64x64, ngf=2,
made by tools/make_reference_fixture.py) and again on the larger 256x256 one in
../shared/fixtures/reference when that folder is there.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FIXTURES, IN_REPO_FIXTURES, assert_gradients_match, load_reference

from shiftnet_jax.convert import load_torch_checkpoint
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.shift import shift
from shiftnet_jax.torchfile.state_dicts import from_torch_state_dict


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@functools.cache
def compiled(kwargs_items):
    """Jitted forward (with the shift layer's features) and loss gradient for one
    architecture. Cached, and the data passed as arguments, so that cases of the
    same shapes share one compilation (most of these tests' time on CPU)."""
    model = ShiftNetGenerator(**dict(kwargs_items))
    forward = jax.jit(lambda v, x, h: model.apply(v, x, h, return_features=True))
    grad = jax.jit(jax.grad(lambda v, x, h, r: jnp.sum(model.apply(v, x, h) * r)))
    return forward, grad


@pytest.fixture(scope="module", params=["center", "irregular"])
def reference(request, parity_dir):
    ref = load_reference(parity_dir, request.param)
    kwargs, variables = from_torch_state_dict(ref["state"])
    ref["model"], ref["variables"] = ShiftNetGenerator(**kwargs), variables
    ref["forward"], ref["grad_fn"] = compiled(tuple(sorted(kwargs.items())))
    ref["kwargs"] = kwargs
    ref["shared_center"] = parity_dir == FIXTURES and request.param == "center"
    return ref


def test_mapping_infers_the_architecture(reference):
    assert reference["kwargs"] == dict(ngf=reference["ngf"], num_downs=reference["num_downs"],
                                       norm="instance", shift_layer=3, output_channels=3)


def test_forward_and_shift_layer_match(reference):
    output, features = reference["forward"](reference["variables"], reference["image"],
                                            reference["hole"])
    assert rel(output, reference["output"]) < 1e-4
    channels = features.decoded.shape[-1]
    np.testing.assert_array_equal(np.asarray(features.hole), reference["feature_mask"])
    shift_in = np.concatenate([features.decoded, features.encoded], axis=-1)
    assert rel(shift_in, reference["shift_in"]) < 1e-5
    shifted = shift(features.decoded, features.encoded, features.hole)
    assert rel(shifted, reference["shift_out"][..., 2 * channels:]) < 1e-5
    # On the reference's own inputs the shift picks exactly the same features.
    own = shift(reference["shift_in"][..., :channels], reference["shift_in"][..., channels:],
                reference["feature_mask"])
    np.testing.assert_array_equal(np.asarray(own), reference["shift_out"][..., 2 * channels:])


def test_model_builds_the_reference_input(reference):
    model, variables = reference["model"], reference["variables"]
    x, _ = model.apply(variables, jnp.asarray(reference["image"]), reference["hole"],
                       True, method=lambda m, *a: m._input(*a))
    np.testing.assert_allclose(np.asarray(x), reference["input_masked"], atol=0)


def test_gradients_match_through_the_custom_vjp(request, reference):
    if reference["shared_center"]:
        # Measured: our model run in float64 agrees with these reference gradients to
        # <= 7e-6 per tensor; in float32 it agrees to < 1e-5 (whole gradient) on the
        # other fixtures. tools/make_reference_fixture.py rejects such draws.
        request.applymarker(pytest.mark.xfail(strict=False, reason=(
            "shared centre fixture is ill-conditioned: one down_5 output lies 8e-8 of "
            "its layer's scale below 0 (float64: -2.7e-7); our float32 gives +1.0e-6, "
            "so LeakyReLU's slope flips and the gradients below it differ by 5e-3")))
    grads = reference["grad_fn"](reference["variables"], reference["image"], reference["hole"],
                                 reference["loss_weights"])
    _, expected = from_torch_state_dict(reference["grad"])
    assert jax.tree.structure(grads) == jax.tree.structure(expected)
    assert_gradients_match(grads, expected)


def test_in_repo_fixture_is_there_and_small():
    names = sorted(p.name for p in IN_REPO_FIXTURES.iterdir() if p.suffix in (".npz", ".pth")
                   and p.name.startswith(("shiftnet_ref_", "reference_")))   # (others: own tests)
    assert names == ["reference_ngf2_center.pth", "shiftnet_ref_center.npz",
                     "shiftnet_ref_irregular.npz"]
    # It is committed: keep it well under 1 MB.
    assert sum((IN_REPO_FIXTURES / n).stat().st_size for n in names) < 900_000


@pytest.mark.parametrize("where, filename", [
    ("in-repo", "reference_ngf2_center.pth"),
    ("shared", "reference_ngf8_center.pth"),
    ("shared", "reference_ngf8_center_legacy.pth"),
])
def test_pth_checkpoints_load_to_the_same_model(request, where, filename):
    directory = request.getfixturevalue("fixtures_dir") if where == "shared" else IN_REPO_FIXTURES
    ref = load_reference(directory, "center")
    kwargs, variables = load_torch_checkpoint(directory / filename)
    _, expected = from_torch_state_dict(ref["state"])
    assert kwargs["ngf"] == ref["ngf"] and kwargs["norm"] == "instance"
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(a, b)
    forward, _ = compiled(tuple(sorted(kwargs.items())))
    output, _ = forward(variables, ref["image"], ref["hole"])
    assert rel(output, ref["output"]) < 1e-4


def test_bfloat16_stays_within_its_documented_tolerance(parity_dir):
    """bf16 compute (f32 parameters): output within 5e-2 and gradients within 0.3
    relative of the float32 reference (measured: 3.5e-2 and 0.20 on the shared 256x256
    fixture, see BENCHMARKS.md; 5.4e-3 and 0.089 on the in-repo 64x64 one)."""
    ref = load_reference(parity_dir, "center")
    kwargs, variables = from_torch_state_dict(ref["state"])
    model = ShiftNetGenerator(**kwargs, dtype=jnp.bfloat16)
    output = jax.jit(model.apply)(variables, ref["image"], ref["hole"])
    assert output.dtype == jnp.float32 and rel(output, ref["output"]) < 5e-2
    grads = jax.jit(jax.grad(lambda v: jnp.sum(
        model.apply(v, ref["image"], ref["hole"]) * ref["loss_weights"])))(variables)
    _, expected = from_torch_state_dict(ref["grad"])
    assert rel(flat(grads), flat(expected)) < 0.3
