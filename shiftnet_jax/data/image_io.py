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
import math
import os
import stat

import numpy as np
from PIL import Image, ImageOps

from shiftnet_jax.errors import UserError, escaped, first_line, write_atomically

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
MASK_THRESHOLD = 0  # a mask pixel is a hole when its 8-bit strength is > this

# Limits of one decode (every reader takes them as keyword arguments).
MAX_PIXELS = 50_000_000        # the studio and training; inpaint.py / eval.py: CLI_MAX_PIXELS
CLI_MAX_PIXELS = 100_000_000   # inpaint.py / eval.py --max-megapixels (Pillow refuses > ~179 MP)
MAX_FILE_BYTES = 256 << 20     # an encoded file (a 100 MP JPEG is ~50 MB)
MAX_JPEG_SCANS = 64            # libjpeg's progressive script writes 10 scans
MAX_SCAN_PIXELS = 1_000_000_000  # scans x pixels of a JPEG (~1 ns each: ~1 s of decoding)
# The containers decoded: their header's size is the size of the first frame, which is
# the one decoded (animated GIF/PNG/WebP and multi-page TIFF: the first frame only).
# ICO/ICNS/TGA/PSD... are refused: an .ico's directory can say 16x16 around a 13000x13000 PNG.
FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "TIFF", "PPM", "GIF")

_ORIENTATION = 0x0112  # the EXIF tag
# Errors Pillow raises for bad or hostile files.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class InputError(UserError):
    """A bad input file or upload; the message is one line and names it."""


class ImageTooLarge(InputError):
    """An image over a limit of the decoder (pixels, bytes, JPEG scans); the message names it."""


