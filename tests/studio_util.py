"""Helpers for the studio tests: a tiny checkpoint, real photographs, a real server."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_checkpoint  # noqa: F401  (the studio tests' checkpoint)
from PIL import Image

from shiftnet_jax.data import image_io, sources

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"


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


@contextlib.contextmanager
def chromium():
    """The system's Chromium, headless, through Playwright (its own browser download is not
    used); the test is skipped, with the reason, where either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    names = (os.environ.get("STUDIO_CHROMIUM"), "chromium", "chromium-browser", "google-chrome")
    path = next((found for found in (name and shutil.which(name) for name in names) if found), None)
    if path is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium, or set STUDIO_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()
