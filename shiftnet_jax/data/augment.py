"""Training and evaluation crops: resize the shorter side, crop, flip -- in one PIL resize.

The crop is defined on the image resized so that its shorter side is the load
size, but only the crop's own pixels are computed: PIL's ``resize(box=...)``
evaluates the same bicubic filter at the same scale on the crop's source
rectangle, so the result equals "resize the whole image, then cut the window"
up to rounding (at most 2 of 255 on photos, measured), at half the resize work
for 350 -> 256 (and a fraction of it for large photos).

Random draws, in this order from the element's rng (so a stream is a pure
function of the seed): the scale factor (only with ``scale_range``), the
window's y, its x, the flip.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(W, H) after a resize that makes the shorter side ``size`` (aspect kept)."""
    s = size / min(width, height)
    return max(size, round(width * s)), max(size, round(height * s))


def resize_shorter(img: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of a uint8 (H, W, C) array so that the shorter side is ``size``."""
    h, w = img.shape[:2]
    if min(h, w) == size:
        return img
    return np.asarray(Image.fromarray(img).resize(resized_size(w, h, size), Image.BICUBIC))


def min_decode_side(*, crop_size: int, load_size: int | None, scale_range=None) -> int | None:
    """The smallest shorter side a decoder may produce without changing the crop's
    scale (``None``: the full image is needed, ``load_size`` None keeps its size)."""
    if not load_size:
        return None
    return max(crop_size, math.ceil(load_size * max(scale_range or (1.0,))))


def crop_image(im: Image.Image, *, crop_size: int, load_size: int | None, train: bool,
               rng: np.random.Generator | None = None, scale_range=None) -> np.ndarray:
    """An RGB PIL image -> uint8 (crop, crop, 3).

    The shorter side is resized to ``load_size`` (its own size when None; at
    least ``crop_size``; in training times a factor from ``scale_range`` if
    given), then a random window + random h-flip (train) or the centre window
    (eval) is cut. ``im`` may be a reduced-scale decode (PIL ``draft``) of the
    original: the window is drawn in the same resized frame (up to the rounding of
    its size), only the filter's input is smaller.
    """
    w, h = im.size
    load = load_size or min(w, h)
    if train and scale_range:
        load = round(load * float(rng.uniform(*scale_range)))
    size = max(crop_size, load)
    width, height = (w, h) if min(w, h) == size else resized_size(w, h, size)
    if train:
        y = int(rng.integers(0, height - crop_size + 1))
        x = int(rng.integers(0, width - crop_size + 1))
        flip = bool(rng.random() < 0.5)
    else:
        y, x, flip = (height - crop_size) // 2, (width - crop_size) // 2, False
    if (width, height) == (w, h):
        out = im.crop((x, y, x + crop_size, y + crop_size))
    else:
        sx, sy = w / width, h / height
        box = (x * sx, y * sy, (x + crop_size) * sx, (y + crop_size) * sy)
        out = im.resize((crop_size, crop_size), Image.BICUBIC, box=box)
    if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out)


def preprocess(img: np.ndarray, *, crop_size: int, load_size: int | None, train: bool,
               rng: np.random.Generator | None = None, scale_range=None) -> np.ndarray:
    """:func:`crop_image` of a uint8 (H, W, 3) array."""
    return crop_image(Image.fromarray(np.asarray(img, np.uint8)), crop_size=crop_size, load_size=load_size,
                      train=train, rng=rng, scale_range=scale_range)
