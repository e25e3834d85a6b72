"""``python -m shiftnet_jax.export --format onnx|stablehlo|litert --out FILE [--ckpt DIR]
[--size S] [--pipeline] [--sources]``: see :mod:`shiftnet_jax.export`.

Exit 0 with one line naming the file; any problem is one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys

from shiftnet_jax import checkpoint
from shiftnet_jax.errors import UserError, first_line, one_line
from shiftnet_jax.export import FORMATS, export_checkpoint


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m shiftnet_jax.export",
                                description="Export a Shift-Net generator (ONNX, StableHLO).")
    p.add_argument("--ckpt", default=None,
                   help="checkpoint directory (default: the demo model bundled in the package)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--out", required=True, help="file to write (.onnx, .jax)")
    p.add_argument("--size", type=int, default=None,
                   help="working size, square (default: the training crop size)")
    p.add_argument("--pipeline", action="store_true",
                   help="uint8 image + uint8 mask in, composited uint8 image out")
    p.add_argument("--sources", action="store_true",
                   help="also output the shift's source position of every hole position")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        path, size = export_checkpoint(args.ckpt or checkpoint.BUNDLED_MODEL, args.format,
                                       args.out, size=args.size, pipeline=args.pipeline,
                                       sources=args.sources, step=args.step)
    except (UserError, checkpoint.NotACheckpointError, OSError) as e:
        print(one_line(f"error: {e}"), file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a converter failure: one line, never a traceback
        print(one_line(f"error: {args.format} export failed ({type(e).__name__}: "
                       f"{first_line(e)})"), file=sys.stderr)
        return 1
    kind = "pipeline (uint8)" if args.pipeline else "network"
    print(f"wrote {path}: {args.format} {kind} at {size}x{size}, "
          f"{path.stat().st_size / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
