"""Hole shapes, host-side NumPy: the centre square, random rectangles, the
reference's islands, free-form strokes. :mod:`shiftnet_jax.data.masks` names them
and builds mask functions from specs.

Every mask is float32 (H, W, 1), 1 = missing pixel (hole), 0 = known. Random
shapes take a ``numpy.random.Generator`` first and draw everything from it, so
a seeded generator gives a reproducible sequence of masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

# The reference (Shift-Net_pytorch) cuts its random 120x120 square and its
# island crops out of a 350x350 canvas for 256x256 images.
_REF_SIDE = 256
_REF_RECT = 120
_REF_CANVAS = 350
_REF_GRID = 21  # int(0.06 * 350) noise cells across the canvas


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def as_pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or an (h, w) pair of ints, each >= minimum, as a (h, w) tuple."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} must be an int or a pair of ints (H, W), got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def as_mask(hole: np.ndarray) -> np.ndarray:
    """Bool (H, W) -> float32 (H, W, 1)."""
    return hole.astype(np.float32)[..., None]


def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation weights, half-pixel centres.

    Same sampling as ``F.interpolate(mode="bilinear", align_corners=False)``,
    which the reference uses to upsample its noise.
    """
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, ...) array to ``size`` = (h, w)."""
    h_in, w_in = mask.shape[:2]
    h, w = size
    rows = np.minimum(((np.arange(h) + 0.5) * (h_in / h)).astype(np.int64), h_in - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (w_in / w)).astype(np.int64), w_in - 1)
    return mask[rows][:, cols]


# ----------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------

def center_mask(size, hole=None, overlap: int = 0) -> np.ndarray:
    """A centred rectangular hole.

    The paper uses a 128x128 hole in a 256x256 image (``hole=None``: half of
    each side). The reference code shrinks it by an ``overlap`` of 4 pixels on
    every side, i.e. 120x120 at rows/cols 68..187: ``center_mask(256, overlap=4)``
    or, equivalently, ``center_mask(256, hole=120)``.

    Args:
      size: image side, int or (H, W).
      hole: hole side before the overlap, int or (h, w); None = (H // 2, W // 2).
      overlap: pixels removed from each side of the hole.

    Returns:
      (H, W, 1) float32, 1 = hole. The hole starts at row (H - h) // 2.
    """
    height, width = as_pair(size, "size")
    hole_h, hole_w = (height // 2, width // 2) if hole is None else as_pair(hole, "hole")
    if not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"overlap must be an int >= 0, got {overlap!r}")
    hole_h, hole_w = hole_h - 2 * overlap, hole_w - 2 * overlap
    if hole_h < 1 or hole_w < 1 or hole_h > height or hole_w > width:
        raise ValueError(
            f"center hole {hole_h}x{hole_w} (after overlap {overlap}) must fit in the {height}x{width} image")
    top, left = (height - hole_h) // 2, (width - hole_w) // 2
    out = np.zeros((height, width), bool)
    out[top:top + hole_h, left:left + hole_w] = True
    return as_mask(out)


def random_rect_mask(rng: np.random.Generator, size, min_size=None, max_size=None,
                     square: bool = False) -> np.ndarray:
    """A rectangular hole of random extent at a random position inside the image.

    Height and width are drawn independently and uniformly from
    [min_size, max_size] (inclusive, per axis), then the top-left corner
    uniformly among positions that keep the hole inside the image. The
    default (both None) is the reference's random square: 120/256 of each side,
    i.e. a 120x120 hole in a 256x256 image.

    Args:
      rng: random generator.
      size: image side, int or (H, W).
      min_size, max_size: smallest / largest hole extent, int or (h, w).
      square: draw one side and use it for both (needs a square range).

    Returns:
      (H, W, 1) float32, 1 = hole.
    """
    check_rng(rng)
    height, width = as_pair(size, "size")
    ref = (max(1, round(height * _REF_RECT / _REF_SIDE)), max(1, round(width * _REF_RECT / _REF_SIDE)))
    # A bound left out follows the other one, or the reference square if both are.
    lo = None if min_size is None else as_pair(min_size, "min_size")
    hi = None if max_size is None else as_pair(max_size, "max_size")
    if lo is None:
        lo = ref if hi is None else (min(ref[0], hi[0]), min(ref[1], hi[1]))
    if hi is None:
        hi = lo if min_size is not None else ref
    if lo[0] > hi[0] or lo[1] > hi[1]:
        raise ValueError(f"min_size {lo} must not exceed max_size {hi}")
    if hi[0] > height or hi[1] > width:
        raise ValueError(f"max_size {hi} must fit in the {height}x{width} image")
    if square:
        if lo[0] != lo[1] or hi[0] != hi[1]:
            raise ValueError(f"square=True needs square min_size/max_size, got {lo} and {hi}")
        side = int(rng.integers(lo[0], hi[0] + 1))
        hole_h = hole_w = side
    else:
        hole_h = int(rng.integers(lo[0], hi[0] + 1))
        hole_w = int(rng.integers(lo[1], hi[1] + 1))
    top = int(rng.integers(0, height - hole_h + 1))
    left = int(rng.integers(0, width - hole_w + 1))
    out = np.zeros((height, width), bool)
    out[top:top + hole_h, left:left + hole_w] = True
    return as_mask(out)


def island_mask(rng: np.random.Generator, size, coverage=(0.2, 0.3), threshold: float | None = None,
                grid: int = _REF_GRID, canvas_scale: float = _REF_CANVAS / _REF_SIDE,
                max_tries: int = 100) -> np.ndarray:
    """Blob-like ("island") holes as in the reference code.

    Uniform noise on a coarse grid is upsampled bilinearly to a canvas larger
    than the image, a random crop of the image size is taken, and its low
    values become the hole. For 256x256 the defaults are the reference's:
    21x21 noise, a 350x350 canvas. Other sizes scale the canvas with the image
    (side * ``canvas_scale``) so islands keep their size relative to the image;
    ``grid`` counts the noise cells along the canvas's longer side.

    Two thresholding rules:

    * ``threshold=None`` (default): a target fraction is drawn uniformly in
      ``coverage`` and exactly that many lowest-noise pixels become the hole
      (a quantile threshold), so one draw always lands in ``coverage``.
    * ``threshold=t``: the reference rule, noise < t is a hole (the reference
      uses 0.25). The draw (new noise, new crop) is repeated until the hole
      fraction lies in ``coverage``; after ``max_tries`` draws the closest one
      is returned. Bilinear smoothing pulls the noise towards 0.5, so 0.25
      covers only about 11 % on average and rarely reaches 20 %: the
      reference, which stops after two tries, mostly trains on ~11 % holes.

    Args:
      rng: random generator.
      size: image side, int or (H, W).
      coverage: (low, high) hole fraction, 0 <= low <= high <= 1.
      threshold: None (quantile rule) or a fixed noise level in [0, 1].
      grid: noise cells along the longer canvas side (>= 2).
      canvas_scale: canvas side / image side (>= 1).
      max_tries: bound on the number of draws (fixed threshold only).

    Returns:
      (H, W, 1) float32, 1 = hole.
    """
    check_rng(rng)
    height, width = as_pair(size, "size")
    low, high = _coverage(coverage)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be None or in [0, 1], got {threshold!r}")
    if not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid must be an int >= 2, got {grid!r}")
    if not canvas_scale >= 1.0:
        raise ValueError(f"canvas_scale must be >= 1, got {canvas_scale!r}")
    if not isinstance(max_tries, (int, np.integer)) or max_tries < 1:
        raise ValueError(f"max_tries must be an int >= 1, got {max_tries!r}")

    canvas_h, canvas_w = math.ceil(height * canvas_scale), math.ceil(width * canvas_scale)
    longest = max(canvas_h, canvas_w)
    grid_h = max(2, round(grid * canvas_h / longest))
    grid_w = max(2, round(grid * canvas_w / longest))
    up_rows = _bilinear_matrix(canvas_h, grid_h)
    up_cols = _bilinear_matrix(canvas_w, grid_w)

    def draw() -> np.ndarray:
        noise = rng.random((grid_h, grid_w))
        top = int(rng.integers(0, canvas_h - height + 1))
        left = int(rng.integers(0, canvas_w - width + 1))
        # Only the cropped rows/cols of the canvas are ever needed.
        return up_rows[top:top + height] @ noise @ up_cols[left:left + width].T

    if threshold is None:
        pixels = height * width
        k_lo, k_hi = math.ceil(low * pixels - 1e-9), math.floor(high * pixels + 1e-9)
        count = int(rng.integers(k_lo, k_hi + 1)) if k_lo <= k_hi else round(0.5 * (low + high) * pixels)
        canvas = draw().ravel()
        hole = np.zeros(pixels, bool)
        if count > 0:
            # argpartition, not "< k-th value": the clamped canvas border has ties.
            hole[np.argpartition(canvas, count - 1)[:count]] = True
        return as_mask(hole.reshape(height, width))

    best, best_gap = None, math.inf
    for _ in range(max_tries):
        hole = draw() < threshold
        ratio = hole.mean()
        gap = max(low - ratio, ratio - high, 0.0)
        if gap < best_gap:
            best, best_gap = hole, gap
            if gap == 0.0:
                break
    return as_mask(best)


def _coverage(coverage) -> tuple[float, float]:
    try:
        low, high = (float(c) for c in coverage)
    except (TypeError, ValueError):
        raise ValueError(f"coverage must be a pair (low, high) of floats, got {coverage!r}") from None
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"coverage must satisfy 0 <= low <= high <= 1, got {coverage!r}")
    return low, high


def _draw_capsule(canvas: np.ndarray, p0, p1, radius: float) -> None:
    """Set pixels whose centre lies within ``radius`` of segment p0-p1 (in place).

    Points are (row, col) in pixel-centre coordinates (pixel (i, j) at (i, j)).
    """
    height, width = canvas.shape
    r0 = max(int(math.floor(min(p0[0], p1[0]) - radius)), 0)
    r1 = min(int(math.ceil(max(p0[0], p1[0]) + radius)), height - 1)
    c0 = max(int(math.floor(min(p0[1], p1[1]) - radius)), 0)
    c1 = min(int(math.ceil(max(p0[1], p1[1]) + radius)), width - 1)
    if r0 > r1 or c0 > c1:
        return
    rows = np.arange(r0, r1 + 1, dtype=np.float64)[:, None]
    cols = np.arange(c0, c1 + 1, dtype=np.float64)[None, :]
    d_r, d_c = p1[0] - p0[0], p1[1] - p0[1]
    length2 = d_r * d_r + d_c * d_c
    if length2 > 0:
        t = np.clip(((rows - p0[0]) * d_r + (cols - p0[1]) * d_c) / length2, 0.0, 1.0)
    else:
        t = 0.0
    dist2 = (rows - (p0[0] + t * d_r)) ** 2 + (cols - (p0[1] + t * d_c)) ** 2
    canvas[r0:r1 + 1, c0:c1 + 1] |= dist2 <= radius * radius


def stroke_mask(rng: np.random.Generator, size, max_strokes: int = 5, max_vertices: int = 8,
                length=(0.05, 0.25), width=(0.02, 0.1), max_angle: float = math.pi / 2,
                max_boxes: int = 2, box=(0.1, 0.4), max_coverage: float = 0.6,
                max_tries: int = 20) -> np.ndarray:
    """Free-form brush strokes plus a few boxes (DeepFill v2 / LaMa style).

    Each of 1..``max_strokes`` strokes starts at a random pixel with a random
    heading and takes 1..``max_vertices`` straight segments; each segment turns
    by a uniform angle in [-max_angle, max_angle] and has a random length. A
    stroke has one random brush width and is drawn as round-capped thick lines.
    Then 0..``max_boxes`` axis-aligned boxes are added. Lengths, widths and box
    sides are fractions of the shorter image side, so the look does not depend
    on the resolution; widths are at least 2 pixels, so every mask has a hole.
    A mask covering more than ``max_coverage`` is redrawn (at most
    ``max_tries`` draws; then the least-covering one is returned).

    Args:
      rng: random generator.
      size: image side, int or (H, W).
      max_strokes, max_vertices: upper bounds (>= 1) on strokes and segments per stroke.
      length: (low, high) segment length, fraction of the shorter side.
      width: (low, high) brush width, fraction of the shorter side.
      max_angle: largest turn between segments, radians.
      max_boxes: upper bound (>= 0) on boxes.
      box: (low, high) box side, fraction of the shorter side.
      max_coverage: largest accepted hole fraction, in (0, 1].
      max_tries: bound on the number of draws.

    Returns:
      (H, W, 1) float32, 1 = hole.
    """
    check_rng(rng)
    height, width_px = as_pair(size, "size")
    for name, value, minimum in (("max_strokes", max_strokes, 1), ("max_vertices", max_vertices, 1),
                                 ("max_boxes", max_boxes, 0), ("max_tries", max_tries, 1)):
        if not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    length_lo, length_hi = _fraction_range(length, "length")
    width_lo, width_hi = _fraction_range(width, "width")
    box_lo, box_hi = _fraction_range(box, "box")
    if not 0.0 < max_coverage <= 1.0:
        raise ValueError(f"max_coverage must be in (0, 1], got {max_coverage!r}")

    short = min(height, width_px)
    best, best_ratio = None, math.inf
    for _ in range(max_tries):
        canvas = np.zeros((height, width_px), bool)
        for _ in range(int(rng.integers(1, max_strokes + 1))):
            point = (rng.uniform(0, height - 1), rng.uniform(0, width_px - 1))
            heading = rng.uniform(0, 2 * math.pi)
            radius = max(rng.uniform(width_lo, width_hi) * short, 2.0) / 2
            for _ in range(int(rng.integers(1, max_vertices + 1))):
                heading += rng.uniform(-max_angle, max_angle)
                step = rng.uniform(length_lo, length_hi) * short
                nxt = (float(np.clip(point[0] + step * math.sin(heading), 0, height - 1)),
                       float(np.clip(point[1] + step * math.cos(heading), 0, width_px - 1)))
                _draw_capsule(canvas, point, nxt, radius)
                point = nxt
        for _ in range(int(rng.integers(0, max_boxes + 1))):
            box_h = min(max(1, round(rng.uniform(box_lo, box_hi) * short)), height)
            box_w = min(max(1, round(rng.uniform(box_lo, box_hi) * short)), width_px)
            top = int(rng.integers(0, height - box_h + 1))
            left = int(rng.integers(0, width_px - box_w + 1))
            canvas[top:top + box_h, left:left + box_w] = True
        ratio = canvas.mean()
        if ratio < best_ratio:
            best, best_ratio = canvas, ratio
        if ratio <= max_coverage:
            break
    return as_mask(best)


def _fraction_range(value, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high) of fractions, got {value!r}") from None
    if not 0.0 <= low <= high:
        raise ValueError(f"{name} must satisfy 0 <= low <= high, got {value!r}")
    return low, high
