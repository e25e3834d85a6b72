"""``shift``: ``shiftnet_jax.nets.shift.shift`` alone at the shift level's shape.

The shape (B, h, w, C) is read from the model (:func:`benchmarks.cases.layers.model_layers`:
256 -> 32x32, 512 -> 64x64, 1024 -> 128x128 with the paper's model), with the
feature hole of the centre hole. Forward, and forward + backward (VJP to ``decoded``
and ``encoded``), dense (``tile=0``) and tiled, with XLA's compiled memory analysis.
Dense maps larger than ``--shift-dense-max`` are compiled for the memory analysis only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import measure, workloads
from benchmarks.cases.layers import model_layers
from shiftnet_jax.nets.feature_hole import feature_hole
from shiftnet_jax.nets.shift import DENSE_MAX_ENTRIES, shift

KIND = "shift"


def add_arguments(p):
    p.add_argument("--shift-sizes", default=None,
                   help="image sides whose shift-layer maps are timed (default: --sizes + 1024)")
    p.add_argument("--shift-batches", default="1", help="batch sizes of the shift alone")
    p.add_argument("--shift-tiles", default="0,2048", help="0 = dense; others = column tile")
    p.add_argument("--shift-dense-max", type=int, default=64,
                   help="largest shift map side run dense; larger ones are compiled for "
                        "the memory analysis only")


def build(args) -> list[dict]:
    return [{"kind": KIND, "size": s, "dtype": d, "batch": b, "tile": t}
            for s in args.shift_sizes for d in args.dtypes for b in args.shift_batches
            for t in args.shift_tiles]


def shift_shape(args, size: int, batch: int):
    """(B, h, w, C) of the decoded features the model's shift level receives."""
    model = workloads.make_generator(args, "float32")
    level = next(layer for layer in model_layers(model, size, batch) if layer.group == "shift")
    return level.args[0].shape


def run(args, case, peaks) -> dict:
    size, dtype_name, batch, tile = case["size"], case["dtype"], case["batch"], case["tile"]
    _, side, _, ch = shift_shape(args, size, batch)
    n = side * side
    dtype = jnp.dtype(dtype_name)
    rng = np.random.default_rng(0)
    features = lambda: jnp.asarray(np.maximum(rng.normal(size=(batch, side, side, ch)), 0), dtype)  # noqa: E731
    dec, enc = features(), features()
    hole = feature_hole(jnp.asarray(workloads.centre_holes(batch, size)),
                        int(np.log2(size // side)))
    cot = jnp.asarray(rng.normal(size=(batch, side, side, ch)), dtype)

    def fwd(d, e, h):
        return shift(d, e, h, tile=tile)

    def fwd_bwd(d, e, h, g):
        y, pull = jax.vjp(lambda d, e: shift(d, e, h, tile=tile), d, e)
        return y, pull(g)

    effective = "dense" if (tile == 0 or tile >= n) else f"tiled({-(-n // tile)} tiles)"
    out = {"map": [batch, side, side, ch], "hole_positions": int(hole[0].sum()),
           "effective": effective,
           "auto_would_pick": "dense" if n * n <= DENSE_MAX_ENTRIES else "tiled(2048)"}
    run_it = tile != 0 or side <= args.shift_dense_max
    if not run_it:
        out["note"] = (f"dense at {side}x{side} compiled for the memory analysis only "
                       f"(--shift-dense-max {args.shift_dense_max})")
    for name, fn, ops in (("fwd", fwd, (dec, enc, hole)), ("fwd_bwd", fwd_bwd, (dec, enc, hole, cot))):
        part, _ = measure.compile_and_time(fn, ops, args.warmup, args.repeats, run=run_it)
        # XLA's cost analysis counts a while loop's body once (the tiled scan: one tile),
        # so the similarity matmul, 2*B*N*N*C, is the figure used for both variants.
        similarity = 2.0 * batch * n * n * ch
        part["xla_flops"] = part["flops"]
        if not part["flops"] or part["flops"] < similarity:
            part.update(flops=similarity, flops_source="analytic 2*B*N^2*C (similarity matmul)")
        if run_it:
            measure.add_rates(part, part["flops"], batch, peaks.get(dtype_name))
        out[name] = part
    if "median_s" in out["fwd"]:
        out.update(median_s=out["fwd"]["median_s"], images_per_s=out["fwd"]["images_per_s"])
    return out


def table_rows(r) -> list:
    eff = r["effective"].replace("tiled", "t")
    return [(f"shift {p} t={r['tile']} {eff}"[:21], r[p]) for p in ("fwd", "fwd_bwd")]
