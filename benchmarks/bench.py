#!/usr/bin/env python
"""Shift-Net JAX benchmark suite: inference, training step, the shift; optional side-by-side.

One command measures (warm-up, ``block_until_ready``, medians over ``--repeats``):

* ``infer``: the jitted ``ShiftNetGenerator.apply``: images/s per batch, latency at
  batch 1;
* ``train``: ``shiftnet_jax.train.parallel.jit_train_step`` on a replicated state:
  (a) synthetic batch already on the device, reused; (b) the real input pipeline
  (``shiftnet_jax.data.loader.from_config``, ``sample`` source, crop = size), to show
  whether input keeps up; plus the loader alone;
* ``shift``: ``shiftnet_jax.nets.shift.shift`` at the shift layer's shape (256 ->
  (B, 32, 32, 4*ngf), 512 -> 64x64, 1024 -> 128x128), forward and forward+backward,
  dense (``tile=0``) vs tiled (``tile=2048``), with XLA's compiled memory analysis;
* ``profile``: where the generator's time goes (each conv, transposed conv, norm and
  the shift timed alone at its shape in the model, forward and forward+backward, every
  conv in each formulation of ``shiftnet_jax.nets.conv``; the discriminator alone).

For every figure: FLOPs from XLA's cost analysis, achieved TFLOP/s, the physical
floor (FLOPs / peak: ``--peak-tflops``, default H100 SXM dense 989 bf16 / 67 f32 on
GPU; on CPU the measured FLOP/s of a large matmul, said so in the output), compiled
memory sizes and the device's ``peak_bytes_in_use`` where the backend has it.

Side-by-side: ``--reference ref/Shift-Net_pytorch --reference-python .venv-ref/bin/python``
runs ``benchmarks/reference_torch.py`` first (before JAX touches the device), on the
same machine and CPUs, and reports our/their throughput ratios.

Examples::

    python benchmarks/bench.py --device cpu --threads 2 --sizes 256 --dtypes float32 \\
        --batches 1,8 --train-batches 1,4 --json bench_out/cpu.json \\
        --reference ref/Shift-Net_pytorch --reference-python .venv-ref/bin/python
    python benchmarks/bench.py --device cuda --sizes 256,512 --dtypes float32,bfloat16 \\
        --batches 1,8,64 --json bench_out/h100.json \\
        --reference ref/Shift-Net_pytorch --reference-python python3
    python benchmarks/bench.py --quick --ngf 4 --num-downs 5 --sizes 32 --batches 1 \\
        --json /tmp/smoke.json          # seconds; what tests/test_benchmarks.py runs
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KINDS = ("infer", "train", "shift", "profile")
# H100 SXM dense peaks (TFLOP/s). float32: the non-tensor-core figure, as the
# issue asks; XLA may run f32 convs/dots as TF32 on tensor cores (494 dense).
GPU_PEAK_TFLOPS = {"bfloat16": 989.0, "float32": 67.0}
RESULT_TAG = "BENCH_CASE_RESULT "


# ----------------------------------------------------------------- arguments
def _ints(text):
    return [int(s) for s in str(text).split(",") if s.strip()]


def _strs(text):
    return [s.strip() for s in str(text).split(",") if s.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None, help="write all results here")
    p.add_argument("--sizes", default="256", help="image sides, e.g. 256,512")
    p.add_argument("--dtypes", default="float32", help="float32,bfloat16")
    p.add_argument("--batches", default="1,8", help="inference batch sizes")
    p.add_argument("--train-batches", default=None,
                   help="training batch sizes (default: --batches)")
    p.add_argument("--ngf", type=int, default=64, help="generator width (D uses ndf = ngf)")
    p.add_argument("--num-downs", type=int, default=8, help="U-Net depth (8 for 256 and 512)")
    p.add_argument("--shift-layer", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10, help="timed runs per figure (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs after compiling")
    p.add_argument("--train-repeats", type=int, default=None,
                   help="timed training steps (default: --repeats)")
    p.add_argument("--loader-steps", type=int, default=10,
                   help="training steps timed with the real loader (0: skip)")
    p.add_argument("--only", default="infer,train,shift",
                   help=f"comma-separated subset of {','.join(KINDS)}")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 repeats, 1 warm-up, 2 loader steps, small peak matmul")
    p.add_argument("--shift-sizes", default=None,
                   help="image sides whose shift-layer maps are timed (default: --sizes + 1024)")
    p.add_argument("--shift-batches", default="1", help="batch sizes of the shift alone")
    p.add_argument("--shift-tiles", default="0,2048", help="0 = dense; others = column tile")
    p.add_argument("--shift-dense-max", type=int, default=64,
                   help="largest shift map side run dense; larger ones are compiled for "
                        "the memory analysis only")
    p.add_argument("--profile-batch", type=int, default=1)
    p.add_argument("--conv-impl", default=None,
                   choices=("auto", "lax", "subpixel", "taps", "im2col"),
                   help="the generator's conv_impl (shiftnet_jax.nets.conv; default: the model's "
                        "default, 'auto'); 'lax' = plain lax convolutions everywhere")
    p.add_argument("--peak-tflops", default=None,
                   help="device peak for the floor: one number, or dtype=value pairs "
                        "'bfloat16=989,float32=67' (default: H100 SXM dense on GPU, "
                        "a measured matmul on CPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="JAX platform (sets JAX_PLATFORMS) and the reference's device")
    p.add_argument("--threads", type=int, default=None,
                   help="restrict this process and the reference to N CPUs "
                        "(sched_setaffinity; torch.set_num_threads(N) for the reference)")
    p.add_argument("--isolate", action="store_true",
                   help="run every case in a fresh subprocess: per-case peak device "
                        "memory / peak RSS instead of the process high-water mark")
    p.add_argument("--reference", default=None, help="Shift-Net_pytorch checkout: side-by-side")
    p.add_argument("--reference-python", default=sys.executable,
                   help="python with torch for benchmarks/reference_torch.py")
    p.add_argument("--reference-json", default=None,
                   help="use this earlier reference_torch.py JSON instead of running it")
    p.add_argument("--reference-batches", default="1,8")
    p.add_argument("--reference-repeats", type=int, default=None,
                   help="inference repeats of the reference (default: --repeats)")
    p.add_argument("--reference-train-repeats", type=int, default=5)
    p.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_peaks", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.sizes = _ints(args.sizes)
    args.dtypes = _strs(args.dtypes)
    args.batches = _ints(args.batches)
    args.train_batches = _ints(args.train_batches) if args.train_batches else args.batches
    args.only = _strs(args.only)
    bad = sorted(set(args.only) - set(KINDS))
    if bad:
        p.error(f"--only: unknown {bad}; choose from {KINDS}")
    bad = sorted(set(args.dtypes) - {"float32", "bfloat16"})
    if bad:
        p.error(f"--dtypes: unknown {bad}")
    if args.quick:
        args.repeats, args.warmup = min(args.repeats, 2), min(args.warmup, 1)
        args.loader_steps = min(args.loader_steps, 2)
    if args.train_repeats is None:
        args.train_repeats = args.repeats
    args.shift_sizes = (_ints(args.shift_sizes) if args.shift_sizes is not None
                        else sorted(set(args.sizes) | {1024}))
    args.shift_batches = _ints(args.shift_batches)
    args.shift_tiles = _ints(args.shift_tiles)
    return args


def setup_environment(args):
    """Platform and CPU restrictions; must run before JAX is imported."""
    if args.device != "auto":
        os.environ["JAX_PLATFORMS"] = args.device
    if args.threads:
        cpus = sorted(os.sched_getaffinity(0))
        if args.threads > len(cpus):
            print(f"--threads {args.threads}: only {len(cpus)} CPUs available", file=sys.stderr)
        os.sched_setaffinity(0, cpus[:args.threads])
        if args.threads == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


# ----------------------------------------------------------------- helpers
def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn, warmup, repeats):
    """fn() returns arrays to wait for; warm-up runs, then ``repeats`` timed runs."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    runs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(runs), "min_s": min(runs), "runs_s": runs}


