"""Ship a trained workdir as the bundled model (``shiftnet_jax/pretrained/demo``).

    python tools/bundle_model.py runs/bundled --source "python train.py --config ..."

writes the generator's variables as float16 in files of at most 16 MB each
(``saving.export_compact``), a ``config.json`` with the data settings, the number of
trained steps and ``--source``, and the bundled model's recorded output on
:func:`reference_input` (``tests/data/bundled_reference.npz``, which
``tests/test_checkpoint.py`` holds it to; with ``--out`` elsewhere, ``bundled_reference.npz``
inside that folder). The old bundle is replaced only once the new one is complete and
reads back.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from shiftnet_jax import checkpoint  # noqa: E402
from shiftnet_jax.inference.predict import forward  # noqa: E402

MAX_FILE_BYTES = 16 * 2**20
REFERENCE = ROOT / "tests" / "data" / "bundled_reference.npz"


def reference_input(size: int):
    """(image (1, size, size, 3) seeded noise in [-1, 1], hole (1, size, size, 1)): the
    input whose output the bundle records; the hole is a 3/8 x 1/2 box off centre."""
    image = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    hole = np.zeros((1, size, size, 1), np.float32)
    hole[:, 5 * size // 16:11 * size // 16, size // 4:3 * size // 4] = 1
    return image, hole


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("workdir", help="a training workdir (its latest checkpoint is shipped)")
    p.add_argument("--out", default=str(checkpoint.BUNDLED_MODEL))
    p.add_argument("--source", required=True, help="how the workdir was trained (recorded)")
    args = p.parse_args(argv)
    model, variables, config = checkpoint.load_generator(args.workdir)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    paths = checkpoint.export_compact(
        tmp, config["model"], variables, max_file_bytes=MAX_FILE_BYTES,
        config={"data": config["data"], "name": "demo", "trained_steps": config["step"],
                "source": args.source})
    shipped, shipped_variables, _ = checkpoint.load_generator(tmp)
    image, hole = reference_input(config["data"]["crop_size"])
    output = np.asarray(forward(shipped, shipped_variables, image, hole).output)
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)   # kept until the new bundle is in place
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    # The test's recorded output belongs to the shipped bundle only; a trial bundle elsewhere
    # keeps its own beside it.
    reference = REFERENCE if out.resolve() == checkpoint.BUNDLED_MODEL.resolve() else out / REFERENCE.name
    np.savez_compressed(reference, output=output)
    sizes = ", ".join(f"{p.name} {(out / p.name).stat().st_size / 2**20:.1f} MB" for p in paths)
    print(f"wrote {out} (step {config['step']}: {sizes}) and {reference}")
    print(json.dumps(config["model"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
