"""Every formulation of the 4x4 stride-2 convs computes what lax's convs compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax.nets import conv


@settings(max_examples=8, deadline=None)
@given(h=st.sampled_from([1, 2, 3, 8]), w=st.sampled_from([1, 2, 5]), seed=st.integers(0, 99))
def test_transposed_formulations_agree(h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
    k = rng.normal(size=(4, 4, 3, 5)).astype(np.float32)
    expected = np.asarray(conv.conv_transpose_lax(x, k))
    assert expected.shape == (2, 2 * h, 2 * w, 5)
    for name in ("subpixel", "subpixel_gemm", "taps"):
        np.testing.assert_allclose(conv.CONV_TRANSPOSE[name](x, k), expected, rtol=1e-5,
                                   atol=1e-5, err_msg=name)


@settings(max_examples=8, deadline=None)
@given(h=st.sampled_from([2, 4, 6]), w=st.sampled_from([2, 8]), seed=st.integers(0, 99))
def test_conv_formulations_agree(h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
    k = rng.normal(size=(4, 4, 3, 5)).astype(np.float32)
    np.testing.assert_allclose(conv.conv_im2col(x, k), conv.conv_lax(x, k), rtol=1e-5, atol=1e-5)


def test_module_gradients_agree_across_formulations():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 8, 8, 3)), jnp.float32)
    for transpose, names in ((True, ("lax", "subpixel", "subpixel_gemm", "taps")),
                             (False, ("lax", "im2col"))):
        grads = []
        for name in names:
            module = conv.Conv4x4(4, transpose=transpose, impl=name)
            variables = module.init(jax.random.key(0, impl="rbg"), x)
            grads.append(jax.grad(lambda v: jnp.sum(jnp.sin(module.apply(v, x))))(variables))
        for g in grads[1:]:
            for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(g)):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@settings(max_examples=4, deadline=None)
@given(h=st.sampled_from([1, 2, 5]), w=st.sampled_from([1, 3]), seed=st.integers(0, 99))
def test_subpixel_gemm_has_the_gradients_of_lax(h, w, seed):
    """Its backward is another formulation's (a custom VJP): input and kernel gradients
    as lax's."""
    x, k, r = _conv_transpose_case(h, w, seed)
    for got, want in zip(jax.grad(_loss(conv.conv_transpose_subpixel_gemm, r), argnums=(0, 1))(x, k),
                         jax.grad(_loss(conv.conv_transpose_lax, r), argnums=(0, 1))(x, k)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_subpixel_gemm_differentiates_twice_as_lax():
    """Reverse over reverse through the custom VJP (a gradient penalty through G would)."""
    x, k, r = _conv_transpose_case(3, 2, 0)

    def input_gradient_norm(f):
        return lambda k: jnp.sum(jnp.square(jax.grad(_loss(f, r))(x, k)))
    np.testing.assert_allclose(jax.grad(input_gradient_norm(conv.conv_transpose_subpixel_gemm))(k),
                               jax.grad(input_gradient_norm(conv.conv_transpose_lax))(k),
                               rtol=1e-4, atol=1e-4)


def _conv_transpose_case(h, w, seed):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, h, w, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(4, 4, 3, 5)), jnp.float32)
    r = jnp.asarray(rng.normal(size=(2, 2 * h, 2 * w, 5)), jnp.float32)
    return x, k, r


def _loss(f, r):
    return lambda x, k: jnp.sum(jnp.tanh(f(x, k)) * r)


def test_auto_picks_the_measured_formulation_on_cpu():
    if jax.default_backend() != "cpu":
        pytest.skip("auto is lax off CPU")
    assert [conv.choose("auto", True, s) for s in (1, 8, 16, 64, 128)] == \
        ["taps", "taps", "subpixel_gemm", "subpixel_gemm", "subpixel"]
    assert [conv.choose("auto", False, s) for s in (2, 64, 128)] == ["im2col", "im2col", "lax"]


def test_unknown_formulation_is_a_clear_error():
    with pytest.raises(ValueError, match="conv_impl must be one of"):
        conv.choose("winograd", False, 8)
    with pytest.raises(ValueError, match="not a transposed-conv formulation"):
        conv.Conv4x4(4, transpose=True, impl="im2col").init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))
