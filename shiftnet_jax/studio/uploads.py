"""The studio's uploads: refusals as HTTP codes, and the decoders (no JAX here).

Uploads are decoded by :mod:`shiftnet_jax.data.image_io` exactly as ``inpaint.py``
decodes files, with the studio's limits; at most :data:`MAX_DECODING` uploads are
decoded at once (each holds up to ~10 bytes a pixel while it is decoded), the
others wait their turn.
"""

from __future__ import annotations

import threading

import numpy as np

from shiftnet_jax.data import image_io
from shiftnet_jax.errors import UserError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PIXELS = image_io.MAX_PIXELS
MAX_DECODING = 2   # uploads decoded at the same time (a 50 MP one peaks at ~0.5 GB)
_decoding = threading.BoundedSemaphore(MAX_DECODING)


class BadInput(UserError):
    """A request the studio refuses; ``status`` is the HTTP code, the message one line."""

    status = 400


class TooLarge(BadInput):
    status = 413


class UnknownModel(BadInput):
    status = 404


class Forbidden(BadInput):
    status = 403


def _upload_error(e: image_io.InputError, what: str) -> BadInput:
    """An image_io error about an upload -> the studio's 400 (413 over a limit), naming the field."""
    rest = str(e).removeprefix("upload: ")
    kind = TooLarge if isinstance(e, image_io.ImageTooLarge) else BadInput
    return kind(rest if rest.startswith(what + " ") else f"{what}: {rest}")


def decode_image(blob: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Upload -> uint8 (H, W, 3), decoded exactly as ``inpaint.py`` decodes files (and with the
    same limits: the first frame's pixels, JPEG scans)."""
    with _decoding:
        try:
            return image_io.read_image(bytes(blob), max_pixels)
        except image_io.InputError as e:
            raise _upload_error(e, "image") from None


def decode_mask(blob: bytes, shape: tuple[int, int] | None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Upload -> bool (H, W), True = hole, by the one mask rule of ``image_io`` (nonzero = hole)."""
    with _decoding:
        try:
            return image_io.read_mask(bytes(blob), shape, max_pixels=max_pixels)
        except image_io.InputError as e:
            raise _upload_error(e, "mask") from None
