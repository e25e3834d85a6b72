"""Crops in one PIL box resize (shiftnet_jax.data.augment) against resize-then-cut, on real photos."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shiftnet_jax.data import augment, image_io
from tests.studio_util import photo_paths

PHOTOS = photo_paths()  # ../shared/data/photos beside the checkout, else scikit-image's


def _photo(i: int, side: int) -> np.ndarray:
    """Photo ``i`` with its longer side at most ``side`` (decoded once per call)."""
    im = Image.open(PHOTOS[i % len(PHOTOS)]).convert("RGB")
    im.thumbnail((side, side))
    return np.asarray(im)


@settings(max_examples=25, deadline=None)
@given(i=st.integers(0, 100), side=st.integers(120, 500), load=st.integers(64, 600),
       crop=st.integers(32, 96), seed=st.integers(0, 2**31), train=st.booleans())
def test_box_crop_equals_resize_then_window(i, side, load, crop, seed, train):
    img = _photo(i, side)
    out = augment.preprocess(img, crop_size=crop, load_size=load, train=train, rng=np.random.default_rng(seed))
    big = augment.resize_shorter(img, max(crop, load))
    rng = np.random.default_rng(seed)
    h, w = big.shape[:2]
    if train:
        y, x, flip = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1)), rng.random() < 0.5
    else:
        y, x, flip = (h - crop) // 2, (w - crop) // 2, False
    window = big[y:y + crop, x:x + crop]
    window = window[:, ::-1] if flip else window
    diff = np.abs(out.astype(int) - window)
    assert out.shape == (crop, crop, 3) and out.dtype == np.uint8
    assert diff.max() <= 3 and diff.mean() < 0.05, (diff.max(), diff.mean())  # rounding only


def test_min_decode_side():
    assert augment.min_decode_side(crop_size=256, load_size=350) == 350
    assert augment.min_decode_side(crop_size=256, load_size=200) == 256
    assert augment.min_decode_side(crop_size=256, load_size=350, scale_range=(0.8, 1.25)) == math.ceil(437.5)
    assert augment.min_decode_side(crop_size=256, load_size=None) is None


def test_draft_decodes_large_jpegs_smaller_but_never_below_the_load_size():
    big = max((p for p in PHOTOS if p.endswith(".jpg")), key=lambda p: min(Image.open(p).size))
    full = image_io.open_rgb(big)
    small = image_io.open_rgb(big, min_side=300)
    assert min(full.size) >= 600 and 300 <= min(small.size) < min(full.size)
    assert small.mode == "RGB"
    # The crop from the reduced decode looks like the one from the full decode.
    kw = dict(crop_size=128, load_size=300, train=False)
    a, b = augment.crop_image(full, **kw).astype(float), augment.crop_image(small, **kw).astype(float)
    assert np.abs(a - b).mean() < 6
    whole = image_io.open_rgb(big, min_side=10**6)  # a min_side above the size: full decode
    assert whole.size == full.size
