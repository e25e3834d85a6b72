"""The studio's local-mode models: where they are built, and whether each is still the
model it was exported from.

``static/vendor/models/NAME.onnx`` is built by ``python -m shiftnet_jax.studio.build_local``;
beside it ``NAME.json`` records the working size, the checkpoint it was exported from and
a digest of that checkpoint's files. A model built before its checkpoint changed (a newer
bundled model after ``git pull``, a retrained workdir) is reported by :func:`problem` in
one line, which the local page shows, instead of silently answering for the new one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path

ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
VENDOR = Path(__file__).resolve().parent / "static" / "vendor"
RUNTIME_DIR = VENDOR / "onnxruntime-web"
MODELS_DIR = VENDOR / "models"
DEFAULT_MODEL = "demo"
FIX = "run python -m shiftnet_jax.studio.build_local"


def is_name(name: str) -> bool:
    """A model name the local page may ask for (no path: letters, digits, ``_.-``)."""
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name) is not None


def is_built() -> bool:
    """The runtime's files and the default model are there (whatever they were built from)."""
    return all((RUNTIME_DIR / f).is_file() for f in ORT_FILES) and \
        (MODELS_DIR / f"{DEFAULT_MODEL}.onnx").is_file()


def _digest(folder) -> str:
    """sha256 over the relative paths and contents of every file under ``folder``."""
    folder = Path(folder)
    stats = sorted((str(p.relative_to(folder)), p.stat()) for p in folder.rglob("*") if p.is_file())
    stamp = tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)
    return _digest_of(str(folder), stamp)


@functools.lru_cache(maxsize=16)
def _digest_of(folder: str, stamp) -> str:   # ``stamp``: unchanged files are not re-read
    h = hashlib.sha256()
    for name, _, _ in stamp:
        h.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def model_info(name: str = DEFAULT_MODEL, models_dir: Path | None = None) -> dict:
    """What ``models/NAME.json`` records ({} when the model is not built)."""
    try:
        return json.loads((Path(models_dir or MODELS_DIR) / f"{name}.json").read_text())
    except (OSError, ValueError):
        return {}


def describe(name: str = DEFAULT_MODEL, models_dir: Path | None = None) -> dict:
    """``{"name", "size", "problem"}`` of the local model ``name`` (its record read once):
    the working size (None when not built) and :func:`problem`'s line."""
    info = model_info(name, models_dir)
    return {"name": name, "size": info.get("size"), "problem": _problem(name, info, models_dir)}


def problem(name: str = DEFAULT_MODEL, models_dir: Path | None = None) -> str | None:
    """One line saying why the local model ``name`` is not the one it was built from, or
    None: not built, built by an older version (no digest), or its checkpoint changed."""
    return _problem(name, model_info(name, models_dir), models_dir)


def _problem(name: str, info: dict, models_dir: Path | None) -> str | None:
    if not info or not (Path(models_dir or MODELS_DIR) / f"{name}.onnx").is_file():
        return f"the local model {name!r} is not built: {FIX}"
    source = info.get("source")
    if not source or "digest" not in info:
        return f"the local model {name!r} does not record what it was built from: {FIX}"
    if not Path(source).is_dir():
        return f"the local model {name!r} was built from {source}, which is gone: {FIX}"
    if _digest(source) != info["digest"]:
        return (f"the local model {name!r} was built from an older state of {source} "
                f"(its files changed since): {FIX}")
    return None


def record(name: str, size: int, ckpt_dir, models_dir: Path | None = None) -> Path:
    """``models/NAME.json``: the working size, the checkpoint and the digest of its files."""
    source = Path(ckpt_dir).resolve()
    out = Path(models_dir or MODELS_DIR) / f"{name}.json"
    out.write_text(json.dumps({"name": name, "size": size, "source": str(source),
                               "digest": _digest(source)}))
    return out