def cost(compiled, lowered=None):
    """(flops, bytes accessed, source) from XLA's cost analysis (list or dict by version)."""
    def first(ca):
        if isinstance(ca, (list, tuple)):
            ca = ca[0] if ca else None
        return ca or {}

    for source, obj in (("compiled", compiled), ("lowered", lowered)):
        if obj is None:
            continue
        try:
            ca = first(obj.cost_analysis())
        except Exception:  # noqa: BLE001, S112 - not every backend/version implements it
            continue
        flops = ca.get("flops")
        if flops and flops > 0:
            return float(flops), float(ca.get("bytes accessed", 0.0)) or None, source
    return None, None, None


def memory_analysis(compiled):
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001
        return None
    if ma is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "temp_size_in_bytes", "generated_code_size_in_bytes")
    out = {f.replace("_size_in_bytes", "_bytes"): getattr(ma, f, None) for f in fields}
    return out


def device_peak_bytes():
    import jax

    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats()
    except Exception as e:  # noqa: BLE001
        return None, f"memory_stats() failed: {type(e).__name__}: {e}"
    if not stats or "peak_bytes_in_use" not in stats:
        return None, (f"{dev.platform} backend: memory_stats() returns "
                      f"{'None' if stats is None else 'no peak_bytes_in_use'}; "
                      "see compiled_memory and peak_rss_bytes")
    return int(stats["peak_bytes_in_use"]), None


def centre_holes(batch, size):
    """The reference's centre hole: side size/2 minus an overlap of 4 per side."""
    import numpy as np

    from shiftnet_jax.data import masks
    hole = masks.center_mask(size, overlap=4 if size >= 32 else 0)
    return np.broadcast_to(hole[None], (batch, size, size, 1)).astype(np.float32)


def jdtype(name):
    import jax.numpy as jnp
    return jnp.dtype(name)


# ----------------------------------------------------------------- peaks
def measure_cpu_peak(dtype_name, n):
    """Best achieved FLOP/s of an n x n x n matmul in this dtype (the CPU 'peak')."""
    import jax
    import jax.numpy as jnp

    dtype = jdtype(dtype_name)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    t = timed(lambda: f(a, b), 2, 5)
    return 2.0 * n ** 3 / t["min_s"] / 1e12


def resolve_peaks(args, platform_name):
    """{dtype: (peak TFLOP/s, how it was obtained)}."""
    if args._peaks:
        return {k: tuple(v) for k, v in json.loads(args._peaks).items()}
    peaks = {}
    if args.peak_tflops:
        text = args.peak_tflops
        if "=" in text:
            given = {k.strip(): float(v) for k, v in (kv.split("=") for kv in text.split(","))}
        else:
            given = {d: float(text) for d in args.dtypes}
        for d in args.dtypes:
            if d in given:
                peaks[d] = (given[d], "--peak-tflops")
    for d in args.dtypes + ["float32"]:
        if d in peaks:
            continue
        if platform_name == "gpu":
            peaks[d] = (GPU_PEAK_TFLOPS[d], "H100 SXM dense datasheet default (--peak-tflops)")
        else:
            n = 512 if args.quick else 2048
            how = (f"measured on this CPU: best of 5 {n}x{n}x{n} {d} matmuls "
                   "(jnp.dot, f32 accumulation); not a datasheet peak")
            peaks[d] = (measure_cpu_peak(d, n), how)
    return peaks


