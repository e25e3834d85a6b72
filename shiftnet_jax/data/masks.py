"""Hole (mask) generators for training and evaluation, host-side NumPy.

Every mask is float32 of shape (H, W, 1) with 1 = missing pixel (hole) and
0 = known pixel. Random generators take a ``numpy.random.Generator`` as their
first argument and draw everything from it, so a seeded generator gives a
reproducible sequence of masks. They are meant to run in the data loader, not
under ``jit``.

Kinds (names accepted by :func:`make_mask_fn`):

* ``"center"``  -- :func:`center_mask`, the paper's centred square.
* ``"rect"``    -- :func:`random_rect_mask`, a rectangle at a random position.
* ``"island"``  -- :func:`island_mask`, the reference code's blob-like masks.
* ``"strokes"`` -- :func:`stroke_mask`, free-form brush strokes plus boxes.
* ``"mix"``     -- :func:`mixture_mask`, one of the above chosen per call.
* ``"files"``   -- masks read from image files (bright = hole, see
  :mod:`shiftnet_jax.data.image_io`), one per call.

The shapes themselves are in :mod:`shiftnet_jax.data.mask_shapes`.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from shiftnet_jax.data import image_io
from shiftnet_jax.data.mask_shapes import (
    as_mask,
    as_pair,
    center_mask,
    check_rng,
    island_mask,
    random_rect_mask,
    resize_nearest,
    stroke_mask,
)
from shiftnet_jax.errors import quote

MaskFn = Callable[[np.random.Generator, "int | tuple[int, int]"], np.ndarray]

def hole_ratio(mask) -> float | np.ndarray:
    """Fraction of pixels that are holes (value > 0.5).

    Args:
      mask: (H, W, 1) or (B, H, W, 1), 1/True = hole.

    Returns:
      A float for (H, W, 1); a (B,) float64 array for (B, H, W, 1).
    """
    mask = np.asarray(mask)
    if mask.ndim not in (3, 4) or mask.shape[-1] != 1:
        raise ValueError(f"mask must have shape (H, W, 1) or (B, H, W, 1), got {mask.shape}")
    ratio = (mask > 0.5).mean(axis=(-3, -2, -1))
    return float(ratio) if mask.ndim == 3 else ratio



def mixture_mask(rng: np.random.Generator, size, kinds: Mapping[str, float]) -> np.ndarray:
    """One mask of a kind chosen at random, with probability proportional to its weight.

    Args:
      rng: random generator (chooses the kind, then draws the mask).
      size: image side, int or (H, W).
      kinds: kind name -> weight >= 0, e.g. {"rect": 1, "strokes": 2}; names
        as in :func:`make_mask_fn` (default options), weights not all zero.

    Returns:
      (H, W, 1) float32, 1 = hole.
    """
    check_rng(rng)
    fns, weights = _mixture_parts(kinds)
    return _mixture_fn(fns, weights)(rng, size)


def _mixture_parts(kinds, load_files: bool = True) -> tuple[list[MaskFn], np.ndarray]:
    """Kind specs and normalised weights from a {name: weight or {"weight": w, **options}} map."""
    if not isinstance(kinds, Mapping) or not kinds:
        raise ValueError(f"kinds must be a non-empty mapping name -> weight, got {kinds!r}")
    fns, weights = [], []
    for name, entry in kinds.items():
        if name == "mix":
            raise ValueError("a mixture cannot contain 'mix'")
        if isinstance(entry, Mapping):
            options = dict(entry)
            weight = options.pop("weight", 1.0)
            fns.append(make_mask_fn({"kind": name, **options}, load_files=load_files))
        else:
            weight = entry
            fns.append(make_mask_fn(name, load_files=load_files))
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight of mask kind {name!r} must be a number, got {weight!r}") from None
        if not weight >= 0.0 or math.isinf(weight):
            raise ValueError(f"weight of mask kind {name!r} must be finite and >= 0, got {weight!r}")
        weights.append(weight)
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"mask kind weights must not all be zero, got {dict(kinds)!r}")
    return fns, np.asarray(weights, np.float64) / total


def _mixture_fn(fns: list[MaskFn], probs: np.ndarray) -> MaskFn:
    def fn(rng: np.random.Generator, size) -> np.ndarray:
        check_rng(rng)
        return fns[int(rng.choice(len(fns), p=probs))](rng, size)
    return fn


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------

def load_mask_image(path, size=None, threshold: float = image_io.MASK_THRESHOLD,
                    max_pixels: int = image_io.MAX_PIXELS) -> np.ndarray:
    """A mask read from an image file with :func:`shiftnet_jax.data.image_io.decode_mask`'s rule
    (bright = hole: strength > ``threshold``, 0 by default).

    Args:
      path: file path.
      size: optional int or (H, W); the mask is resized with nearest neighbour.
      threshold: 8-bit strength above which a pixel is a hole.
      max_pixels: larger files are an ``image_io.ImageTooLarge`` error.

    Returns:
      (H, W, 1) float32, 1 = hole.
    """
    out_size = None if size is None else as_pair(size, "size")
    mask = as_mask(image_io.read_mask(path, threshold=threshold, max_pixels=max_pixels))
    if out_size is not None and mask.shape[:2] != out_size:
        mask = resize_nearest(mask, out_size)
    return mask


def _mask_paths(paths) -> list[str]:
    """Sorted image files from a directory (recursive), or a given list of files."""
    if isinstance(paths, (str, os.PathLike)):
        root = os.fspath(paths)
        if not os.path.isdir(root):
            raise ValueError(f"mask folder {quote(root, 200)} does not exist")
        found = image_io.list_images(root)
    elif isinstance(paths, Sequence):
        found = [os.fspath(p) for p in paths]
    else:
        raise ValueError(f"paths must be a folder or a list of files, got {quote(repr(paths), 200)}")
    if not found:
        raise ValueError(f"no mask images found in {quote(paths if isinstance(paths, str) else repr(paths), 200)}")
    return found


def _read_masks(paths, threshold: float, max_pixels: int) -> list[np.ndarray]:
    """Every readable mask of ``paths`` as bool (H, W, 1); a bad file is skipped with one
    warning (as the loader skips a bad image); none readable is one ValueError line."""
    found, loaded, bad = _mask_paths(paths), [], []
    for p in found:
        try:
            loaded.append(image_io.read_mask(p, threshold=threshold, max_pixels=max_pixels)[..., None])
        except image_io.InputError as e:
            bad.append(str(e))
            warnings.warn(f"skipping mask file: {e}", RuntimeWarning, stacklevel=3)
    if not loaded:
        raise ValueError(f"none of the {len(found)} mask files is readable (first: {bad[0]})")
    return loaded


def _files_fn(paths, threshold: float = image_io.MASK_THRESHOLD, min_ratio: float = 0.0,
              max_ratio: float = 1.0, max_pixels: int = image_io.MAX_PIXELS) -> MaskFn:
    """Masks from files, loaded once, one chosen per call and resized (nearest) to ``size``.

    Only masks whose hole covers ``min_ratio`` to ``max_ratio`` of the image are kept (the
    official random-mask models were trained on partial-conv masks of 20-30 %). Masks are
    kept as bool (1 byte a pixel) and returned as float32."""
    loaded = _read_masks(paths, threshold, max_pixels)
    ratios = [float(m.mean()) for m in loaded]
    kept = [m for m, r in zip(loaded, ratios) if min_ratio <= r <= max_ratio]
    if not kept:
        raise ValueError(f"no mask in {quote(paths if isinstance(paths, str) else repr(paths), 200)} "
                         f"has a hole ratio in [{min_ratio}, {max_ratio}] "
                         f"(their ratios: {min(ratios):.3f} to {max(ratios):.3f})")
    loaded = kept

    def fn(rng: np.random.Generator, size) -> np.ndarray:
        check_rng(rng)
        out_size = as_pair(size, "size")
        mask = loaded[int(rng.integers(0, len(loaded)))]
        return as_mask((mask if mask.shape[:2] == out_size else resize_nearest(mask, out_size))[..., 0])
    return fn


# ----------------------------------------------------------------------------
# Specs and batches
# ----------------------------------------------------------------------------

_DEFAULT_MIX = {"rect": 1.0, "island": 1.0, "strokes": 1.0}

_GENERATORS = {
    "center": center_mask,
    "rect": random_rect_mask,
    "island": island_mask,
    "strokes": stroke_mask,
}
KINDS = ("center", "rect", "island", "strokes", "mix", "files")


def _options(fn, options: dict, kind: str) -> None:
    """Raise a clear error for options that ``fn`` does not take."""
    allowed = [n for n in inspect.signature(fn).parameters if n not in ("rng", "size")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for mask kind {kind!r}; valid: {allowed}")


def parse_mask_spec(text: str):
    """``"kind"`` or ``"kind:option=value,..."`` (a command-line friendly spec) -> spec.

    Values are read as int, then float, else kept as strings:
    ``parse_mask_spec("rect:min_size=32,max_size=96")`` ->
    ``{"kind": "rect", "min_size": 32, "max_size": 96}``.
    """
    kind, _, rest = str(text).partition(":")
    spec = {"kind": kind.strip()}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"mask option {item!r} in {text!r} must look like name=value")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                pass
        spec[key.strip()] = value
    return spec


def check_mask_spec(spec):
    """Raise ValueError (one line) for a spec :func:`make_mask_fn` would refuse, without
    reading a mask file (a ``files`` spec's folder is listed, not decoded)."""
    make_mask_fn(spec, load_files=False)


def make_mask_fn(spec, *, load_files: bool = True) -> MaskFn:
    """A mask function ``fn(rng, size) -> (H, W, 1) float32`` from a spec.

    The one builder behind ``--config.data.mask``, ``eval.py --masks`` and the
    data loader.

    Args:
      spec: a kind name -- "center", "rect", "island", "strokes", "mix" (equal
        weights of rect, island, strokes) --, a command-line spec
        ``"kind:option=value,..."`` (:func:`parse_mask_spec`), a folder of mask
        images (kind "files"), or a dict with a "kind" key and that kind's options, e.g.
        ``{"kind": "rect", "min_size": 32, "max_size": 128}``,
        ``{"kind": "center", "overlap": 4}``,
        ``{"kind": "mix", "kinds": {"center": 1, "strokes": {"weight": 3, "max_strokes": 3}}}``
        (on the command line ``mix:center=1,strokes=3``),
        ``{"kind": "files", "paths": "masks/", "threshold": 127}`` (a folder or a list of
        files; bright = hole as :mod:`shiftnet_jax.data.image_io` reads masks; loaded once,
        resized with nearest neighbour).

    Returns:
      A function of (rng, size); size is an int or (H, W). "center" ignores rng.
    """
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        head = text.partition(":")[0].strip()
        if head not in KINDS and os.path.isdir(text):
            spec = {"kind": "files", "paths": text}
        elif head not in KINDS:
            raise ValueError(f"unknown mask kind {head!r}: use one of {', '.join(KINDS[:-1])} "
                             "(optionally kind:option=value,...) or a folder of mask images")
        else:
            spec = parse_mask_spec(text)
    if isinstance(spec, Mapping):
        options = dict(spec)
        kind = options.pop("kind", None)
        if not isinstance(kind, str):
            raise ValueError(f"mask spec dict needs a 'kind' string, one of {KINDS}; got {spec!r}")
    else:
        raise ValueError(f"mask spec must be a kind name or a dict with 'kind', got {spec!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; valid kinds: {', '.join(KINDS)}")

    if kind == "mix":
        # "mix:center=1,strokes=2" names the kinds and their weights directly.
        kinds = options.pop("kinds", None) if "kinds" in options else (dict(options) or None)
        extra = sorted(set(options) - set(kinds or {}))
        if extra:
            raise ValueError(f"unknown option(s) {extra} for mask kind 'mix'; valid: 'kinds' "
                             "or kind=weight pairs such as mix:center=1,strokes=2")
        return _mixture_fn(*_mixture_parts(kinds or _DEFAULT_MIX, load_files))
    if kind == "files":
        extra = sorted(set(options) - {"paths", "threshold", "min_ratio", "max_ratio", "max_pixels"})
        if extra or "paths" not in options:
            raise ValueError("mask kind 'files' takes the options 'paths' (a folder or a list of files), "
                             "'threshold' (8-bit strength above which a pixel is a hole, default 0) "
                             "'min_ratio', 'max_ratio' (keep masks whose hole covers that share) "
                             "and 'max_pixels' (larger files are skipped)")
        if not load_files:   # check_mask_spec: the files exist; reading them is the run's job
            _mask_paths(options["paths"])
            return None
        return _files_fn(options["paths"], options.get("threshold", image_io.MASK_THRESHOLD),
                         float(options.get("min_ratio", 0.0)), float(options.get("max_ratio", 1.0)),
                         int(options.get("max_pixels", image_io.MAX_PIXELS)))

    generator = _GENERATORS[kind]
    _options(generator, options, kind)
    if kind == "center":
        def center_fn(rng, size):  # deterministic: rng is accepted for a uniform signature
            return center_mask(size, **options)
        return center_fn

    def fn(rng, size):
        return generator(rng, size, **options)
    return fn


def batch_masks(fn: MaskFn, rng: np.random.Generator, batch: int, size) -> np.ndarray:
    """``batch`` masks, a fresh one per image (the reference shares one per batch).

    Args:
      fn: mask function ``fn(rng, size)`` (e.g. from :func:`make_mask_fn`).
      rng: random generator, advanced by each draw.
      batch: number of masks (>= 1).
      size: image side, int or (H, W).

    Returns:
      (B, H, W, 1) float32, 1 = hole.
    """
    check_rng(rng)
    if not isinstance(batch, (int, np.integer)) or isinstance(batch, bool) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    height, width = as_pair(size, "size")
    masks = [np.asarray(fn(rng, (height, width)), np.float32) for _ in range(batch)]
    for m in masks:
        if m.shape != (height, width, 1):
            raise ValueError(f"mask function returned shape {m.shape}, expected {(height, width, 1)}")
    return np.stack(masks)
