"""The studio's model side: checkpoints in memory, uploads decoded, one forward at a time.

Every call into the decoding and inference library sits in the *adapter*
section below, so that moving those functions elsewhere changes a few lines
here and nothing in the server.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shiftnet_jax import checkpoint
from shiftnet_jax.data import image_io
from shiftnet_jax.inference import framing, inpaint
from shiftnet_jax.inference.predict import default_size
from shiftnet_jax.studio.uploads import (  # noqa: F401 - the server's names for them
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    BadInput,
    Forbidden,
    TooLarge,
    UnknownModel,
    decode_image,
    decode_mask,
)


def default_checkpoints() -> list[str]:
    """Checkpoints served when ``--ckpt`` is not given: the small model bundled in the
    package (``checkpoint.BUNDLED_MODEL``), where it is present."""
    bundled = checkpoint.BUNDLED_MODEL
    return [str(bundled)] if (bundled / checkpoint.CONFIG_FILE).is_file() else []


# ------------------------------------------------------------------ adapter
# The only place that decodes uploads, loads checkpoints and runs the model.
def load_checkpoint(path):
    """``(model, variables, config)``; raises checkpoint.NotACheckpointError (one line)."""
    return checkpoint.load_generator(path)


def run_inpaint(model, variables, image, mask, size: int, dilate_px: int,
                strategy: str = framing.DEFAULT_STRATEGY) -> np.ndarray:
    return inpaint.inpaint_image(model, variables, image, mask, size=size, dilate_px=dilate_px,
                                 strategy=strategy)


def run_flow(model, variables, image, mask, size: int, dilate_px: int,
             strategy: str = framing.DEFAULT_STRATEGY) -> list[dict]:
    return inpaint.shift_sources(model, variables, image, mask, size=size, dilate_px=dilate_px,
                                 strategy=strategy)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of the same pixels ``inpaint.py`` writes (another zlib level, so other bytes)."""
    # Fast zlib level: 4x quicker than PIL's default 6 for ~15% more bytes; same pixels.
    return image_io.encode_png(image, compress_level=1)


# -------------------------------------------------------------- end adapter


def flow_json(views: list[dict], image_shape: tuple[int, int], strategy: str) -> dict:
    """``inpaint.shift_sources`` output -> the JSON body of ``POST /api/flow``: per window
    (the part of the photo the network saw) its grid, the source of every hole position,
    and the positions that were partly painted but counted as known at the shift layer."""
    height, width = image_shape
    windows = []
    for view in views:
        w, hole, painted = view["window"], view["hole"], view["painted"]
        gh, gw = hole.shape
        positions = []
        for y, x in zip(*np.nonzero(hole)):
            src = view["source"][y, x]
            positions.append({"y": int(y), "x": int(x), "painted": round(float(painted[y, x]), 3),
                              "source": [int(src[0]), int(src[1])] if view["valid"][y, x] else None})
        known = np.nonzero((painted > 0) & ~hole)
        windows.append({
            "origin": {"y": w.top, "x": w.left},
            "size": {"height": w.shape[0], "width": w.shape[1]},
            "working": {"height": int(view["working"][0]), "width": int(view["working"][1])},
            "grid": {"height": gh, "width": gw},
            # Grid cell (y, x) covers photo rows origin.y + [y * cell.height, (y + 1) * cell.height).
            "cell": {"height": w.shape[0] / gh, "width": w.shape[1] / gw},
            "positions": positions,
            # Partly under the brush, yet known to the shift (its feature kept, a possible source).
            "partly_painted": [{"y": int(y), "x": int(x), "painted": round(float(painted[y, x]), 3)}
                               for y, x in zip(*known)],
        })
    return {"image": {"height": height, "width": width}, "strategy": strategy, "windows": windows}


@dataclass
class Model:
    name: str
    path: str
    model: object
    variables: object
    config: dict
    size: int  # working size: the longer side the network sees

    def describe(self) -> dict:
        # The folder's name only: answers never show this machine's paths.
        return {"name": self.name, "checkpoint": Path(self.path).name, "step": self.config.get("step"),
                "working_size": self.size, "multiple": self.model.size_multiple,
                "ngf": self.model.ngf, "num_downs": self.model.num_downs}


def load_models(paths, size: int | None = None) -> list[Model]:
    """One :class:`Model` per distinct checkpoint directory, named after its folder."""
    models, seen = [], set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        model, variables, config = load_checkpoint(path)
        name = base = Path(real).name or "model"
        k = 2
        while any(m.name == name for m in models):
            name, k = f"{base}-{k}", k + 1
        models.append(Model(name, str(path), model, variables, config, size or default_size(config)))
    return models


@dataclass
class Engine:
    """The models, and a single device thread: requests queue in arrival order,
    so two forwards never run at once and each caller gets its own result."""

    models: list[Model]
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    _device: ThreadPoolExecutor = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    queued: int = field(init=False, default=0)

    def __post_init__(self):
        if not self.models:
            raise ValueError("the studio needs at least one model")
        self._device = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-device")

    def model(self, name: str | None) -> Model:
        if not name:
            return self.models[0]
        for m in self.models:
            if m.name == name:
                return m
        raise UnknownModel(f"unknown model {name!r} (available: {', '.join(m.name for m in self.models)})")

    def health(self) -> dict:
        return {"status": "ok", "models": [m.describe() for m in self.models],
                "strategies": list(framing.STRATEGIES), "default_strategy": framing.DEFAULT_STRATEGY,
                "default_model": self.models[0].name, "queued": self.queued,
                "limits": {"max_upload_bytes": self.max_bytes, "max_pixels": self.max_pixels}}

    async def on_device(self, fn, *args, gone=None):
        """Run ``fn(*args)`` on the device thread (FIFO) and await its result; skipped (None)
        when ``gone`` (a threading.Event: the client went away) is set by the time its turn comes."""
        with self._lock:
            self.queued += 1

        def run():
            return None if gone is not None and gone.is_set() else fn(*args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._device, run)
        finally:
            with self._lock:
                self.queued -= 1

    async def inpaint(self, m: Model, image, mask, dilate_px: int,
                      strategy: str = framing.DEFAULT_STRATEGY, gone=None) -> np.ndarray | None:
        return await self.on_device(run_inpaint, m.model, m.variables, image, mask, m.size, dilate_px,
                                    strategy, gone=gone)

    async def flow(self, m: Model, image, mask, dilate_px: int,
                   strategy: str = framing.DEFAULT_STRATEGY, gone=None) -> dict | None:
        views = await self.on_device(run_flow, m.model, m.variables, image, mask, m.size, dilate_px,
                                     strategy, gone=gone)
        return None if views is None else flow_json(views, image.shape[:2], strategy)

    def close(self):
        self._device.shutdown(wait=False, cancel_futures=True)
