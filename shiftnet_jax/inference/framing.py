"""How a hole is framed for the network: which part of the photo it sees, at what size.

The U-Net needs sides that are multiples of ``2**num_downs`` and was trained
at one scale, so a photo is never fed as it is. Three strategies (IOPaint's
names), each turning a photo and its hole into *windows*, rectangles of the
photo that are each one network input:

* ``resize``: one window, the whole photo, resized (area filter down, bicubic
  up) to a working size whose longer side is ``size``, each side rounded to a
  multiple. Cheap, but a small hole in a large photo gets a few pixels.
* ``crop``: one window per hole (8-connected component of the mask): its
  bounding box plus a margin on every side (default: half the box's side, so
  the hole spans about half the window, as the training's centre hole does),
  grown to at least ``size`` x ``size`` where the photo allows, so that a small
  hole is filled at the photo's own resolution. Windows that overlap are merged
  (their boxes united, the window recomputed) until none do; a window larger
  than ``size`` is resized like ``resize``. More than ``MAX_WINDOWS`` windows:
  one window around all holes.
* ``original``: one window, the whole photo at its own resolution, padded
  (reflected) to the next multiple; no resizing at all (costly on large photos).

Only the hole's pixels are pasted back (see ``inference.inpaint``), so windows
change what the network sees, never the known pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from shiftnet_jax.data.image_io import from_uint8

STRATEGIES = ("crop", "resize", "original")
DEFAULT_STRATEGY = "crop"
MAX_WINDOWS = 16


class Window(NamedTuple):
    """Rows ``top:bottom`` and columns ``left:right`` of the photo."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def overlaps(self, other: "Window") -> bool:
        return (self.top < other.bottom and other.top < self.bottom
                and self.left < other.right and other.left < self.right)


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    return strategy


# ------------------------------------------------------------------ working size
def working_size(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """(h, w): longer side ~ ``size``, aspect kept, each side a multiple of ``multiple`` (>= 1x)."""
    scale = size / max(height, width)
    return tuple(max(1, int(side * scale / multiple + 0.5)) * multiple for side in (height, width))


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(h, w) rounded up to multiples of ``multiple`` (the ``original`` strategy)."""
    return tuple(-(-side // multiple) * multiple for side in (height, width))


def working_shape(strategy: str, shape: tuple[int, int], size: int, multiple: int) -> tuple[int, int]:
    """The network input's (h, w) for a window of ``shape``."""
    if strategy == "original":
        return padded_size(*shape, multiple)
    return working_size(*shape, size, multiple)


# ------------------------------------------------------------------ windows
def hole_boxes(mask: np.ndarray) -> list[Window]:
    """Bounding boxes of the 8-connected components of a bool (H, W) hole."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [Window(int(y), int(x), int(y + h), int(x + w))
            for x, y, w, h, _ in stats[1:count]]


def _span(lo: int, hi: int, margin: int, least: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown by ``margin`` each side, then to ``least`` around its centre,
    moved inside [0, limit) (and clipped to it)."""
    lo, hi = lo - margin, hi + margin
    if hi - lo < least:
        grow = least - (hi - lo)
        lo, hi = lo - grow // 2, hi + grow - grow // 2
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(lo, 0), min(hi, limit)


def window_around(box: Window, shape: tuple[int, int], size: int, margin: int | None = None) -> Window:
    """The crop window of one hole box in a photo of ``shape`` (see the module docstring)."""
    height, width = box.shape
    my = margin if margin is not None else (height + 1) // 2
    mx = margin if margin is not None else (width + 1) // 2
    top, bottom = _span(box.top, box.bottom, my, size, shape[0])
    left, right = _span(box.left, box.right, mx, size, shape[1])
    return Window(top, left, bottom, right)


def crop_windows(mask: np.ndarray, size: int, margin: int | None = None) -> list[Window]:
    """Non-overlapping crop windows covering every hole pixel of bool (H, W) ``mask``."""
    groups = [(box, window_around(box, mask.shape, size, margin)) for box in hole_boxes(mask)]
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if groups[i][1].overlaps(groups[j][1]):
                    a, b = groups[i][0], groups[j][0]
                    union = Window(min(a.top, b.top), min(a.left, b.left),
                                   max(a.bottom, b.bottom), max(a.right, b.right))
                    groups[i] = (union, window_around(union, mask.shape, size, margin))
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    if len(groups) > MAX_WINDOWS:
        boxes = [g[0] for g in groups]
        union = Window(min(b.top for b in boxes), min(b.left for b in boxes),
                       max(b.bottom for b in boxes), max(b.right for b in boxes))
        return [window_around(union, mask.shape, size, margin)]
    return sorted(g[1] for g in groups)


def windows(strategy: str, mask: np.ndarray, size: int, margin: int | None = None) -> list[Window]:
    """The windows of a bool (H, W) hole under ``strategy`` (none for an empty hole with ``crop``)."""
    check_strategy(strategy)
    if strategy == "crop":
        return crop_windows(mask, size, margin)
    return [Window(0, 0, *mask.shape)]


# ------------------------------------------------------------------ in and out
def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    shrink = hw[0] * hw[1] < a.shape[0] * a.shape[1]
    return cv2.resize(a, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def prepare(image: np.ndarray, mask: np.ndarray, strategy: str, size: int, multiple: int):
    """One window's uint8 (h, w, 3) and bool (h, w) -> the network's image (H, W, 3) in
    [-1, 1] and hole (H, W, 1) float32 at the working shape.

    Resizing keeps every working pixel that touches the hole a hole (area average, > 0);
    ``original`` pads by reflection, the padding known.
    """
    hw = working_shape(strategy, image.shape[:2], size, multiple)
    if strategy == "original":
        pad = ((0, hw[0] - image.shape[0]), (0, hw[1] - image.shape[1]))
        small = np.pad(image, pad + ((0, 0),), mode="reflect" if min(image.shape[:2]) > 1 else "edge")
        hole = np.pad(mask, pad)
    else:
        small = _resize(image, hw)
        hole = cv2.resize(mask.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_AREA) > 0
    return from_uint8(small), hole.astype(np.float32)[..., None]


def restore(output: np.ndarray, strategy: str, shape: tuple[int, int]) -> np.ndarray:
    """A working-shape float output (H, W, 3) -> the window's (h, w, 3) (uncropped / resized)."""
    output = np.nan_to_num(output)
    if strategy == "original":
        return output[:shape[0], :shape[1]]
    return cv2.resize(output, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def describe(strategy: str, frames: list[tuple[Window, tuple[int, int]]]) -> str:
    """One line for the user: the strategy and each window's working shape."""
    if not frames:
        return f"strategy {strategy}: empty hole, nothing to fill"
    parts = [f"{w.shape[1]}x{w.shape[0]} at ({w.left}, {w.top}) -> {hw[1]}x{hw[0]}" for w, hw in frames]
    return f"strategy {strategy}: {len(frames)} window{'s' if len(frames) > 1 else ''}, " + "; ".join(parts)
