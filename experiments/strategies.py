"""Which framing strategy fills holes in real photos best: crop, resize or original.

    python experiments/strategies.py [--photos ../shared/data/photos] [--ckpt DIR] [--sizes 64]

For every photo (at its own size), two holes drawn with a fixed seed: a
*small* square (side 8 % of the shorter side) and a *large* one (side 40 %),
each at a random position. Each is inpainted with ``inference.inpaint`` under
every strategy and working size, and scored on the hole only (composited
8-bit result, PSNR in dB and SSIM on the [0, 1] scale), beside OpenCV's Telea.
Prints a Markdown table (mean over photos) and the time per strategy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shiftnet_jax import checkpoint  # noqa: E402
from shiftnet_jax.data import image_io  # noqa: E402
from shiftnet_jax.inference import evaluate, framing, inpaint, metrics  # noqa: E402

HOLES = {"small": 0.08, "large": 0.40}


def square_hole(shape, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A bool (H, W) square of side ``fraction`` of the shorter side, at a random place."""
    side = max(4, round(fraction * min(shape)))
    top, left = rng.integers(0, shape[0] - side + 1), rng.integers(0, shape[1] - side + 1)
    mask = np.zeros(shape, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def hole_scores(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Hole PSNR (dB) and hole SSIM of uint8 (H, W, 3) ``pred`` against ``truth``."""
    a, b = (x[None].astype(np.float32) / 127.5 - 1.0 for x in (pred, truth))
    m = mask[None, ..., None]
    return (float(np.minimum(metrics.psnr(a, b, m)[0], evaluate.PSNR_CAP)),
            float(metrics.ssim(a, b, m)[0]))


def measure(photos, model, variables, sizes, strategies, seed: int = 0) -> dict:
    """{(hole, method): [(psnr, ssim, seconds) per photo]}; methods 'telea' and
    '<strategy> @<size>'."""
    rows: dict = {}
    for k, path in enumerate(photos):
        image = image_io.read_image(path)
        rng = np.random.default_rng([seed, k])
        for hole, fraction in HOLES.items():
            mask = square_hole(image.shape[:2], fraction, rng)
            start = time.perf_counter()
            telea = evaluate.baselines(image[None], mask[None], names=("telea",))["telea"][0]
            rows.setdefault((hole, "Telea"), []).append((*hole_scores(telea, image, mask),
                                                         time.perf_counter() - start))
            for size in sizes:
                for strategy in strategies:
                    start = time.perf_counter()
                    out = inpaint.inpaint_image(model, variables, image, mask, size=size,
                                                strategy=strategy)
                    rows.setdefault((hole, f"{strategy} @{size}"), []).append(
                        (*hole_scores(out, image, mask), time.perf_counter() - start))
        print(f"{k + 1}/{len(photos)} {Path(path).name}", file=sys.stderr)
    return rows


def table(rows: dict, n: int) -> str:
    lines = ["| holes | method | hole PSNR (dB) | hole SSIM | s / image |", "|---|---|---:|---:|---:|"]
    for (hole, method), values in rows.items():
        v = np.asarray(values)
        lines.append(f"| {hole} ({n} photos) | {method} | {np.nanmean(v[:, 0]):.2f} | "
                     f"{np.nanmean(v[:, 1]):.4f} | {v[:, 2].mean():.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", default=str(ROOT.parent / "shared" / "data" / "photos"))
    p.add_argument("--ckpt", default=str(checkpoint.BUNDLED_MODEL))
    p.add_argument("--sizes", default="", help="working sizes, comma-separated (default: the training crop size)")
    p.add_argument("--strategies", default=",".join(framing.STRATEGIES))
    p.add_argument("--limit", type=int, default=None, help="only the first N photos")
    args = p.parse_args(argv)
    photos = sorted(str(f) for f in Path(args.photos).iterdir() if image_io.is_image_file(f.name))
    photos = photos[:args.limit] if args.limit else photos
    if not photos:
        print(f"error: no photos in {args.photos}", file=sys.stderr)
        return 1
    model, variables, config = checkpoint.load_generator(args.ckpt)
    sizes = [int(s) for s in args.sizes.split(",") if s] or [config["data"]["crop_size"]]
    rows = measure(photos, model, variables, sizes, args.strategies.split(","))
    print(table(rows, len(photos)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
