"""``infer``: the jitted ``ShiftNetGenerator.apply``, images/s per batch, latency at batch 1.

Random weights, uniform images in [-1, 1], the reference's centre hole. Where the
model's convs are not plain ``lax`` ones (``conv_impl`` auto on CPU), the float32
output is also compared with the ``lax`` formulation's (they compute the same maths).
"""

from __future__ import annotations

import jax
import numpy as np

from benchmarks import measure, workloads

KIND = "infer"


def add_arguments(p):
    p.add_argument("--batches", default="1,8", help="inference batch sizes")


def build(args) -> list[dict]:
    return [{"kind": KIND, "size": s, "dtype": d, "batch": b}
            for s in args.sizes for d in args.dtypes for b in args.batches]


def max_diff_vs_lax(args, variables, image, hole) -> float:
    """Max |output - output with conv_impl='lax'| (the formulations must agree)."""
    ours = jax.jit(workloads.make_generator(args, "float32").apply)(variables, image, hole)
    plain = jax.jit(workloads.make_generator(args, "float32", impl="lax").apply)(
        variables, image, hole)
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(plain))))


def run(args, case, peaks) -> dict:
    size, dtype_name, batch = case["size"], case["dtype"], case["batch"]
    model = workloads.make_generator(args, dtype_name)
    variables = workloads.init_generator(model, size)
    image = jax.device_put(workloads.random_images(batch, size))
    hole = jax.device_put(workloads.centre_holes(batch, size))
    out = {}
    if workloads.conv_impl(args) != "lax" and dtype_name == "float32":
        out["max_abs_diff_vs_lax_convs"] = max_diff_vs_lax(args, variables, image[:1], hole[:1])
    figures, compiled = measure.compile_and_time(model.apply, (variables, image, hole),
                                                 args.warmup, args.repeats, run=False)
    if not bool(np.isfinite(np.asarray(compiled(variables, image, hole))).all()):
        raise FloatingPointError("non-finite generator output")
    out.update(figures)
    out.update(measure.timed(lambda: compiled(variables, image, hole), args.warmup,
                             args.repeats))
    if batch == 1:
        out["latency_ms"] = out["median_s"] * 1e3
    return measure.add_rates(out, out["flops"], batch, peaks.get(dtype_name))


def table_rows(result) -> list:
    return [("infer", result)]
