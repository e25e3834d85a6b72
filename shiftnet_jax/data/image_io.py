"""One way in and out of the disk for images and masks: training, evaluation,
inpainting and the studio all decode through here.

Images: any file Pillow reads (RGB, RGBA, grey, palette, 16-bit, CMYK) or its
encoded bytes -> uint8 (H, W, 3) RGB. EXIF rotation is applied, 16-bit values
are divided by 257, transparency is composited over white.

Masks: the hole is where the mask is *bright*. Each pixel's strength is its
largest channel on the 8-bit scale (16-bit / 257), multiplied by alpha / 255
when the file has alpha (transparent pixels are never holes); a pixel is a
hole when its strength is ``> threshold``. The default threshold 0 is LaMa's
convention, "nonzero = hole"; ``threshold=127`` reads soft or anti-aliased
masks as the reference's mask folders do (white = hole, black = known).

Image files are recognised by :data:`IMAGE_EXTENSIONS` everywhere.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from shiftnet_jax.errors import UserError, first_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
MASK_THRESHOLD = 0  # a mask pixel is a hole when its 8-bit strength is > this

# Errors Pillow raises for bad or hostile files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class InputError(UserError):
    """A bad input file or upload; the message is one line and names it."""


def is_image_file(name) -> bool:
    """True for a visible file name with one of :data:`IMAGE_EXTENSIONS`."""
    name = os.path.basename(os.fspath(name))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(root) -> list[str]:
    """Every image file under ``root`` (recursive, sorted, links followed)."""
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root, followlinks=True)
                  for f in files if is_image_file(f))


def _open(data):
    """A path or encoded bytes -> an opened, fully decoded, EXIF-rotated PIL image."""
    with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data) as im:
        im.load()  # the full decode happens here, so truncated files raise here
        return ImageOps.exif_transpose(im)


def to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Any PIL image (grey, palette, alpha, 16-bit, float, CMYK) -> uint8 (H, W, 3)."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):  # high bit depth grey
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        elif im.mode != "F" and (im.mode.startswith("I;16") or a.max(initial=0) > 255):
            a = a / 257.0  # 16-bit range -> 8-bit
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    if "A" in im.mode or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")  # composite transparency over white
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode_image(data) -> np.ndarray:
    """A file path or encoded bytes -> uint8 (H, W, 3); raises Pillow's errors on bad data."""
    return to_rgb_uint8(_open(data))


def mask_strength(im: Image.Image) -> np.ndarray:
    """Per-pixel hole strength on the 8-bit scale, float (H, W); see the module docstring."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        return a * 255.0 if a.max(initial=0) <= 1.0 else a
    if im.mode == "I" or im.mode.startswith("I;16"):
        return np.asarray(im, dtype=np.float64) / 257.0
    if im.mode not in ("1", "L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.mode else "RGB")
    a = np.asarray(im, dtype=np.float64)
    if a.ndim == 2:
        return a * 255.0 if im.mode == "1" else a
    if im.mode in ("LA", "RGBA"):
        return a[..., :-1].max(-1) * (a[..., -1] / 255.0)
    return a.max(-1)


def decode_mask(data, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """A mask file path or encoded bytes -> bool (H, W), True = hole (strength > ``threshold``)."""
    return mask_strength(_open(data)) > threshold


def _name(source) -> str:
    return "upload" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)


def read_image(source) -> np.ndarray:
    """Like :func:`decode_image` (path or bytes), but every failure is a one-line :class:`InputError`."""
    if not isinstance(source, (bytes, bytearray, memoryview)) and not os.path.isfile(source):
        raise InputError(f"{_name(source)}: no such file")
    try:
        return decode_image(source)
    except _DECODE_ERRORS as e:
        raise InputError(f"{_name(source)}: not a readable image ({first_line(e)})") from None


def read_mask(source, shape: tuple[int, int] | None = None,
              threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """Like :func:`decode_mask`, checking ``shape`` = (H, W); failures are one-line :class:`InputError`."""
    if not isinstance(source, (bytes, bytearray, memoryview)) and not os.path.isfile(source):
        raise InputError(f"{_name(source)}: no such file")
    try:
        hole = decode_mask(source, threshold)
    except _DECODE_ERRORS as e:
        raise InputError(f"{_name(source)}: not a readable mask image ({first_line(e)})") from None
    if shape is not None and hole.shape != tuple(shape):
        raise InputError(f"{_name(source)}: mask is {hole.shape[1]}x{hole.shape[0]} but its image is "
                         f"{shape[1]}x{shape[0]} (width x height)")
    return hole


def as_rgb_uint8(image) -> np.ndarray:
    """An array (H, W), (H, W, 1|3|4), uint8 or uint16 -> uint8 (H, W, 3), as files are decoded."""
    a = np.asarray(image)
    if a.dtype == np.uint16:
        a = np.rint(a / 257.0).astype(np.uint8)
    if a.dtype != np.uint8:
        raise ValueError(f"image must be uint8 or uint16, got {a.dtype}")
    a = a[..., None] if a.ndim == 2 else a
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image must be (H, W) or (H, W, 1|3|4), got {a.shape}")
    if a.shape[-1] == 4:  # over white, like decoded files
        alpha = a[..., 3:].astype(np.float32) / 255.0
        a = np.rint(a[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a


def to_uint8(image) -> np.ndarray:
    """The model's [-1, 1] floats -> uint8 (rounded, clipped): how results are saved and scored."""
    return np.clip(np.round((np.asarray(image, np.float32) + 1) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(image):
    """uint8 (or any 0..255) values -> float32 in [-1, 1]; NumPy in, NumPy out; a jax array
    stays a jax array (so jitted code may call it)."""
    return image.astype(np.float32) / 127.5 - 1.0


def save_png(path, image: np.ndarray):
    """Write uint8 (H, W[, 3]) as PNG, creating parent folders; atomic (write, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(np.asarray(image)).save(tmp, format="PNG")
    os.replace(tmp, path)


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """uint8 (H, W[, 3]) -> PNG bytes (zlib ``compress_level`` 0-9: Pillow's default 6)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
