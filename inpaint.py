"""Inpaint images with a trained Shift-Net generator.

    python inpaint.py --ckpt DIR --input IN_DIR --output OUT_DIR [--flow]   # x.png + x_mask*.png
    python inpaint.py --ckpt DIR --image x.png --mask m.png --out y.png     # one image

Masks: nonzero = hole (--mask-threshold T: value > T). Output: 8-bit RGB PNG, identical to the input outside the
hole. --strategy crop (default) / resize / original: how the hole is framed (docs/evaluation.md).
Working size, formats and naming: see ``shiftnet_jax/inference/inpaint.py`` and ``framing.py``.
Exit code 0 if everything was inpainted, 1 if anything failed, 2 for bad flags.
"""

import argparse
import logging
import sys


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None,
                   help="checkpoint directory (training workdir or convert output); "
                        "default: the small demo model bundled in the package")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--input", help="folder of x.png + x_mask.png / x_mask001.png ...")
    p.add_argument("--output", help="folder for the results (mirrors --input)")
    p.add_argument("--image", help="one image")
    p.add_argument("--mask", help="its mask (same size; nonzero = hole)")
    p.add_argument("--out", help="where to write the result (PNG)")
    p.add_argument("--size", type=int, default=None,
                   help="working size: longer side the network sees (default: training crop size)")
    p.add_argument("--strategy", default=None, choices=("crop", "resize", "original"),
                   help="how the hole is framed: crop (default) one window around each hole at the photo's "
                        "own resolution where it can; resize the whole photo to the working size; "
                        "original the whole photo unresized (padded)")
    p.add_argument("--crop-margin", type=int, default=None,
                   help="crop: pixels of context around each hole's box (default: half the box's side)")
    p.add_argument("--dilate", type=int, default=0, help="grow holes by N pixels first")
    p.add_argument("--mask-threshold", type=float, default=0,
                   help="a mask pixel is a hole when its 8-bit value is above this (default 0: nonzero)")
    p.add_argument("--flow", action="store_true", help="also write *_flow.png: where the shift copied from")
    p.add_argument("--batch-size", type=int, default=8, help="images per jitted call")
    p.add_argument("--max-megapixels", type=float, default=100,
                   help="largest image or mask decoded, in megapixels (default 100; a larger file "
                        "is refused with one line before it is decoded)")
    p.add_argument("--backend", choices=("jax", "onnx"), default="jax",
                   help="run the generator with JAX (default) or ONNX Runtime (CPU; the export "
                        "extra; faster at batch 1 on CPU, see BENCHMARKS.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    folder, single = (args.input, args.output), (args.image, args.mask, args.out)
    if all(folder) == any(single) or (any(folder) and not all(folder)) or (any(single) and not all(single)):
        p.error("give either --input and --output, or --image, --mask and --out")
    if (args.size is not None and args.size < 1 or args.dilate < 0 or args.batch_size < 1
            or args.crop_margin is not None and args.crop_margin < 0):
        p.error("--size and --batch-size must be >= 1, --dilate and --crop-margin >= 0")
    if not args.max_megapixels > 0:
        p.error("--max-megapixels must be > 0")
    if args.backend == "onnx" and args.flow:
        p.error("--flow needs --backend jax (the shift's sources come from it)")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's restore chatter
    from shiftnet_jax import checkpoint
    from shiftnet_jax.errors import escaped
    from shiftnet_jax.inference import framing, inpaint, predict

    try:
        model, variables, config = checkpoint.load_generator(args.ckpt or checkpoint.BUNDLED_MODEL,
                                                             args.step)
    except checkpoint.NotACheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.backend == "onnx":
        from shiftnet_jax.errors import UserError
        from shiftnet_jax.inference.onnx_backend import OnnxGenerator

        try:
            model = OnnxGenerator(model, variables)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    size = args.size or predict.default_size(config)
    strategy = args.strategy or framing.DEFAULT_STRATEGY
    print(f"working size {size} (longer side{'' if args.size else ', the training crop size'}), "
          f"strategy {strategy}{'' if args.strategy else ' (default)'}, "
          f"multiples of {2 ** model.num_downs}")
    opts = dict(size=size, dilate_px=args.dilate, flow=args.flow, threshold=args.mask_threshold,
                max_pixels=int(args.max_megapixels * 1e6), strategy=strategy, margin=args.crop_margin)
    try:
        if args.image:
            written = inpaint.inpaint_file(model, variables, args.image, args.mask, args.out,
                                           log=print, **opts)
            print(f"wrote {', '.join(map(escaped, written))}")
            return 0
        result = inpaint.inpaint_folder(model, variables, args.input, args.output,
                                        batch_size=args.batch_size, progress=not args.no_progress, **opts)
    except (ValueError, OSError) as e:  # InputError and friends: one line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    failed = len(result["errors"])
    windows = sum(line.count(" -> ") for line in result["framing"].values())
    print(f"inpainted {len(result['written'])} image(s) into {escaped(args.output)} ({windows} window(s))"
          + (f"; {failed} failed (see errors above)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
