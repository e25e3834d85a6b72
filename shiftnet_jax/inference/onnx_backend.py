"""ONNX Runtime as the generator's backend on CPU (``inpaint.py --backend onnx``).

:class:`OnnxGenerator` stands in for the model in :mod:`shiftnet_jax.inference.inpaint`:
the first batch at a working size exports the generator (``shiftnet_jax.export``,
dynamic batch) and opens an ONNX Runtime session, later batches of that size reuse
it. Measured faster than XLA:CPU at batch 1 (BENCHMARKS.md, "ONNX Runtime"); the
output equals the JAX forward to ~1e-6.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from shiftnet_jax.errors import UserError
from shiftnet_jax.export import export_generator


class OnnxGenerator:
    """A generator and its variables, run by ONNX Runtime; has ``num_downs`` as the model."""

    def __init__(self, model, variables):
        try:
            import onnxruntime  # noqa: F401 - fail here, in one line, not at the first image
        except ImportError:
            raise UserError("--backend onnx needs the export extra: pip install -e '.[export]'") from None
        self.model, self.variables = model, variables
        self.num_downs = model.num_downs
        self._sessions: dict[tuple[int, int], object] = {}
        self._dir = tempfile.TemporaryDirectory(prefix="shiftnet_onnx_")

    def session(self, height: int, width: int):
        from shiftnet_jax.export import onnx as onnx_export

        if (height, width) not in self._sessions:
            path = Path(self._dir.name) / f"g{height}x{width}.onnx"
            export_generator(self.model, self.variables, "onnx", path, size=(height, width))
            self._sessions[height, width] = onnx_export.session(path)
        return self._sessions[height, width]

    def composite(self, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """image (B, H, W, 3) in [-1, 1], hole (B, H, W, 1) -> the known image outside the
        hole, the network's output inside (as ``predict.forward(...).composite``)."""
        image = np.ascontiguousarray(image, np.float32)
        hole = np.ascontiguousarray(hole, np.float32)
        output, = self.session(*image.shape[1:3]).run(None, {"image": image, "hole": hole})
        return hole * output + (1.0 - hole) * image