def add_rates(result, flops, batch, peak):
    """Throughput, achieved TFLOP/s and the FLOP floor for one timed figure."""
    med = result["median_s"]
    result["images_per_s"] = batch / med
    if flops:
        result["flops"] = flops
        result["flops_per_image"] = flops / batch
        result["achieved_tflops"] = flops / med / 1e12
    if flops and peak:
        floor = flops / (peak[0] * 1e12)
        result.update(peak_tflops=peak[0], peak_source=peak[1], floor_s=floor,
                      floor_images_per_s=batch / floor, fraction_of_floor=floor / med)
    return result


# ----------------------------------------------------------------- cases
def model_conv_impl(args):
    """The conv_impl the generator runs with (None: the model has no such option)."""
    from shiftnet_jax.nets.generator import ShiftNetGenerator
    default = getattr(ShiftNetGenerator, "conv_impl", None)
    if args.conv_impl and default is None:
        raise SystemExit("--conv-impl: this ShiftNetGenerator has no conv_impl option")
    return args.conv_impl or default


def make_generator(args, dtype_name, conv_impl=None):
    from shiftnet_jax.nets.generator import ShiftNetGenerator
    extra = {}
    impl = conv_impl or args.conv_impl
    if impl:
        extra["conv_impl"] = impl
    return ShiftNetGenerator(ngf=args.ngf, num_downs=args.num_downs,
                             shift_layer=args.shift_layer, dtype=jdtype(dtype_name), **extra)


def init_generator(model, size):
    import jax
    import jax.numpy as jnp
    image = jnp.zeros((1, size, size, 3), jnp.float32)
    hole = jnp.zeros((1, size, size, 1), jnp.float32)
    return jax.jit(model.init)(jax.random.key(0, impl="rbg"), image, hole)


def check_against_lax(args, variables, image, hole):
    """Max |output - output with conv_impl='lax'| (the formulations must agree)."""
    import jax
    import numpy as np

    ours = jax.jit(make_generator(args, "float32").apply)(variables, image, hole)
    plain = jax.jit(make_generator(args, "float32", conv_impl="lax").apply)(variables, image,
                                                                          hole)
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(plain))))


def case_infer(args, case, peaks):
    import jax
    import numpy as np

    size, dtype_name, batch = case["size"], case["dtype"], case["batch"]
    model = make_generator(args, dtype_name)
    variables = init_generator(model, size)
    rng = np.random.default_rng(0)
    image = jax.device_put(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32))
    hole = jax.device_put(centre_holes(batch, size))
    out = {}
    if model_conv_impl(args) not in (None, "lax") and dtype_name == "float32":
        out["max_abs_diff_vs_lax_convs"] = check_against_lax(args, variables, image[:1],
                                                             hole[:1])
    lowered = jax.jit(model.apply).lower(variables, image, hole)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    out["compile_s"] = time.perf_counter() - t0
    y = compiled(variables, image, hole)
    if not bool(np.isfinite(np.asarray(y)).all()):
        raise FloatingPointError("non-finite generator output")
    out.update(timed(lambda: compiled(variables, image, hole), args.warmup, args.repeats))
    flops, nbytes, src = cost(compiled, lowered)
    out.update(flops_source=src, bytes_accessed=nbytes, compiled_memory=memory_analysis(compiled))
    if batch == 1:
        out["latency_ms"] = out["median_s"] * 1e3
    return add_rates(out, flops, batch, peaks.get(dtype_name))


def train_config(args, size, dtype_name, batch):
    from shiftnet_jax.config import default_config
    c = default_config()
    c.model.ngf = args.ngf
    c.model.num_downs = args.num_downs
    c.model.shift_layer = args.shift_layer
    c.discriminator.ndf = args.ngf
    if args.conv_impl:
        c.model.conv_impl = args.conv_impl
    c.batch_size = batch
    c.compute_dtype = dtype_name
    c.data.source = "sample"
    c.data.crop_size = size
    c.data.load_size = max(size, round(size * 350 / 256))
    c.data.mask = "center:overlap=4" if size >= 32 else "center"
    return c


