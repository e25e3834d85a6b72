"""The shift operation against a plain NumPy definition, and its custom gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax.nets.shift import shift, shift_indices


def numpy_shift(decoded, encoded, hole):
    """Definition: per image, per hole position, copy the known encoded feature of
    highest cosine similarity (first on ties); returns (shifted, P) with P one-hot."""
    b, h, w, c = encoded.shape
    n = h * w
    dec, enc, hole = decoded.reshape(b, n, c), encoded.reshape(b, n, c), hole.reshape(b, n)
    shifted = np.zeros_like(enc)
    p = np.zeros((b, n, n), np.float32)
    for i in range(b):
        known = np.flatnonzero(~hole[i])
        if known.size == 0:
            continue
        # Normalise first, so that collinear candidates tie exactly (first wins).
        norms = np.maximum(np.linalg.norm(enc[i, known], axis=-1, keepdims=True), 1e-8)
        candidates = enc[i, known] / norms
        for y in np.flatnonzero(hole[i]):
            scores = candidates @ dec[i, y]
            x = known[int(np.argmax(scores))]
            shifted[i, y] = enc[i, x]
            p[i, y, x] = 1
    return shifted.reshape(encoded.shape), p


def random_case(seed, b=2, h=6, w=5, c=4, hole_fraction=0.4):
    # Generic features: exact ties have probability zero. (After a ReLU, collinear
    # one-hot vectors tie exactly in theory, and float rounding of the norm then
    # decides; ties are tested on their own below with identical vectors.)
    rng = np.random.default_rng(seed)
    decoded = rng.normal(size=(b, h, w, c)).astype(np.float32)
    encoded = rng.normal(size=(b, h, w, c)).astype(np.float32)
    hole = rng.random((b, h, w)) < hole_fraction
    return decoded, encoded, hole


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), b=st.integers(1, 3), h=st.integers(1, 6),
       w=st.integers(1, 6), c=st.integers(1, 5), frac=st.floats(0, 1))
def test_matches_definition_with_a_hole_per_image(seed, b, h, w, c, frac):
    decoded, encoded, hole = random_case(seed, b, h, w, c, frac)
    expected, _ = numpy_shift(decoded, encoded, hole)
    got = np.asarray(shift(decoded, encoded, hole))
    np.testing.assert_array_equal(got, expected)


def test_gradient_is_triple_weight_p_transpose():
    decoded, encoded, hole = random_case(1, b=3, h=5, w=6, c=3)
    _, p = numpy_shift(decoded, encoded, hole)
    g = np.random.default_rng(2).normal(size=encoded.shape).astype(np.float32)

    def loss(d, e):
        return jnp.sum(shift(d, e, hole, triple_weight=0.7) * g)

    grad_d, grad_e = jax.jit(jax.grad(loss, argnums=(0, 1)))(decoded, encoded)
    b, h, w, c = encoded.shape
    expected = 0.7 * np.einsum("bnm,bnc->bmc", p, g.reshape(b, h * w, c))
    np.testing.assert_allclose(np.asarray(grad_e).reshape(b, h * w, c), expected,
                               rtol=1e-6, atol=1e-6)
    assert not np.any(np.asarray(grad_d))


def test_vmap_jit_and_dtypes():
    decoded, encoded, hole = random_case(3, b=4)
    expected, _ = numpy_shift(decoded, encoded, hole)
    # vmap over the batch, each call seeing a batch of one.
    per_image = jax.vmap(lambda d, e, m: shift(d[None], e[None], m[None])[0])
    np.testing.assert_array_equal(np.asarray(jax.jit(per_image)(decoded, encoded, hole)),
                                  expected)
    out = shift(decoded.astype(jnp.bfloat16), encoded.astype(jnp.bfloat16), hole)
    assert out.dtype == jnp.bfloat16
    # In bfloat16 the pick may differ, but it is always some known feature.
    enc16 = np.asarray(encoded.astype(jnp.bfloat16)).astype(np.float32)
    out = np.asarray(out).astype(np.float32)
    for i in range(hole.shape[0]):
        known = enc16[i][~hole[i]]
        for y in zip(*np.nonzero(hole[i])):
            assert np.any(np.all(known == out[i][y], axis=-1))
    grad = jax.grad(lambda e: jnp.sum(shift(decoded.astype(jnp.bfloat16), e, hole)
                                      .astype(jnp.float32)))(encoded.astype(jnp.bfloat16))
    assert grad.dtype == jnp.bfloat16 and np.all(np.isfinite(np.asarray(grad, np.float32)))


def test_ties_go_to_the_first_known_position():
    rng = np.random.default_rng(0)
    encoded = rng.normal(size=(1, 3, 3, 4)).astype(np.float32)
    encoded[0, 2, 1] = encoded[0, 0, 2] = encoded[0, 1, 0]   # identical: exact ties
    decoded = np.broadcast_to(encoded[0, 1, 0], encoded.shape).copy()
    hole = np.zeros((1, 3, 3), bool)
    hole[0, 1, 1:] = True
    index, valid = shift_indices(decoded, encoded, hole)
    # Flat index 2 = (0, 2) is the first of the three identical directions.
    assert np.asarray(index)[0, 4] == 2 and np.asarray(index)[0, 5] == 2
    assert np.asarray(valid)[0].tolist() == [False] * 4 + [True, True] + [False] * 3


def test_zero_vectors_empty_and_full_holes_give_no_nan():
    decoded = np.zeros((3, 4, 4, 2), np.float32)
    encoded = np.zeros((3, 4, 4, 2), np.float32)
    encoded[1, 0, 0] = [1, 2]
    hole = np.zeros((3, 4, 4), bool)
    hole[1, 2:] = True   # image 1: a hole, zero queries -> first known position
    hole[2] = True       # image 2: nothing known
    out = np.asarray(shift(decoded, encoded, hole))
    assert np.all(np.isfinite(out))
    assert not np.any(out[0]) and not np.any(out[2])       # empty hole, no known position
    np.testing.assert_array_equal(out[1, 2:], np.broadcast_to([1, 2], (2, 4, 2)))
    grad = jax.grad(lambda e: jnp.sum(shift(decoded, e, hole)))(encoded)
    assert np.all(np.isfinite(np.asarray(grad)))
    assert np.asarray(grad)[1, 0, 0].tolist() == [8.0, 8.0]   # 8 hole positions picked it


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), tile=st.integers(1, 40), levels=st.integers(1, 4))
def test_tiled_equals_dense_including_ties(seed, tile, levels):
    # Both paths share the normalisation, so exact ties are the same ties in both.
    rng = np.random.default_rng(seed)
    # Few distinct values make exact ties common: the first index must still win.
    decoded = rng.integers(0, levels, size=(2, 6, 7, 3)).astype(np.float32)
    encoded = rng.integers(0, levels, size=(2, 6, 7, 3)).astype(np.float32)
    hole = rng.random((2, 6, 7)) < 0.5
    dense_index, valid = shift_indices(decoded, encoded, hole, tile=0)
    tiled_index, _ = shift_indices(decoded, encoded, hole, tile=tile)
    v = np.asarray(valid)
    np.testing.assert_array_equal(np.asarray(tiled_index)[v], np.asarray(dense_index)[v])
    np.testing.assert_array_equal(np.asarray(shift(decoded, encoded, hole, tile=tile)),
                                  np.asarray(shift(decoded, encoded, hole, tile=0)))


def test_shape_errors_are_clear():
    d, e, hole = random_case(0)
    with pytest.raises(ValueError, match="same shape"):
        shift(d, e[:, :-1], hole)
    with pytest.raises(ValueError, match="hole"):
        shift(d, e, hole[:, :-1])
