"""Tests for shiftnet_jax.inference.metrics (PSNR, SSIM, mean l1/l2, bands, compositing)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax.inference import metrics as MT

# One shape for most tests: every new shape costs an XLA compile per metric.
SHAPE = (3, 32, 32, 3)


def _pair(rng, shape, noise=0.2):
    a = rng.uniform(-1, 1, shape).astype(np.float32)
    b = np.clip(a + rng.normal(0, noise, shape), -1, 1).astype(np.float32)
    return a, b


def _smooth(shape, phase):
    b, h, w, c = shape
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin((3 + k) * x + (2 + k) * y + phase + 0.7 * i)
             for i in range(b) for k in range(c)]
    return (0.9 * np.stack(chans, -1).reshape(h, w, b, c).transpose(2, 0, 1, 3)).astype(np.float32)


def _sk_ssim(a, b, full=False):
    """skimage SSIM of one (H, W, C) pair in [-1, 1], our convention."""
    skimage_metrics = pytest.importorskip("skimage.metrics")
    return skimage_metrics.structural_similarity(
        (a.astype(np.float64) + 1) / 2, (b.astype(np.float64) + 1) / 2, gaussian_weights=True,
        sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1, full=full)


def _masked_mean(values, mask):
    """Mean of (H, W, C) values over pixels where (H, W) mask is true (all channels)."""
    return values[mask.astype(bool)].mean()


# --- PSNR / l1 / l2 ---------------------------------------------------------

def test_psnr_known_offset():
    a = np.zeros(SHAPE, np.float32)
    b = a + 0.2  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    np.testing.assert_allclose(MT.psnr(a, b), [20.0] * 3, atol=1e-4)
    np.testing.assert_allclose(MT.mean_l1(a, b), [0.1] * 3, atol=1e-6)
    np.testing.assert_allclose(MT.mean_l2(a, b), [0.01] * 3, atol=1e-7)
    # Full range apart: MSE 1 -> 0 dB.
    np.testing.assert_allclose(MT.psnr(a - 1, a + 1), [0.0] * 3, atol=1e-6)


def test_psnr_identical_is_inf():
    a, _ = _pair(np.random.default_rng(0), SHAPE)
    out = MT.psnr(a, a)
    assert out.shape == (3,) and bool(jnp.all(jnp.isposinf(out)))


def test_metrics_match_numpy():
    rng = np.random.default_rng(1)
    a, b = _pair(rng, SHAPE)
    a01, b01 = (a.astype(np.float64) + 1) / 2, (b.astype(np.float64) + 1) / 2
    mse = ((a01 - b01) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(MT.mean_l2(a, b), mse, rtol=1e-5)
    np.testing.assert_allclose(MT.mean_l1(a, b), np.abs(a01 - b01).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(MT.psnr(a, b), 10 * np.log10(1 / mse), rtol=1e-5)


def test_masked_metrics_match_numpy():
    rng = np.random.default_rng(2)
    a, b = _pair(rng, SHAPE)
    mask = (rng.random((3, 32, 32, 1)) < 0.3).astype(np.float32)
    a01, b01 = (a.astype(np.float64) + 1) / 2, (b.astype(np.float64) + 1) / 2
    for i in range(3):
        m = mask[i, ..., 0]
        mse = _masked_mean((a01[i] - b01[i]) ** 2, m)
        np.testing.assert_allclose(MT.mean_l2(a, b, mask)[i], mse, rtol=1e-5)
        np.testing.assert_allclose(MT.mean_l1(a, b, mask)[i], _masked_mean(np.abs(a01[i] - b01[i]), m), rtol=1e-5)
        np.testing.assert_allclose(MT.psnr(a, b, mask)[i], 10 * np.log10(1 / mse), rtol=1e-5)
    # A shared (H, W, 1) bool mask equals the same mask repeated per image.
    shared = mask[0] > 0.5
    np.testing.assert_allclose(MT.psnr(a, b, shared), MT.psnr(a, b, np.repeat(mask[:1], 3, 0)), rtol=1e-6)


def test_empty_mask_gives_nan():
    rng = np.random.default_rng(3)
    a, b = _pair(rng, SHAPE)
    mask = np.zeros((3, 32, 32, 1), np.float32)
    mask[1, 10:16, 10:16] = 1
    mask[2] = 1
    for fn in (MT.psnr, MT.mean_l1, MT.mean_l2, MT.ssim):
        out = np.asarray(fn(a, b, mask))
        assert math.isnan(out[0]) and np.isfinite(out[1:]).all(), fn.__name__


# --- SSIM -------------------------------------------------------------------

def test_ssim_identical_is_one():
    a, _ = _pair(np.random.default_rng(4), SHAPE)
    np.testing.assert_allclose(MT.ssim(a, a), [1.0] * 3, atol=1e-6)
    np.testing.assert_allclose(MT.ssim(a, a, np.ones((32, 32, 1))), [1.0] * 3, atol=1e-6)


@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_ssim_matches_skimage(kind):
    shape = SHAPE
    if kind == "random":
        a, b = _pair(np.random.default_rng(5), shape, noise=0.3)
    else:
        a, b = _smooth(shape, 0.0), _smooth(shape, 0.3)
    ours = np.asarray(MT.ssim(a, b))
    ref = [_sk_ssim(a[i], b[i]) for i in range(shape[0])]
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert 0.0 < ours.min() < 0.999


def test_ssim_map_matches_skimage_valid_region():
    a, b = _pair(np.random.default_rng(6), (1, 30, 26, 2), noise=0.3)
    _, full = _sk_ssim(a[0], b[0], full=True)
    smap = MT.ssim_map(a, b)
    assert smap.shape == (1, 20, 16, 2)
    np.testing.assert_allclose(smap[0], full[5:-5, 5:-5], atol=1e-4)


def test_masked_ssim_averages_centres_in_mask():
    rng = np.random.default_rng(7)
    a, b = _pair(rng, SHAPE, noise=0.3)
    mask = np.zeros((3, 32, 32, 1), np.float32)
    mask[0, 10:25, 8:30] = 1
    mask[1] = rng.random((32, 32, 1)) < 0.4
    mask[2, 3:9, 20:31] = 1  # partly in the border band
    out = np.asarray(MT.ssim(a, b, mask))
    for i in range(3):
        _, full = _sk_ssim(a[i], b[i], full=True)
        ref = _masked_mean(full[5:-5, 5:-5], mask[i, 5:-5, 5:-5, 0])
        np.testing.assert_allclose(out[i], ref, atol=1e-4)
    # A hole only in the 5-pixel border selects no window centre.
    border = np.zeros((32, 32, 1), np.float32)
    border[:5] = 1
    assert bool(jnp.all(jnp.isnan(MT.ssim(a, b, border))))


def test_ssim_small_image_error():
    a = np.zeros((1, 10, 32, 3), np.float32)
    with pytest.raises(ValueError, match="11x11"):
        MT.ssim(a, a)


# --- errors -----------------------------------------------------------------

def test_shape_errors():
    a = np.zeros(SHAPE, np.float32)
    with pytest.raises(ValueError, match="images"):
        MT.psnr(a, a[:1])
    with pytest.raises(ValueError, match="images"):
        MT.mean_l1(a[0], a[0])
    with pytest.raises(ValueError, match="mask"):
        MT.mean_l2(a, a, np.ones((32, 8, 1)))
    with pytest.raises(ValueError, match="mask"):
        MT.psnr(a, a, np.ones((2, 32, 32, 1)))
    with pytest.raises(ValueError, match="mask"):
        MT.hole_ratio_band(np.ones((16, 16)))
    with pytest.raises(ValueError, match="hole"):
        MT.composite(a, a, np.ones((32, 32)))


# --- bands and composite ----------------------------------------------------

def test_hole_ratio_band():
    masks = np.zeros((6, 10, 10, 1), np.float32)
    for i, count in enumerate([0, 9, 10, 55, 99, 100]):
        masks[i].reshape(-1)[:count] = 1
    np.testing.assert_array_equal(MT.hole_ratio_band(masks), [0, 0, 1, 5, 9, 9])
    assert MT.hole_ratio_band(masks[3]).shape == ()
    assert MT.hole_ratio_band(masks).dtype == jnp.int32
    # 10 % of 256x256 is not an integer pixel count; 30 % of 100 px is, exactly band 3.
    m = np.zeros((1, 10, 10, 1), bool)
    m.reshape(-1)[:30] = True
    assert int(MT.hole_ratio_band(m)[0]) == 3


def test_composite():
    rng = np.random.default_rng(8)
    out, img = _pair(rng, SHAPE)
    hole = np.zeros((3, 32, 32, 1), np.float32)
    hole[0, 2:5, 3:6] = 1
    hole[1, 0, 0] = 1
    comp = np.asarray(MT.composite(out, img, hole))
    np.testing.assert_array_equal(comp, np.where(hole > 0.5, out, img))
    np.testing.assert_array_equal(MT.composite(out, img, hole[0] > 0.5), np.where(hole[:1] > 0.5, out, img))


# --- jit, batching, properties -----------------------------------------------

def _all_metrics(a, b, mask):
    return (MT.psnr(a, b), MT.ssim(a, b), MT.mean_l1(a, b), MT.mean_l2(a, b),
            MT.psnr(a, b, mask), MT.ssim(a, b, mask), MT.mean_l1(a, b, mask), MT.mean_l2(a, b, mask),
            MT.hole_ratio_band(mask), MT.composite(a, b, mask))


def test_jit_and_batch_consistency():
    rng = np.random.default_rng(9)
    a, b = _pair(rng, SHAPE)
    mask = (rng.random((3, 32, 32, 1)) < 0.5).astype(np.float32)
    eager = _all_metrics(a, b, mask)  # each metric is already jitted on its own
    jitted = jax.jit(_all_metrics)(a, b, mask)
    for e, j in zip(eager, jitted):
        np.testing.assert_allclose(np.asarray(j), np.asarray(e), rtol=1e-5, atol=1e-6)
    # Values are per image: permuting the batch permutes them, and changing
    # one image leaves the others' values alone (same shapes: no recompiles).
    perm = np.array([2, 0, 1])
    for e, p in zip(eager[:8], _all_metrics(a[perm], b[perm], mask[perm])[:8]):
        np.testing.assert_allclose(np.asarray(p), np.asarray(e)[perm], rtol=1e-5, atol=1e-6)
    b2 = b.copy()
    b2[1] = -b2[1]
    for e, c in zip(eager[:8], _all_metrics(a, b2, mask)[:8]):
        e, c = np.asarray(e), np.asarray(c)
        np.testing.assert_allclose(c[[0, 2]], e[[0, 2]], rtol=1e-6)
        assert c[1] != e[1]


@settings(max_examples=3, deadline=None)
@given(b=st.integers(1, 3), h=st.integers(11, 40), w=st.integers(11, 40), c=st.sampled_from([1, 3]),
       seed=st.integers(0, 2 ** 31 - 1))
def test_property_shapes_and_ranges(b, h, w, c, seed):
    rng = np.random.default_rng(seed)
    x, y = _pair(rng, (b, h, w, c), noise=0.3)
    mask = np.ones((b, h, w, 1), np.float32)
    out = jax.jit(_all_metrics)(x, y, mask)
    for value in out[:8]:
        assert value.shape == (b,) and value.dtype == jnp.float32
    # An all-ones mask is the same as no mask.
    for plain, masked in zip(out[:4], out[4:8]):
        np.testing.assert_allclose(masked, plain, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(out[1]) <= 1.0 + 1e-6) and np.all(np.asarray(out[1]) > -1.0)
    assert np.all(np.asarray(out[2]) <= 1.0)
    assert out[8].tolist() == [9] * b
    assert out[9].shape == (b, h, w, c)
