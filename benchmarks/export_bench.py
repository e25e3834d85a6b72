#!/usr/bin/env python
"""Generator inference on CPU: ONNX Runtime (the exported model) beside JAX.

The paper's generator (ngf 64, 8 levels) with random weights, at each size and
batch: JAX runs the jitted ``ShiftNetGenerator.apply`` (the formulation
``inference.predict`` uses, ``conv_impl="auto"``); ONNX Runtime runs what
``python -m shiftnet_jax.export --format onnx`` writes (``shiftnet_jax.export``).
Both get the same images and holes (centre), the same number of threads; the
figure is the median over ``--repeats`` timed calls after one warm-up call.
Prints a table and writes JSON (``--json``). Standalone: ``benchmarks/bench.py``
is the main suite.

    python benchmarks/export_bench.py --sizes 256,512 --batches 1,8 --threads 2 \\
        --json bench_out/export_cpu.json
    python benchmarks/export_bench.py --ngf 4 --num-downs 5 --sizes 32 --batches 1 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--num-downs", type=int, default=8)
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", type=int, default=2, help="CPUs for both runtimes (affinity; ORT threads)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    # XLA:CPU has no thread-count option (see bench.py): pin the process to N CPUs,
    # and give ONNX Runtime N intra-op threads.
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cpus[:args.threads])
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import jax
    import numpy as np
    import onnxruntime

    from benchmarks.measure import timed
    from shiftnet_jax.data.mask_shapes import center_mask
    from shiftnet_jax.export import export_generator
    from shiftnet_jax.export import onnx as onnx_export
    from shiftnet_jax.nets.generator import ShiftNetGenerator

    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    model = ShiftNetGenerator(ngf=args.ngf, num_downs=args.num_downs)
    side = 2 ** args.num_downs
    shapes = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, side, side, 3), np.float32),
                            jax.ShapeDtypeStruct((1, side, side, 1), np.float32))
    rng = np.random.default_rng(0)   # every parameter N(0, 0.02): the speed does not depend on values
    variables = jax.tree.map(lambda s: (0.02 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
    apply = jax.jit(model.apply)
    params = sum(x.size for x in jax.tree.leaves(variables))
    rows, tmp = [], Path(tempfile.mkdtemp(prefix="export_bench_"))
    for size in sizes:
        path = tmp / f"g{size}.onnx"
        start = time.perf_counter()
        export_generator(model, variables, "onnx", path, size=size)
        export_s = time.perf_counter() - start
        session = onnx_export.session(path, threads=args.threads)
        for b in batches:
            image = rng.uniform(-1, 1, (b, size, size, 3)).astype(np.float32)
            hole = np.broadcast_to(center_mask(size), (b, size, size, 1)).astype(np.float32)
            jax_t = timed(lambda: apply(variables, image, hole), warmup=1, repeats=args.repeats)
            ort_t = timed(lambda: session.run(None, {"image": image, "hole": hole}), warmup=1,
                          repeats=args.repeats)
            jax_s, jax_min, ort_s, ort_min = (jax_t["median_s"], jax_t["min_s"], ort_t["median_s"],
                                              ort_t["min_s"])
            diff = float(np.abs(session.run(None, {"image": image, "hole": hole})[0]
                                - np.asarray(apply(variables, image, hole))).max())
            rows.append({"size": size, "batch": b, "jax_s": jax_s, "jax_min_s": jax_min,
                         "onnxruntime_s": ort_s, "onnxruntime_min_s": ort_min,
                         "jax_images_per_s": b / jax_s, "onnxruntime_images_per_s": b / ort_s,
                         "onnxruntime_speedup": jax_s / ort_s, "max_abs_diff": diff,
                         "onnx_mb": path.stat().st_size / 2**20, "export_s": export_s})
            r = rows[-1]
            print(f"{size:>5} {b:>3}  JAX {r['jax_s'] * 1e3:9.1f} ms ({r['jax_images_per_s']:6.2f} img/s)"
                  f"  ORT {r['onnxruntime_s'] * 1e3:9.1f} ms ({r['onnxruntime_images_per_s']:6.2f} img/s)"
                  f"  ORT/JAX speed {r['onnxruntime_speedup']:5.2f}x  max|diff| {diff:.1e}", flush=True)
        path.unlink()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report = {"ngf": args.ngf, "num_downs": args.num_downs, "params": params,
              "threads": args.threads, "repeats": args.repeats, "uptime": uptime,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "jax": jax.__version__, "onnxruntime": onnxruntime.__version__, "rows": rows}
    print(f"uptime: {uptime}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
