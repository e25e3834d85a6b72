"""Hostile image and mask files, built from raw bytes, and a runner for them.

Each case of :data:`CASES` writes one file (a few bytes to ~1 MB) that costs an
unguarded decoder minutes or gigabytes: a container whose header lies about the
frame it holds, a progressive JPEG of thousands of scans, a mask whose decoding
copies it to float64, text chunks that inflate. ``python tests/hostile_images.py
PATH ENTRY [KWARGS_JSON]`` reads one file the way ``ENTRY`` does (``image``:
``image_io.read_image``, ``mask``: ``read_mask``, ``studio-image`` / ``studio-mask``:
the studio's upload decoders) and prints one JSON line: the outcome, the one-line
message, the seconds taken and the peak resident memory. ``--table`` builds every
case and runs each in its own process (1 GiB address-space limit) to print the
table of outcomes.
"""
from __future__ import annotations

import io
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

from isolated import limit_memory, report, run_child, table_cells


# ---------------------------------------------------------------- PNG from raw chunks
def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, colour_type: int = 0) -> bytes:
    """A PNG's signature and IHDR chunk (8-bit) saying ``width`` x ``height``."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)


def png_of_zeros(width: int, height: int, colour_type: int = 0, channels: int = 1, extra=b"") -> bytes:
    """A ``width`` x ``height`` 8-bit PNG of zeros, deflated in blocks (never held raw)."""
    row = b"\x00" * (1 + width * channels)  # filter byte + pixels
    co, parts, rows_per_block = zlib.compressobj(1), [], max(1, (8 << 20) // len(row))
    block, done = row * rows_per_block, 0
    while done < height:
        n = min(rows_per_block, height - done)
        parts.append(co.compress(block if n == rows_per_block else row * n))
        done += n
    parts.append(co.flush())
    return png_header(width, height, colour_type) + extra + chunk(b"IDAT", b"".join(parts)) + \
        chunk(b"IEND", b"")


def ico_around(png: bytes, said: int = 16) -> bytes:
    """An .ico whose directory says ``said`` x ``said`` around the PNG ``png``."""
    header = struct.pack("<HHH", 0, 1, 1)
    entry = struct.pack("<BBBBHHII", said, said, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


def _pillow(image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def progressive_jpeg(side: int, repeat_last: int) -> bytes:
    """A progressive ``side`` x ``side`` JPEG whose last scan is repeated ``repeat_last`` more times."""
    from PIL import Image

    data = _pillow(Image.new("RGB", (side, side), (120, 130, 140)), "JPEG", progressive=True)
    last = data.rindex(b"\xff\xda")
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last:end] * repeat_last + data[end:]


# ---------------------------------------------------------------- the cases
def case_ico_16_around_13000(d):
    return ico_around(png_of_zeros(13000, 13000))


def case_png_header_10_gigapixels(d):
    # Only the header says 10 gigapixels (deflating them would take 30 s of the suite).
    return png_header(100_000, 100_000) + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + \
        chunk(b"IEND", b"")


def case_png_over_studio_limit(d):
    return png_of_zeros(8000, 8000)   # 64 MP of zeros: 64 KB


def case_rgba_7000_zeros_mask(d):
    return png_of_zeros(7000, 7000, colour_type=6, channels=4)   # 49 MP RGBA, ~150 KB


def case_progressive_4000_scans(d):
    return progressive_jpeg(7000, 4000)


def case_progressive_200_scans(d):
    return progressive_jpeg(3000, 190)


def case_progressive_10_scans(d):
    return progressive_jpeg(2000, 0)


def case_ztxt_bomb(d):
    text = b"Comment\x00\x00" + zlib.compress(b"\x00" * (256 << 20), 9)  # 256 MB of text in ~260 KB
    return png_of_zeros(16, 16, extra=chunk(b"zTXt", text))


def case_animated_gif(d):
    from PIL import Image

    frames = [Image.new("P", (32, 24), k) for k in (1, 2, 3)]
    return _pillow(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def case_tiff_two_pages(d):
    from PIL import Image

    return _pillow(Image.new("L", (16, 16), 255), "TIFF", save_all=True,
                   append_images=[Image.new("L", (4000, 4000), 0)], compression="tiff_deflate")


def case_truncated_png(d):
    return png_of_zeros(640, 480, colour_type=2, channels=3)[:-40]


def case_not_an_image(d):
    return b"GIF89a" + bytes(range(200))  # fixed bytes: a random header could declare a bomb


CASES = {  # name -> (entry, expected outcome, substring of the message or None)
    "ico_16_around_13000": ("studio-image", "BadInput", "unknown or damaged format"),
    "png_header_10_gigapixels": ("image", "ImageTooLarge", "(10000000000 pixels) exceeds limit"),
    "png_over_studio_limit": ("studio-image", "TooLarge", "8000x8000 is 64 megapixels; the limit is 50"),
    "rgba_7000_zeros_mask": ("studio-mask", "ok", None),
    "progressive_4000_scans": ("studio-image", "TooLarge", "a JPEG of 4010 scans"),
    "progressive_200_scans": ("image", "ImageTooLarge", "a JPEG of 200 scans over 9 megapixels"),
    "progressive_10_scans": ("image", "ok", None),
    "ztxt_bomb": ("image", "InputError", "not a readable image"),
    "animated_gif": ("image", "ok", None),
    "tiff_two_pages": ("mask", "ok", None),
    "truncated_png": ("image", "InputError", "not a readable image"),
    "not_an_image": ("mask", "InputError", "not a readable mask image"),
    "dev_zero": ("image", "InputError", "not a regular file"),
    "fifo": ("mask", "InputError", "not a regular file"),
}
# What a correct load gives: (height, width) and, for masks, the number of holes.
LOADS = {"rgba_7000_zeros_mask": ((7000, 7000), 0), "progressive_10_scans": ((2000, 2000), None),
         "animated_gif": ((24, 32), None), "tiff_two_pages": ((16, 16), 256)}


def build(name: str, directory: Path) -> Path:
    """Write the file of case ``name`` into ``directory`` and return its path."""
    if name == "dev_zero":
        return Path("/dev/zero")
    suffix = {"ico_16_around_13000": ".png", "animated_gif": ".gif", "tiff_two_pages": ".tif"}
    path = directory / f"{name}{suffix.get(name, '.jpg' if 'progressive' in name else '.png')}"
    if name == "fifo":
        os.mkfifo(path)
    else:
        path.write_bytes(globals()[f"case_{name}"](directory))
    return path


# ---------------------------------------------------------------- running one file, bounded
def run_isolated(path, entry: str, kwargs=None, timeout=20.0) -> dict:
    """Read ``path`` as ``entry`` in a child process with a 1 GiB address-space limit."""
    return run_child(__file__, [path, entry, json.dumps(kwargs or {})], timeout)


def _child(path: str, entry: str, kwargs: dict):
    limit_memory()
    from shiftnet_jax.data import image_io

    from shiftnet_jax.studio import uploads  # the studio's decoders, without the server (no JAX)

    start = time.perf_counter()
    try:
        if entry == "image":
            got = image_io.read_image(path, **kwargs)
        elif entry == "mask":
            got = image_io.read_mask(path, **kwargs)
        else:
            blob = Path(path).read_bytes()
            max_pixels = kwargs.get("max_pixels", 50_000_000)
            got = (uploads.decode_image(blob, max_pixels) if entry == "studio-image"
                   else uploads.decode_mask(blob, None, max_pixels))
        holes = int(got.sum()) if got.dtype == bool else None
        outcome, message = "ok", json.dumps({"shape": list(got.shape[:2]), "holes": holes})
    except (image_io.InputError, uploads.BadInput) as e:
        outcome, message = type(e).__name__, str(e)
    report(outcome, message, start)


def table():
    rows = ["| attack | read as | outcome | time (s) | peak RSS (MiB) | message |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, (entry, _, _) in CASES.items():
            rows.append(f"| {name} | {entry} | {table_cells(run_isolated(build(name, Path(tmp)), entry))}")
    print("\n".join(rows))


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        table()
    else:
        _child(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