def case_train(args, case, peaks):
    import jax
    import numpy as np

    from shiftnet_jax.data import loader as data
    from shiftnet_jax.data import masks
    from shiftnet_jax.train import parallel
    from shiftnet_jax.train import step as training

    size, dtype_name, batch = case["size"], case["dtype"], case["batch"]
    config = train_config(args, size, dtype_name, batch)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(batch, mesh)
    state = parallel.replicate(training.create_state(config, size), mesh)
    rng = np.random.default_rng(0)
    synthetic = parallel.shard_batch(
        {"image": rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32),
         "hole": centre_holes(batch, size)}, mesh)
    step = parallel.jit_train_step(config, mesh)
    lowered = step.lower(state, synthetic)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    out = {"compile_s": time.perf_counter() - t0}
    holder = {"state": state}

    def run(batch_arrays):
        holder["state"], scalars = compiled(holder["state"], batch_arrays)
        return scalars

    first = jax.device_get(run(synthetic))
    out["first_step_scalars"] = {k: float(v) for k, v in first.items()}
    out.update(timed(lambda: run(synthetic), args.warmup, args.train_repeats))
    flops, nbytes, src = cost(compiled, lowered)
    out.update(flops_source=src, bytes_accessed=nbytes, compiled_memory=memory_analysis(compiled))
    add_rates(out, flops, batch, peaks.get(dtype_name))

    if args.loader_steps > 0:
        loader = data.from_config(config.data, train=True, batch_size=batch, seed=0,
                                  mask_fn=masks.make_mask_fn(
                                      masks.parse_mask_spec(config.data.mask)))
        for _ in range(2):  # warm the worker threads / pipeline
            next(loader)
        t0 = time.perf_counter()
        for _ in range(args.loader_steps):
            next(loader)
        loader_only = time.perf_counter() - t0
        for _ in range(max(1, args.warmup)):
            jax.block_until_ready(run(parallel.shard_batch(next(loader), mesh)))
        t0 = time.perf_counter()
        scalars = None
        for _ in range(args.loader_steps):  # async dispatch: loading overlaps the step
            scalars = run(parallel.shard_batch(next(loader), mesh))
        jax.block_until_ready((holder["state"], scalars))
        with_loader = time.perf_counter() - t0
        n_img = args.loader_steps * batch
        out["loader"] = {
            "steps": args.loader_steps, "source": "sample", "crop": size,
            "load_size": config.data.load_size, "mask": config.data.mask,
            "loader_only_images_per_s": n_img / loader_only,
            "train_with_loader_images_per_s": n_img / with_loader,
            "keeps_up": n_img / with_loader >= 0.9 * out["images_per_s"],
            "with_loader_over_synthetic": (n_img / with_loader) / out["images_per_s"],
        }
    return out


def shift_map(args, size):
    """(side, channels) of the shift layer for an image side."""
    side = size // 2 ** args.shift_layer
    channels = args.ngf * min(2 ** (args.shift_layer - 1), 8)
    return side, channels


def case_shift(args, case, peaks):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from shiftnet_jax.nets.feature_hole import feature_hole
    from shiftnet_jax.nets.shift import DENSE_MAX_ENTRIES, shift

    size, dtype_name, batch, tile = case["size"], case["dtype"], case["batch"], case["tile"]
    side, ch = shift_map(args, size)
    n = side * side
    dtype = jdtype(dtype_name)
    rng = np.random.default_rng(0)
    dec = jnp.asarray(np.maximum(rng.normal(size=(batch, side, side, ch)), 0), dtype)
    enc = jnp.asarray(np.maximum(rng.normal(size=(batch, side, side, ch)), 0), dtype)
    hole = feature_hole(jnp.asarray(centre_holes(batch, size)), args.shift_layer)
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
    for name, fn, operands in (("fwd", fwd, (dec, enc, hole)),
                               ("fwd_bwd", fwd_bwd, (dec, enc, hole, cot))):
        lowered = jax.jit(fn).lower(*operands)
        t0 = time.perf_counter()
        compiled = lowered.compile()
        part = {"compile_s": time.perf_counter() - t0,
                "compiled_memory": memory_analysis(compiled)}
        flops, nbytes, src = cost(compiled, lowered)
        part.update(xla_flops=flops, bytes_accessed=nbytes)
        # XLA's cost analysis counts a while loop's body once (the tiled scan: one tile),
        # so the similarity matmul, 2*B*N*N*C, is the figure used for both variants.
        similarity = 2.0 * batch * n * n * ch
        if not flops or flops < similarity:
            flops, src = similarity, "analytic 2*B*N^2*C (similarity matmul)"
        part.update(flops=flops, flops_source=src)
        if run_it:
            part.update(timed(lambda c=compiled, o=operands: c(*o), args.warmup, args.repeats))
            add_rates(part, flops, batch, peaks.get(dtype_name))
        out[name] = part
    if "median_s" in out["fwd"]:
        out.update(median_s=out["fwd"]["median_s"], images_per_s=out["fwd"]["images_per_s"])
    return out


