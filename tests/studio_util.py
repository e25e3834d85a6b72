"""Helpers for the studio tests: a tiny checkpoint, real photographs, a real server."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from conftest import key
from PIL import Image

from shiftnet_jax import checkpoint
from shiftnet_jax.data import image_io, sources
from shiftnet_jax.nets.generator import ShiftNetGenerator

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


def tiny_checkpoint(path) -> Path:
    """An untrained ngf-4, 5-level generator (sides multiples of 32, working size 64)."""
    model = ShiftNetGenerator(ngf=4, num_downs=5)
    variables = jax.jit(model.init)(key(), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 64, 64, 1)))
    checkpoint.export_generator(path, {"ngf": 4, "num_downs": 5}, variables,
                                config={"data": {"crop_size": 64, "load_size": 72}})
    return Path(path)


def photo_paths() -> list[str]:
    """Real photographs: the shared set if it is beside the checkout, else scikit-image's."""
    if PHOTOS.is_dir():
        found = sorted(str(p) for p in PHOTOS.glob("*.jpg"))
        if found:
            return found
    return sources.SampleSource("train").paths + sources.SampleSource("test").paths


def crops(n: int, size=(120, 160)) -> list[np.ndarray]:
    """``n`` different uint8 crops of real photographs, cycling through the photos."""
    paths = photo_paths()
    out = []
    for i in range(n):
        photo = image_io.decode_image(paths[i % len(paths)])
        h, w = size
        top = (37 * i) % max(1, photo.shape[0] - h)
        left = (53 * i) % max(1, photo.shape[1] - w)
        out.append(np.ascontiguousarray(photo[top:top + h, left:left + w]))
    return out


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def decode_png(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)))


def rect_mask(h, w, top, left, bottom, right) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[top:bottom, left:right] = True
    return m


@contextlib.contextmanager
def running_server(app):
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    from shiftnet_jax.studio import server

    sock = server.bind("127.0.0.1", 0)
    srv = server.make_server(app, sock)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "the studio server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()
