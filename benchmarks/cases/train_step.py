"""``train``: the jitted training step on a replicated state, and the loader feeding it.

``shiftnet_jax.train.parallel.jit_train_step`` on ``parallel.replicate(
step.create_state(config, size), mesh)``, the config being the paper's recipe
(``default_config()``) with the benchmark's model, batch and dtype:

(a) a synthetic batch already sharded on the device, reused every step;
(b) the real input pipeline (``data.loader.from_config``, the ``sample`` source,
    crop = size, centre hole) feeding the step, to show whether input keeps up
    (``keeps_up``: (b) >= 0.9 x (a)); plus the loader alone.
"""

from __future__ import annotations

import time

import jax

from benchmarks import measure, workloads
from shiftnet_jax.data import loader as data
from shiftnet_jax.train import parallel
from shiftnet_jax.train import step as training

KIND = "train"


def add_arguments(p):
    p.add_argument("--train-batches", default=None,
                   help="training batch sizes (default: --batches)")
    p.add_argument("--train-repeats", type=int, default=None,
                   help="timed training steps (default: --repeats)")
    p.add_argument("--loader-steps", type=int, default=10,
                   help="training steps timed with the real loader (0: skip)")


def build(args) -> list[dict]:
    return [{"kind": KIND, "size": s, "dtype": d, "batch": b}
            for s in args.sizes for d in args.dtypes for b in args.train_batches]


def run(args, case, peaks) -> dict:
    size, dtype_name, batch = case["size"], case["dtype"], case["batch"]
    config = workloads.train_config(args, size, dtype_name, batch)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(batch, mesh)
    parts = training.make_parts(config)
    state = parallel.replicate(training.create_state(config, size, parts), mesh)
    synthetic = parallel.shard_batch({"image": workloads.random_images(batch, size),
                                      "hole": workloads.centre_holes(batch, size)}, mesh)
    out, compiled = measure.compile_and_time(
        None, (state, synthetic), args.warmup, args.train_repeats, run=False,
        jitted=parallel.jit_train_step(config, mesh, parts))
    holder = {"state": state}

    def step(batch_arrays):
        holder["state"], scalars = compiled(holder["state"], batch_arrays)
        return scalars

    first = jax.device_get(step(synthetic))
    out["first_step_scalars"] = {k: float(v) for k, v in first.items()}
    out.update(measure.timed(lambda: step(synthetic), args.warmup, args.train_repeats))
    measure.add_rates(out, out["flops"], batch, peaks.get(dtype_name))
    if args.loader_steps > 0:
        out["loader"] = feed(args, config, mesh, step, holder, out["images_per_s"])
    return out


def feed(args, config, mesh, step, holder, synthetic_rate: float) -> dict:
    """The loader alone, then the loader feeding the step (loading overlaps the step:
    dispatch is asynchronous)."""
    batch, n = config.batch_size, args.loader_steps
    loader = data.from_config(config.data, train=True, batch_size=batch, seed=0)
    for _ in range(2):  # warm the worker threads / pipeline
        next(loader)
    t0 = time.perf_counter()
    for _ in range(n):
        next(loader)
    loader_only = time.perf_counter() - t0
    for _ in range(max(1, args.warmup)):
        jax.block_until_ready(step(parallel.shard_batch(next(loader), mesh)))
    t0 = time.perf_counter()
    scalars = None
    for _ in range(n):
        scalars = step(parallel.shard_batch(next(loader), mesh))
    jax.block_until_ready((holder["state"], scalars))
    with_loader = n * batch / (time.perf_counter() - t0)
    return {"steps": n, "source": config.data.source, "crop": config.data.crop_size,
            "load_size": config.data.load_size, "mask": config.data.mask,
            "loader_only_images_per_s": n * batch / loader_only,
            "train_with_loader_images_per_s": with_loader,
            "keeps_up": with_loader >= 0.9 * synthetic_rate,
            "with_loader_over_synthetic": with_loader / synthetic_rate}


def table_rows(result) -> list:
    return [("train", result)]


def print_details(r):
    if "loader" in r:
        ld = r["loader"]
        print(f"    B={r['batch']} {r['dtype']} + real loader: "
              f"{ld['train_with_loader_images_per_s']:.2f} img/s; loader alone "
              f"{ld['loader_only_images_per_s']:.1f} img/s; keeps up: {ld['keeps_up']}")
