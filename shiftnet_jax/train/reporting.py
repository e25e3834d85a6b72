"""What training writes for people to look at: JSONL and TensorBoard metrics, PNG grids
(written by :func:`shiftnet_jax.data.image_io.save_png`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shiftnet_jax.data.image_io import to_uint8
from shiftnet_jax.inference.metrics import composite


class MetricWriter:
    """Scalars to ``metrics.jsonl`` (one JSON object per line) and TensorBoard events."""

    def __init__(self, workdir, enabled: bool = True):
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(workdir / "metrics.jsonl", "a", buffering=1)
        try:
            from tensorboardX import SummaryWriter
            self._tb = SummaryWriter(str(workdir / "tensorboard"))
        except ImportError:  # TensorBoard files are optional; JSONL is always written
            self._tb = None

    def write(self, step: int, scalars: dict):
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), int(step))

    def close(self):
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()


def sample_grid(image, hole, output, max_rows: int = 4):
    """One row per image: masked input (hole in grey), raw output, composite, ground truth.

    image, output: (B, H, W, 3) in [-1, 1]; hole: (B, H, W, 1), 1 = missing.
    Returns a uint8 (rows * H, 4 * W, 3) array.
    """
    image, hole, output = (np.asarray(x, np.float32)[:max_rows] for x in (image, hole, output))
    masked = image * (1 - hole)   # the hole shows as 0, mid-grey in [-1, 1]
    filled = np.asarray(composite(output, image, hole))
    rows = [np.concatenate([masked[i], output[i], filled[i], image[i]], axis=1)
            for i in range(image.shape[0])]
    return to_uint8(np.concatenate(rows, axis=0))

