"""Build the studio's local mode (``/local``): onnxruntime-web and an exported model.

    python -m shiftnet_jax.studio.build_local [--ckpt DIR] [--size S]

1. ``npm install onnxruntime-web@VERSION`` (the npm registry, at build time) into a
   scratch folder, then copies the three files the page loads (the WASM build of
   the runtime: ``ort.wasm.min.js``, its loader ``ort-wasm-simd-threaded.mjs`` and
   ``ort-wasm-simd-threaded.wasm``, ~14 MB) into ``static/vendor/onnxruntime-web/``;
2. exports the model (default: the bundled demo) as the uint8 ONNX pipeline
   (``python -m shiftnet_jax.export --pipeline``) to ``static/vendor/models/``.

``static/vendor/`` is not committed (git-ignored): it is built. Nothing is fetched
when the page runs; the photo never leaves the browser. ``NAME.json`` records the
checkpoint the model was exported from (:mod:`shiftnet_jax.studio.local_models`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from shiftnet_jax import checkpoint
from shiftnet_jax.errors import UserError, one_line
from shiftnet_jax.export import export_checkpoint
from shiftnet_jax.studio import local_models
from shiftnet_jax.studio.local_models import DEFAULT_MODEL, MODELS_DIR, ORT_FILES, RUNTIME_DIR

ORT_WEB_VERSION = "1.30.0"


def install_runtime(version: str = ORT_WEB_VERSION) -> Path:
    """npm install onnxruntime-web into a scratch folder; copy the page's files."""
    npm = shutil.which("npm")
    if npm is None:
        raise UserError("npm is not installed (apt-get install npm); it fetches onnxruntime-web")
    with tempfile.TemporaryDirectory(prefix="ortweb_") as scratch:
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--ignore-scripts",
                                 "--prefix", scratch, f"onnxruntime-web@{version}"],
                                capture_output=True, text=True, timeout=600)
        if result.returncode:
            raise UserError(one_line(f"npm install onnxruntime-web@{version} failed: "
                                     f"{(result.stderr or result.stdout).strip()[-200:]}"))
        dist = Path(scratch) / "node_modules" / "onnxruntime-web" / "dist"
        RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
        for name in ORT_FILES:
            shutil.copyfile(dist / name, RUNTIME_DIR / name)
    (RUNTIME_DIR / "VERSION").write_text(version + "\n")
    return RUNTIME_DIR


def export_model(ckpt_dir, name: str = DEFAULT_MODEL, size: int | None = None) -> Path:
    """The uint8 pipeline ONNX of ``ckpt_dir`` as ``models/NAME.onnx`` + ``NAME.json``."""
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    path, size = export_checkpoint(ckpt_dir, "onnx", MODELS_DIR / f"{name}.onnx", size=size,
                                   pipeline=True)
    local_models.record(name, size, ckpt_dir)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled demo model)")
    p.add_argument("--size", type=int, default=None, help="working size (default: training crop)")
    p.add_argument("--version", default=ORT_WEB_VERSION, help="onnxruntime-web version")
    args = p.parse_args(argv)
    try:
        runtime = install_runtime(args.version)
        model = export_model(args.ckpt or checkpoint.BUNDLED_MODEL, size=args.size)
    except (UserError, checkpoint.NotACheckpointError, OSError, subprocess.TimeoutExpired) as e:
        print(one_line(f"error: {e}"), file=sys.stderr)
        return 1
    print(f"wrote {runtime} (onnxruntime-web {args.version}) and {model}; "
          "open http://127.0.0.1:8000/local after python serve.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
