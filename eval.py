"""Evaluate a checkpoint: PSNR, SSIM, mean L1 and l2 (whole image and hole), overall and
per hole-ratio band, against OpenCV Telea / Navier-Stokes inpainting, mean fill and PatchMatch (the paper's
Content-Aware Fill; --baselines adds OpenCV contrib's xphoto_fsr_fast, xphoto_fsr_best, xphoto_shiftmap).

    python eval.py --ckpt DIR [--data FOLDER] [--masks center|rect|island|strokes|mix|FOLDER] [--mask-threshold 0]
                   [--out DIR/eval] [--batch-size 16] [--limit N] [--seed 0]

    python eval.py --official-samples Shift-Net_pytorch/imgs [--ckpt DIR] [--strategies crop,resize] [--out DIR]

Prints a table; writes report.json, report.md and sample_*.png into --out. --official-samples scores the
checkpoint (default: the bundled model) on the test images the official repository publishes with its released
models' outputs (github.com/Zhaoyi-Yan/Shift-Net_pytorch, imgs/), per group, against those outputs and the
baselines; see docs/evaluation.md.
Exit code 0 on success, 1 on a bad checkpoint, data or mask folder, 2 for bad flags.
"""

import argparse
import logging
import sys


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None,
                   help="checkpoint directory (training workdir or convert output); "
                        "required except with --official-samples (default there: the bundled model)")
    p.add_argument("--official-samples", default=None, metavar="DIR",
                   help="the imgs/ folder of a checkout of the official repository: score on its published samples")
    p.add_argument("--strategies", default="crop,resize",
                   help="--official-samples: framing strategies for our model (crop, resize, original)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--data", default=None, help="folder of test images (default: the config's test split)")
    p.add_argument("--masks", default="center",
                   help="center (half-side square), rect, island, strokes, mix (options as kind:name=value,...), "
                        "or a folder of mask images (nonzero = hole)")
    p.add_argument("--mask-threshold", type=float, default=0,
                   help="mask folder: a pixel is a hole when its 8-bit value is above this (default 0)")
    p.add_argument("--out", default=None, help="output folder (default: CKPT/eval)")
    p.add_argument("--batch-size", type=int, default=16, help="images per jitted call")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--seed", type=int, default=0, help="seed of the holes (same seed, same numbers)")
    p.add_argument("--size", type=int, default=None, help="image side (default: the config's crop_size)")
    p.add_argument("--baselines", default=None,
                   help="comma-separated: telea, navier_stokes, mean_fill, patchmatch (default: these four), "
                        "xphoto_fsr_fast, xphoto_fsr_best, xphoto_shiftmap (need opencv-contrib-python-headless), "
                        "or none")
    p.add_argument("--samples", type=int, default=4, help="side-by-side PNGs to write")
    p.add_argument("--max-megapixels", type=float, default=100,
                   help="largest image or mask decoded, in megapixels (default 100; a larger file "
                        "is refused with one line before it is decoded)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if not args.ckpt and not args.official_samples:
        p.error("--ckpt is required (except with --official-samples)")
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1) or args.samples < 0:
        p.error("--batch-size and --limit must be >= 1, --samples >= 0")
    if not args.max_megapixels > 0:
        p.error("--max-megapixels must be > 0")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's restore chatter
    from shiftnet_jax.inference import evaluate

    if args.official_samples:
        return official(args)
    try:
        report = evaluate.evaluate(args.ckpt, data=args.data, masks=args.masks, out_dir=args.out,
                                   batch_size=args.batch_size, limit=args.limit, seed=args.seed,
                                   samples=args.samples, size=args.size, step=args.step,
                                   mask_threshold=args.mask_threshold, baselines=args.baselines,
                                   max_pixels=int(args.max_megapixels * 1e6),
                                   progress=not args.no_progress)
    except (ValueError, OSError) as e:  # NotACheckpointError, missing folders, bad masks: one line
        print(f"error: {e}", file=sys.stderr)
        return 1
    for w in report["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(evaluate.table(report))
    out = args.out or f"{args.ckpt}/eval"
    print(f"{report['num_images']} images in {report['seconds']} s; reports in {out}/report.json, report.md")
    return 0


def official(args) -> int:
    """--official-samples: our model and the baselines on the published samples, per group."""
    from shiftnet_jax import checkpoint
    from shiftnet_jax.inference import baselines, official_samples

    out = args.out or (f"{args.ckpt}/eval_official" if args.ckpt else "runs/eval_official")
    try:
        generator = checkpoint.load_generator(args.ckpt or checkpoint.BUNDLED_MODEL, args.step)
        report = official_samples.score(generator, args.official_samples, out,
                                        strategies=tuple(s for s in args.strategies.split(",") if s),
                                        size=args.size, baselines=baselines.parse(args.baselines),
                                        max_pixels=int(args.max_megapixels * 1e6),
                                        progress=not args.no_progress)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(official_samples.table_lines(report)))
    print(f"{sum(report['counts'].values())} images in {report['seconds']} s, working size "
          f"{report['working_size']}; reports in {out}/report.json, report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
