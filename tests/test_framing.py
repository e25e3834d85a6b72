"""Framing a hole for the network: crop windows, working shapes, the three strategies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import key
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data as skdata

from shiftnet_jax.inference import flow_view, framing, inpaint
from shiftnet_jax.nets.generator import ShiftNetGenerator

PHOTO = skdata.coffee()  # a real photo shipped with scikit-image, 400x600


@st.composite
def holes(draw):
    h, w = draw(st.integers(8, 300)), draw(st.integers(8, 300))
    mask = np.zeros((h, w), bool)
    for _ in range(draw(st.integers(0, 6))):
        top, left = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        mask[top:top + draw(st.integers(1, 60)), left:left + draw(st.integers(1, 60))] = True
    return mask


@settings(max_examples=60, deadline=None)
@given(holes(), st.sampled_from([32, 64, 128]), st.sampled_from([None, 0, 8]))
def test_crop_windows_cover_every_hole_pixel_once_and_fit_the_photo(mask, size, margin):
    windows = framing.crop_windows(mask, size, margin)
    count = np.zeros(mask.shape, int)
    for i, w in enumerate(windows):
        assert 0 <= w.top < w.bottom <= mask.shape[0] and 0 <= w.left < w.right <= mask.shape[1]
        # At least the working size where the photo allows (small holes at full resolution).
        assert w.shape[0] >= min(size, mask.shape[0]) and w.shape[1] >= min(size, mask.shape[1])
        count[w.slices] += 1
        assert not any(w.overlaps(v) for v in windows[i + 1:])
    assert (count[mask] == 1).all()
    assert len(windows) <= framing.MAX_WINDOWS and (windows or not mask.any())


def test_a_small_hole_in_a_large_photo_is_cropped_at_full_resolution():
    image = PHOTO
    mask = np.zeros(image.shape[:2], bool)
    mask[200:230, 300:340] = True
    (window,) = framing.windows("crop", mask, 128)
    assert window.shape == (128, 128) and window.top <= 200 and window.bottom >= 230
    small, hole = framing.prepare(image[window.slices], mask[window.slices], "crop", 128, 32)
    # Same size as the window: the network sees the photo's own pixels, unresized.
    np.testing.assert_allclose((small + 1) * 127.5, image[window.slices], atol=1e-4)
    np.testing.assert_array_equal(hole[..., 0] > 0, mask[window.slices])
    # A margin of half the box each side: a large hole gets a window twice its size.
    big = np.zeros(image.shape[:2], bool)
    big[100:300, 100:260] = True
    (window,) = framing.windows("crop", big, 128)
    assert window == framing.Window(0, 20, 400, 340)  # rows 0:400 fill the photo's height


def test_two_far_holes_get_two_windows_and_close_ones_are_merged():
    mask = np.zeros((400, 600), bool)
    mask[10:20, 10:20] = mask[350:390, 550:590] = True
    assert len(framing.windows("crop", mask, 64)) == 2
    mask[30:40, 30:40] = True  # within the first hole's window: merged with it
    windows = framing.windows("crop", mask, 64)
    assert len(windows) == 2 and windows[0].bottom >= 40
    specks = np.zeros((400, 600), bool)
    specks[::20, ::20] = True  # hundreds of specks: one window around them all
    assert len(framing.windows("crop", specks, 8)) == 1


def test_original_pads_without_resizing_and_restore_undoes_it():
    image = PHOTO[:100, :70]
    mask = np.zeros((100, 70), bool)
    mask[40:60, 20:50] = True
    assert framing.working_shape("original", (100, 70), 999, 32) == (128, 96)
    small, hole = framing.prepare(image, mask, "original", 999, 32)
    assert small.shape == (128, 96, 3) and hole.shape == (128, 96, 1)
    np.testing.assert_allclose((small[:100, :70] + 1) * 127.5, image, atol=1e-4)
    assert not hole[100:].any() and not hole[:, 70:].any()
    np.testing.assert_array_equal(framing.restore(small, "original", (100, 70)), small[:100, :70])
    with pytest.raises(ValueError, match="strategy must be one of crop, resize, original"):
        framing.windows("tile", mask, 64)


@pytest.fixture(scope="module")
def tiny():
    model = ShiftNetGenerator(ngf=4, num_downs=5)
    variables = jax.jit(model.init)(key(), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 64, 64, 1)))
    return model, variables


@pytest.mark.parametrize("strategy", framing.STRATEGIES)
def test_every_strategy_keeps_known_pixels_and_fills_every_hole(tiny, strategy):
    model, variables = tiny
    image = PHOTO[:200, :300]
    mask = np.zeros((200, 300), bool)
    mask[20:40, 30:60] = mask[150:190, 200:280] = True
    lines = []
    out, flow = inpaint.inpaint_image(model, variables, image, mask, size=64, strategy=strategy,
                                      flow=True, log=lines.append)
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert (out[20:40, 30:60] != image[20:40, 30:60]).any()
    assert (out[150:190, 200:280] != image[150:190, 200:280]).any()
    assert flow.shape == (200 + flow_view.flow_legend(300).shape[0], 300, 3)
    expected = {"crop": "2 windows", "resize": "1 window, 300x200 at (0, 0) -> 64x32",
                "original": "1 window, 300x200 at (0, 0) -> 320x224"}[strategy]
    assert lines == [lines[0]] and lines[0].startswith(f"strategy {strategy}: ") and expected in lines[0]