def case_profile(args, case, peaks):
    """Each generator layer timed alone at its shape in the model (forward, and forward +
    backward to the input and the weights), beside the whole generator forward and
    forward + backward; every conv in each formulation of ``shiftnet_jax.nets.conv``."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from shiftnet_jax.nets import conv as cv
    from shiftnet_jax.nets.feature_hole import feature_hole
    from shiftnet_jax.nets.layers import make_norm
    from shiftnet_jax.nets.shift import shift

    size, dtype_name, batch = case["size"], case["dtype"], case["batch"]
    dtype = jdtype(dtype_name)
    model = make_generator(args, dtype_name)
    impl_in_model = model_conv_impl(args)
    widths = [args.ngf * min(2 ** i, 8) for i in range(args.num_downs)]
    last, k = args.num_downs - 1, args.shift_layer - 1
    key = jax.random.key(0)
    rows = []

    def rand(shape):
        return jax.random.normal(key, shape, jnp.float32).astype(dtype)

    def with_backward(fn, n_diff):
        """fn(*ops) -> vjp of fn w.r.t. its first n_diff operands, for a fixed cotangent."""
        def f(*ops):
            g = ops[-1]
            _, pull = jax.vjp(lambda *d: fn(*d, *ops[n_diff:-1]), *ops[:n_diff])
            return pull(g)
        return f

    def measure(name, group, fn, operands, *, impl=None, used=True, n_diff=2):
        out_shape = jax.eval_shape(fn, *operands)
        cot = rand(out_shape.shape).astype(out_shape.dtype)
        row = {"name": name, "group": group, "impl": impl, "used_by_model": used}
        for pass_, f, ops in (("fwd", fn, operands),
                              ("fwd_bwd", with_backward(fn, n_diff), (*operands, cot))):
            if pass_ == "fwd_bwd" and n_diff == 0:
                continue
            lowered = jax.jit(f).lower(*ops)
            compiled = lowered.compile()
            t = timed(lambda c=compiled, o=ops: c(*o), args.warmup, args.repeats)
            flops, _, _ = cost(compiled, lowered)
            row[pass_] = {"flops": flops, "median_s": t["median_s"], "min_s": t["min_s"]}
        rows.append(row)

    for i in range(args.num_downs):
        s_in = size >> i
        cin = 4 if i == 0 else widths[i - 1]
        x = rand((batch, s_in, s_in, cin))
        kern = rand((4, 4, cin, widths[i])) * 0.02
        for impl in ("lax", "im2col"):
            measure(f"down_{i} conv {s_in}x{s_in}x{cin}->{widths[i]}", "conv",
                    cv.CONV[impl], (x, kern), impl=impl,
                    used=impl == cv.choose(impl_in_model, False, s_in))
        if i not in (0, last):
            norm = make_norm(model.norm, False, dtype, "norm")
            y = rand((batch, s_in // 2, s_in // 2, widths[i]))
            v = norm.init(key, y)
            measure(f"down_{i} norm {s_in // 2}x{s_in // 2}x{widths[i]}", "norm",
                    norm.apply, (v, y))
    for i in reversed(range(args.num_downs)):
        s_in = size >> (i + 1)
        cin = widths[i] * (1 if i == last else 3 if i == k else 2)
        cout = widths[i - 1] if i else 3
        x = rand((batch, s_in, s_in, cin))
        kern = rand((4, 4, cin, cout)) * 0.02
        for impl in ("lax", "subpixel", "taps"):
            if impl == "taps" and s_in > 16:
                continue  # duplicates the input 16x: only for small maps
            measure(f"up_{i} convT {s_in}x{s_in}x{cin}->{cout}", "conv_transpose",
                    cv.CONV_TRANSPOSE[impl], (x, kern), impl=impl,
                    used=impl == cv.choose(impl_in_model, True, s_in))
        if i:
            norm = make_norm(model.norm, False, dtype, "norm")
            y = rand((batch, 2 * s_in, 2 * s_in, cout))
            v = norm.init(key, y)
            measure(f"up_{i} norm {2 * s_in}x{2 * s_in}x{cout}", "norm", norm.apply, (v, y))
    side, ch = shift_map(args, size)
    d = nn.relu(rand((batch, side, side, ch)))
    e = nn.relu(rand((batch, side, side, ch)))
    hole = feature_hole(jnp.asarray(centre_holes(batch, size)), args.shift_layer)
    measure(f"shift {side}x{side}x{ch}", "shift", lambda d, e, h: shift(d, e, h),
            (d, e, hole))
    from shiftnet_jax.nets.discriminators import Discriminator
    disc = Discriminator(ndf=args.ngf, dtype=dtype)
    x = rand((batch, size, size, 3)).astype(jnp.float32)
    dv = jax.jit(disc.init)(jax.random.key(1, impl="rbg"), x)
    # eval mode (no spectral-norm power iteration); the training step runs D 3x
    measure(f"discriminator {size}x{size}x3 (not in G)", "discriminator",
            lambda v, x: disc.apply(v, x), (dv, x))

    variables = init_generator(model, size)
    image = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)),
                        jnp.float32)
    holes = jnp.asarray(centre_holes(batch, size))
    totals = {}
    fwd = model.apply

    def fwd_bwd(params, image, holes, cot):
        _, pull = jax.vjp(lambda p: model.apply({"params": p}, image, holes), params)
        return pull(cot)

    cot = rand((batch, size, size, 3)).astype(jnp.float32)
    for pass_, f, ops in (("fwd", fwd, (variables, image, holes)),
                          ("fwd_bwd", fwd_bwd, (variables["params"], image, holes, cot))):
        lowered = jax.jit(f).lower(*ops)
        compiled = lowered.compile()
        t = timed(lambda c=compiled, o=ops: c(*o), args.warmup, args.repeats)
        flops, _, _ = cost(compiled, lowered)
        totals[pass_] = {"flops": flops, "median_s": t["median_s"], "min_s": t["min_s"]}

    summary = {}
    for pass_ in ("fwd", "fwd_bwd"):
        stock, best = {}, {}
        for r in rows:
            if pass_ not in r or r["group"] == "discriminator":
                continue
            if r["used_by_model"]:
                stock[r["group"]] = stock.get(r["group"], 0.0) + r[pass_]["median_s"]
            key_ = (r["group"], r["name"])
            best[key_] = min(best.get(key_, float("inf")), r[pass_]["median_s"])
        best_by_group = {}
        for (g, _), v in best.items():
            best_by_group[g] = best_by_group.get(g, 0.0) + v
        total = totals[pass_]["median_s"]
        summary[pass_] = {
            "generator_median_s": total, "generator_min_s": totals[pass_]["min_s"],
            "generator_flops": totals[pass_]["flops"],
            "isolated_median_s": stock, "isolated_sum_s": sum(stock.values()),
            "other_s": total - sum(stock.values()),
            "share": {g: v / total for g, v in stock.items()},
            "best_formulation_sum_s": best_by_group}
    disc_row = next(r for r in rows if r["group"] == "discriminator")
    summary["discriminator"] = {p: disc_row[p]["median_s"] for p in ("fwd", "fwd_bwd")}
    return {"rows": rows, "summary": summary, "conv_impl": impl_in_model,
            "median_s": totals["fwd"]["median_s"],
            "min_s": totals["fwd"]["min_s"], "images_per_s": batch / totals["fwd"]["median_s"]}


CASE_FNS = {"infer": case_infer, "train": case_train, "shift": case_shift,
            "profile": case_profile}


def run_case(args, case, peaks):
    t0 = time.perf_counter()
    res = {"loadavg_before": loadavg()}
    try:
        res.update(CASE_FNS[case["kind"]](args, case, peaks))
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - one failing figure must not lose the others
        import traceback
        res.update(ok=False, error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc()[-3000:])
    peak, note = device_peak_bytes()
    res.update(peak_device_bytes=peak, peak_rss_bytes=peak_rss_bytes(),
               loadavg_after=loadavg(), wall_s=time.perf_counter() - t0)
    res["peak_device_bytes_note"] = note or (
        "per case (fresh process)" if args._case else
        "process high-water mark so far (not reset between cases; --isolate for per case)")
    return {**case, **res}


def build_cases(args):
    cases = []
    if "infer" in args.only:
        cases += [{"kind": "infer", "size": s, "dtype": d, "batch": b}
                  for s in args.sizes for d in args.dtypes for b in args.batches]
    if "train" in args.only:
        cases += [{"kind": "train", "size": s, "dtype": d, "batch": b}
                  for s in args.sizes for d in args.dtypes for b in args.train_batches]
    if "shift" in args.only:
        for s in args.shift_sizes:
            for d in args.dtypes:
                for b in args.shift_batches:
                    for t in args.shift_tiles:
                        cases.append({"kind": "shift", "size": s, "dtype": d, "batch": b,
                                      "tile": t})
    if "profile" in args.only:
        cases += [{"kind": "profile", "size": s, "dtype": d, "batch": args.profile_batch}
                  for s in args.sizes for d in args.dtypes]
    return cases


def run_isolated(args, case, peaks, argv):
    """The case in a fresh interpreter (per-case peak memory / RSS)."""
    skip_next = {"--json", "--reference", "--reference-json", "--reference-python", "--_case",
                 "--_peaks"}
    child, it = [], iter(argv)
    for a in it:
        if a.split("=", 1)[0] in skip_next:
            if "=" not in a:
                next(it, None)
            continue
        if a == "--isolate":
            continue
        child.append(a)
    cmd = [sys.executable, str(Path(__file__).resolve())] + child + [
        "--_case", json.dumps(case), "--_peaks", json.dumps(peaks)]
    env = dict(os.environ)
    env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    if ORIG_PREALLOC is not None:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = ORIG_PREALLOC
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {**case, "ok": False, "error": f"subprocess exit {proc.returncode}",
            "traceback": (proc.stderr or proc.stdout)[-3000:]}


ORIG_PREALLOC = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")


# ----------------------------------------------------------------- reference
def run_reference(args):
    """reference_torch.py once per size, before JAX initialises the device."""
    results = {}
    if args.reference_json:
        ref = json.loads(Path(args.reference_json).read_text())
        results[str(ref.get("size"))] = ref
        return results
    device = "cuda" if args.device == "cuda" else "cpu"
    if args.device == "auto":
        device = "cuda" if _has_nvidia() else "cpu"
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ref.json"
            cmd = [args.reference_python, str(HERE / "reference_torch.py"),
                   "--ref", args.reference, "--device", device, "--ngf", str(args.ngf),
                   "--size", str(size), "--batch", args.reference_batches,
                   "--warmup", str(args.warmup),
                   "--repeats", str(args.reference_repeats or args.repeats),
                   "--train-batch", "1", "--train-repeats", str(args.reference_train_repeats),
                   "--json", str(out)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print("reference:", shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True,  # inherits affinity
                                  check=False)
            if proc.returncode or not out.exists():
                results[str(size)] = {"ok": False, "command": shlex.join(cmd),
                                      "error": (proc.stderr or proc.stdout)[-3000:]}
                print(f"reference at {size} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            ref = json.loads(out.read_text())
            ref.update(ok=True, command=shlex.join(cmd), wall_s=time.perf_counter() - t0)
            print(proc.stdout, flush=True)
            results[str(size)] = ref
    return results


def _has_nvidia():
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                              check=False).returncode == 0
    except OSError:
        return False


def compare(results, reference):
    """our / their images/s for inference (per batch) and training (batch 1 and our best)."""
    out = {}
    for size_key, ref in reference.items():
        if not ref.get("ok", True) or "batches" not in ref:
            continue
        size = int(size_key)
        ours = [r for r in results if r.get("ok") and r.get("size") == size]
        cmp_ = {"reference_commit": ref.get("commit"), "reference_threads": ref.get("threads"),
                "inference": {}, "training": {}}
        for b, rr in ref["batches"].items():
            mine = [r for r in ours if r["kind"] == "infer" and r["batch"] == int(b)
                    and r["dtype"] == "float32"]
            if mine:
                cmp_["inference"][f"batch_{b}"] = {
                    "ours_images_per_s": mine[0]["images_per_s"],
                    "reference_images_per_s": rr["images_per_s"],
                    "ratio": mine[0]["images_per_s"] / rr["images_per_s"]}
            best = [r for r in ours if r["kind"] == "infer" and r["batch"] == int(b)]
            if best:
                top = max(best, key=lambda r: r["images_per_s"])
                if top["dtype"] != "float32":
                    cmp_["inference"][f"batch_{b}_best_dtype"] = {
                        "dtype": top["dtype"], "ratio": top["images_per_s"] / rr["images_per_s"]}
        tr = ref.get("train")
        if tr:
            trains = [r for r in ours if r["kind"] == "train"]
            b1 = [r for r in trains if r["batch"] == tr["batch"] and r["dtype"] == "float32"]
            if b1:
                cmp_["training"][f"batch_{tr['batch']}_float32"] = {
                    "ours_images_per_s": b1[0]["images_per_s"],
                    "reference_images_per_s": tr["images_per_s"],
                    "ratio": b1[0]["images_per_s"] / tr["images_per_s"]}
            if trains:
                top = max(trains, key=lambda r: r["images_per_s"])
                cmp_["training"]["ours_best"] = {
                    "batch": top["batch"], "dtype": top["dtype"],
                    "ours_images_per_s": top["images_per_s"],
                    "reference_images_per_s": tr["images_per_s"],
                    "ratio": top["images_per_s"] / tr["images_per_s"]}
            cmp_["training"]["note"] = (
                "not the same computation: the reference step runs G twice (ground truth for "
                "the InnerCos target + masked input) and adds VGG16 style/content losses and "
                "a discounted hole L1; ours runs the guidance target on the encoder levels "
                "only, one G forward, L1 + guidance + adversarial (the paper's losses)")
        out[size_key] = cmp_
    return out


# ----------------------------------------------------------------- report
def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def print_table(results, peaks):
    print()
    for d, (p, how) in peaks.items():
        print(f"peak {d}: {p:.3f} TFLOP/s ({how})")
    hdr = (f"{'what':<22}{'size':>5}{'dtype':>9}{'B':>4}{'median ms':>11}{'min ms':>9}"
           f"{'img/s':>10}{'GFLOP/img':>10}{'TFLOP/s':>9}{'floor ms':>10}{'%floor':>7}"
           f"{'temp MB':>9}{'peak MB':>9}")
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        kind = r["kind"]
        if kind == "profile" and r.get("ok"):
            continue  # printed below
        if not r.get("ok"):
            print(f"{kind:<22}{r['size']:>5}{r['dtype']:>9}{r['batch']:>4}  FAILED: "
                  f"{r.get('error', '')[:80]}")
            continue
        parts = [(kind, r)]
        if kind == "shift":
            eff = r["effective"].replace("tiled", "t")
            parts = [(f"shift {p} t={r['tile']} {eff}"[:21], r[p]) for p in ("fwd", "fwd_bwd")]
        for what, x in parts:
            temp = (x.get("compiled_memory") or {}).get("temp_bytes")
            peak = r.get("peak_device_bytes") or r.get("peak_rss_bytes")
            if "median_s" not in x:
                print(f"{what:<22}{r['size']:>5}{r['dtype']:>9}{r['batch']:>4}"
                      f"{'(compile only)':>20}{'':>38}{_fmt(temp and temp / 2**20, '9.1f')}")
                continue
            fpi = x.get("flops_per_image")
            print(f"{what:<22}{r['size']:>5}{r['dtype']:>9}{r['batch']:>4}"
                  f"{x['median_s'] * 1e3:>11.2f}{x['min_s'] * 1e3:>9.2f}"
                  f"{x['images_per_s']:>10.2f}{_fmt(fpi and fpi / 1e9, '10.2f'):>10}"
                  f"{_fmt(x.get('achieved_tflops'), '9.4f'):>9}"
                  f"{_fmt(x.get('floor_s') and x['floor_s'] * 1e3, '10.3f'):>10}"
                  f"{_fmt(x.get('fraction_of_floor') and 100 * x['fraction_of_floor'], '7.1f'):>7}"
                  f"{_fmt(temp and temp / 2**20, '9.1f'):>9}"
                  f"{_fmt(peak and peak / 2**20, '9.0f'):>9}")
        if kind == "train" and "loader" in r:
            ld = r["loader"]
            print(f"{'  + real loader':<22}{'':>18}{'':>20}"
                  f"{ld['train_with_loader_images_per_s']:>10.2f}   loader alone "
                  f"{ld['loader_only_images_per_s']:.1f} img/s, keeps up: {ld['keeps_up']}")
    profs = [r for r in results if r["kind"] == "profile" and r.get("ok")]
    for r in profs:
        print(f"\nprofile {r['size']} {r['dtype']} B={r['batch']}: each layer alone at its "
              "shape in the model (median ms), in the formulation the model used "
              f"(conv_impl={r['conv_impl']}: * below)")
        for pass_, s in r["summary"].items():
            if pass_ == "discriminator":
                print(f"  discriminator alone: fwd {s['fwd'] * 1e3:.1f} ms, fwd+bwd "
                      f"{s['fwd_bwd'] * 1e3:.1f} ms")
                continue
            print(f"  generator {pass_}: {s['generator_median_s'] * 1e3:.1f} ms")
            for g, v in s["isolated_median_s"].items():
                print(f"    {g:<16}{v * 1e3:>9.1f} ms  {100 * s['share'][g]:5.1f} %   best "
                      f"formulation {s['best_formulation_sum_s'][g] * 1e3:9.1f} ms")
            print(f"    {'other':<16}{s['other_s'] * 1e3:>9.1f} ms  (activations, concat, "
                  "fusion; negative = layers run faster inside the model)")
        print(f"  {'layer':<38}{'impl':>10}{'fwd ms':>8}{'GFLOP/s':>9}{'fwd+bwd ms':>12}"
              f"{'GFLOP/s':>9}")
        for row in r["rows"]:
            mark = "*" if row["used_by_model"] and row["impl"] else " "
            line = f"  {row['name']:<38}{(row['impl'] or '') + mark:>10}"
            for pass_ in ("fwd", "fwd_bwd"):
                x = row.get(pass_)
                if not x:
                    continue
                rate = x["flops"] / x["median_s"] / 1e9 if x["flops"] else None
                width = 8 if pass_ == "fwd" else 12
                line += f"{x['median_s'] * 1e3:>{width}.2f}{_fmt(rate, '9.1f'):>9}"
            print(line)


def print_comparison(comparison):
    for size, c in comparison.items():
        print(f"\nside-by-side at {size} (ours / reference, images/s):")
        for k, v in c["inference"].items():
            if "ours_images_per_s" in v:
                print(f"  inference {k:<10} {v['ours_images_per_s']:9.2f} / "
                      f"{v['reference_images_per_s']:9.2f} = {v['ratio']:.2f}x")
            else:
                print(f"  inference {k:<10} ({v['dtype']}) {v['ratio']:.2f}x")
        for k, v in c["training"].items():
            if isinstance(v, dict):
                extra = f" (batch {v['batch']} {v['dtype']})" if "batch" in v else ""
                print(f"  training {k:<18}{extra} {v['ours_images_per_s']:9.2f} / "
                      f"{v['reference_images_per_s']:9.2f} = {v['ratio']:.2f}x")


def environment_info(args, argv):
    import flax
    import jax
    import jaxlib
    import numpy as np

    dev = jax.local_devices()[0]
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, "benchmarks/bench.py"] + list(argv)),
        "host": platform.node(), "machine": platform.machine(),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_used": sorted(os.sched_getaffinity(0)),
        "threads_flag": args.threads,
        "threads_note": (
            "JAX 0.10 XLA:CPU has no intra-op thread-count option (intra_op_parallelism_threads "
            "is not an XLA flag: '--intra_op_parallelism_threads' aborts as unknown, without "
            "dashes it is ignored); --threads N pins this process and the reference to N CPUs "
            "with sched_setaffinity, and the reference also gets torch.set_num_threads(N)"),
        "platform": dev.platform, "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "python": platform.python_version(), "jax": jax.__version__,
        "jaxlib": jaxlib.__version__, "flax": flax.__version__, "numpy": np.__version__,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "conv_impl": model_conv_impl(args),
        "ngf": args.ngf, "num_downs": args.num_downs, "shift_layer": args.shift_layer,
        "repeats": args.repeats, "train_repeats": args.train_repeats, "warmup": args.warmup,
    }
    try:
        import optax
        info["optax"] = optax.__version__
    except ImportError:
        pass
    info["git"] = git_state()
    return info


def git_state():
    """Commit of the checkout and the tracked files changed in the working tree."""
    def git(*a):
        proc = subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "modified": [line[3:] for line in changed.splitlines()] if changed else []}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    setup_environment(args)
    sys.path.insert(0, str(ROOT))

    load_at_start = loadavg()  # before anything of ours (or the reference) runs
    reference = {}
    if (args.reference or args.reference_json) and not args._case:
        reference = run_reference(args)  # before JAX allocates the device's memory
    if args.isolate and not args._case:
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # parent only: children get it back

    import jax

    platform_name = jax.local_devices()[0].platform
    peaks = resolve_peaks(args, platform_name)
    if args._case:
        print(RESULT_TAG + json.dumps(run_case(args, json.loads(args._case), peaks)))
        return 0

    info = environment_info(args, argv)
    info["loadavg_start"] = load_at_start
    info["loadavg_note"] = ("1/5/15-minute load averages of the whole machine; while a case "
                            "runs they include this benchmark's own threads (about 2 on a "
                            "busy 2-CPU run), so loadavg_start is the one that tells whether "
                            "others were using the machine")
    print(f"{info['date']}  {info['cpu_model']} x{info['cpu_count']} (using "
          f"{len(info['cpus_used'])})  {info['platform']}:{info['device_kind']}  "
          f"jax {info['jax']}  flax {info['flax']}  load {info['loadavg_start']}", flush=True)
    results = []
    for case in build_cases(args):
        label = " ".join(f"{k}={v}" for k, v in case.items())
        print(f"... {label}  (load {loadavg()})", flush=True)
        r = (run_isolated(args, case, peaks, argv) if args.isolate
             else run_case(args, case, peaks))
        if not r.get("ok"):
            print(f"    FAILED: {r.get('error')}\n{r.get('traceback', '')[-1500:]}",
                  file=sys.stderr, flush=True)
        elif "median_s" in r:
            print(f"    median {r['median_s'] * 1e3:.2f} ms  "
                  f"{r.get('images_per_s', 0):.2f} images/s", flush=True)
        results.append(r)
    info["loadavg_end"] = loadavg()
    print_table(results, peaks)
    comparison = compare(results, reference) if reference else {}
    if comparison:
        print_comparison(comparison)
    print(f"\nload average start {info['loadavg_start']} end {info['loadavg_end']}")
    report = {"environment": info, "peaks_tflops": {d: {"value": v, "source": s}
                                                     for d, (v, s) in peaks.items()},
              "results": results, "reference": reference, "comparison": comparison}
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {path}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