def is_image_file(name) -> bool:
    """True for a visible file name with one of :data:`IMAGE_EXTENSIONS`."""
    name = os.path.basename(os.fspath(name))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def walk_files(root):
    """``(folder, [file names])`` of every folder under ``root``, sorted; symbolic links to
    files are followed, links to folders only when they lead out of the folders already
    walked (``a -> .`` or ``b -> ..`` would loop forever)."""
    seen = set()
    stack = [os.fspath(root)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue  # unreadable or vanished: nothing of ours to list
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        files, subdirs = [], []
        for entry in entries:
            try:
                (subdirs if entry.is_dir() else files).append(entry.name)
            except OSError:
                continue
        yield folder, files
        stack.extend(os.path.join(folder, d) for d in reversed(subdirs))


def list_images(root) -> list[str]:
    """Every image file under ``root`` (recursive, sorted; links followed, never in a loop)."""
    return sorted(os.path.join(d, f) for d, files in walk_files(root) for f in files if is_image_file(f))


def _name(source) -> str:
    return "upload" if isinstance(source, (bytes, bytearray, memoryview)) else escaped(os.fspath(source))


def _read_bytes(source, max_bytes: int) -> bytes:
    """The encoded bytes of a path or a bytes object, at most ``max_bytes`` of them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        try:
            st = os.stat(source)
        except OSError:
            raise InputError(f"{_name(source)}: no such file") from None
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{_name(source)}: not a regular file")
        if st.st_size > max_bytes:
            raise ImageTooLarge(f"{_name(source)}: {st.st_size / 2**20:.3g} MB; the limit is "
                                f"{max_bytes / 2**20:.3g} MB")
        try:
            with open(source, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise InputError(f"{_name(source)}: cannot read ({first_line(e)})") from None
    if len(data) > max_bytes:
        raise ImageTooLarge(f"{_name(source)}: {len(data) / 2**20:.3g} MB; the limit is "
                            f"{max_bytes / 2**20:.3g} MB")
    return data


def _check_size(width: int, height: int, max_pixels: int, name: str):
    if width * height > max_pixels:
        raise ImageTooLarge(f"{name}: {width}x{height} is {width * height / 1e6:.3g} megapixels; "
                            f"the limit is {max_pixels / 1e6:.3g}")


def _check_jpeg_scans(data: bytes, pixels: int, name: str):
    """Refuse a JPEG whose scans (SOS markers) would take long to decode: each scan of a
    progressive JPEG refines every pixel again (a 49 MP file with its last scan repeated
    4,000 times is 0.5 MB and ~3 minutes of decoding)."""
    scans = data.count(b"\xff\xda")  # entropy-coded 0xFF bytes are stuffed (FF 00): only markers
    if scans > MAX_JPEG_SCANS or scans * pixels > MAX_SCAN_PIXELS:
        raise ImageTooLarge(f"{name}: a JPEG of {scans} scans over {pixels / 1e6:.3g} megapixels; the "
                            f"limits are {MAX_JPEG_SCANS} scans and {MAX_SCAN_PIXELS / 1e9:.3g}e9 "
                            "scan-pixels")


def _open(source, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES,
          min_side: int | None = None) -> Image.Image:
    """A path or encoded bytes -> its first frame, decoded and EXIF-rotated, within the limits.

    Raises :class:`ImageTooLarge` before any pixel is decoded when the frame's size, the file's
    bytes or a JPEG's scans exceed the limits, and Pillow's errors for bad data. ``min_side``:
    a JPEG at least twice that size on both sides is decoded at 1/2, 1/4 or 1/8 scale by
    libjpeg (PIL's ``draft``), keeping both sides >= ``min_side`` (a quarter of the work at 1/2)."""
    name = _name(source)
    data = _read_bytes(source, max_bytes)
    with Image.open(io.BytesIO(data), formats=FORMATS) as im:
        _check_size(*im.size, max_pixels, name)
        if im.format in ("JPEG", "MPO"):
            _check_jpeg_scans(data, im.size[0] * im.size[1], name)
        if min_side and im.format == "JPEG":
            im.draft("RGB", (min_side, min_side))
        im.load()  # the full decode happens here, so truncated files raise here
        _check_size(*im.size, max_pixels, name)  # the frame decoded is the one measured
        if im.getexif().get(_ORIENTATION, 1) == 1:
            return im  # upright: no copy (exif_transpose would copy every pixel)
        return ImageOps.exif_transpose(im)


def to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Any PIL image (grey, palette, alpha, 16-bit, float, CMYK) -> uint8 (H, W, 3)."""
    return np.asarray(to_rgb_image(im), dtype=np.uint8)


def to_rgb_image(im: Image.Image) -> Image.Image:
    """Any PIL image -> an RGB PIL image, with :func:`to_rgb_uint8`'s rules."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):  # high bit depth grey
        a = np.asarray(im, dtype=np.float32)
        if im.mode == "F" and a.max(initial=0) <= 1.0:
            a *= 255.0
        elif im.mode != "F" and (im.mode.startswith("I;16") or a.max(initial=0) > 255):
            a /= 257.0  # 16-bit range -> 8-bit
        g = np.clip(np.rint(a, out=a), 0, 255, out=a).astype(np.uint8)
        return Image.fromarray(np.repeat(g[..., None], 3, axis=-1))
    if "A" in im.mode or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")  # composite transparency over white
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba)
    return im.convert("RGB")


def decode_image(data, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """A file path or encoded bytes -> uint8 (H, W, 3); raises Pillow's errors on bad data and
    :class:`ImageTooLarge` over the limits."""
    return to_rgb_uint8(_open(data, max_pixels, max_bytes))


def open_rgb(data, min_side: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Like :func:`decode_image`, as an RGB PIL image; with ``min_side`` a large JPEG
    is decoded at a reduced scale that keeps both sides >= ``min_side`` (see ``_open``)."""
    return to_rgb_image(_open(data, max_pixels, MAX_FILE_BYTES, min_side))


def mask_hole(im: Image.Image, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """bool (H, W): pixels whose strength (module docstring) is > ``threshold``; computed on the
    8-bit (or 16-bit) values themselves, one channel at a time, never as float64 copies."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return a > (threshold / 255.0 if a.max(initial=0) <= 1.0 else threshold)
    if im.mode == "I" or im.mode.startswith("I;16"):  # strength = value / 257
        return np.asarray(im) > math.floor(threshold * 257)  # int32 / uint16 compare with an int
    if im.mode not in ("1", "L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.mode else "RGB")
    if im.mode == "1":
        im = im.convert("L")
    # Holes lie inside the box of nonzero pixels (of nonzero alpha with alpha): one pass in C,
    # and the work below is done on that box only (all of a black or transparent mask: none).
    hole = np.zeros(im.size[::-1], bool)
    box = im.getbbox()
    if box is None or threshold >= 255:
        return hole if threshold >= 0 else ~hole
    if threshold < 0:
        return ~hole
    part = im.crop(box)
    bands = part.getbands()
    strength = np.asarray(part.getchannel(0))
    for i in range(1, len(bands) - ("A" in bands)):
        strength = np.maximum(strength, np.asarray(part.getchannel(i)))
    if "A" not in bands:  # an integer > t  <=>  > floor(t)
        inside = strength > math.floor(threshold)
    else:  # strength * alpha / 255 > t  <=>  strength * alpha > floor(255 t)  (integers <= 65025)
        inside = strength.astype(np.uint16) * np.asarray(part.getchannel("A")) > math.floor(threshold * 255)
    hole[box[1]:box[3], box[0]:box[2]] = inside
    return hole


def decode_mask(data, threshold: float = MASK_THRESHOLD, max_pixels: int = MAX_PIXELS,
                max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """A mask file path or encoded bytes -> bool (H, W), True = hole (strength > ``threshold``)."""
    return mask_hole(_open(data, max_pixels, max_bytes), threshold)


class _Decoding:
    """``with _Decoding(source, what):`` turns Pillow's errors into one-line :class:`InputError`."""

    def __init__(self, source, what: str):
        self.source, self.what = source, what

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb):
        if kind is None or not issubclass(kind, _DECODE_ERRORS) or isinstance(e, InputError):
            return False
        name = _name(self.source)
        if isinstance(e, Image.DecompressionBombError):
            raise ImageTooLarge(f"{name}: {first_line(e)}") from None
        if isinstance(e, Image.UnidentifiedImageError):
            raise InputError(f"{name}: not a readable {self.what} (unknown or damaged format; "
                             f"formats read: {', '.join(FORMATS)})") from None
        raise InputError(f"{name}: not a readable {self.what} ({first_line(e)})") from None


def read_image(source, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Like :func:`decode_image` (path or bytes), but every failure is a one-line :class:`InputError`
    (:class:`ImageTooLarge` over a limit)."""
    with _Decoding(source, "image"):
        return decode_image(source, max_pixels, max_bytes)


def read_mask(source, shape: tuple[int, int] | None = None, threshold: float = MASK_THRESHOLD,
              max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Like :func:`decode_mask`, checking ``shape`` = (H, W); failures are one-line :class:`InputError`."""
    with _Decoding(source, "mask image"):
        hole = decode_mask(source, threshold, max_pixels, max_bytes)
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
    # Encoded in memory first: the space it needs is known before writing.
    write_atomically(path, encode_png(image))


def encode_png(image: np.ndarray, compress_level: int = 6) -> bytes:
    """uint8 (H, W[, 3]) -> PNG bytes (zlib ``compress_level`` 0-9: Pillow's default 6)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
