"""Train a config for a fixed wall-clock budget; write the generator (float16) and its metrics.

What ``benchmarks/gpu_suite.sh --train CONFIG --minutes M`` runs, so that a few
minutes on a GPU produce a model::

    OUT/metrics.jsonl       the logged training scalars (one JSON object per line)
    OUT/metrics.json        summary: steps, images/s, compile time, final losses,
                            the evaluation of the final generator (eval/*), device
    OUT/generator/          config.json + generator_f16-*-of-*.npz, each file at most
                            ``max_file_bytes`` (16 MB); ``checkpoint.load_generator`` reads it

The budget counts from the first step (its compilation included) to the last (at
least two steps run); the final evaluation and the export come after it. The step, the loader and the
evaluation are the training loop's own (``shiftnet_jax.train``); there are no
checkpoints to resume from: the point is one model in a fixed time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np

from shiftnet_jax import checkpoint
from shiftnet_jax import config as configlib
from shiftnet_jax.data import loader as data
from shiftnet_jax.data import masks, sources
from shiftnet_jax.train import loop, parallel, reporting
from shiftnet_jax.train import step as training

MAX_FILE_BYTES = 16 * 10 ** 6


def load(config_path, overrides, *, photos: str | None = None, tiny: bool = False):
    """The config file with ``--config.KEY=VALUE`` overrides; ``photos``: train on held-out
    regions of the photos in that folder; ``tiny``: the dry run's model and sizes."""
    config = configlib.load_config(config_path)
    if photos:
        config.data.source, config.data.dir = "regions", photos
    if tiny:   # seconds on a CPU: 32x32 crops, 4 channels, shift at 4x4
        config.model.ngf, config.model.num_downs, config.discriminator.ndf = 4, 5, 4
        config.model.conv_impl = "lax"   # the fastest to compile (as the suite's dry run)
        config.data.crop_size, config.data.load_size = 32, 40
        config.batch_size, config.log_every, config.eval_batches = 2, 2, 1
        config.data.num_workers = 1
    configlib.apply_overrides(config, overrides)
    if not config.num_steps:
        config.num_steps = 10 ** 9   # the clock decides; validate wants steps or epochs
    return configlib.validate(config)


def train(config, minutes: float, out_dir, *, max_file_bytes: int = MAX_FILE_BYTES) -> dict:
    """Train until ``minutes`` have passed; returns the summary written to metrics.json."""
    out_dir = Path(out_dir)
    if (out_dir / "generator").exists():
        raise ValueError(f"{out_dir / 'generator'} exists; choose a new --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    local_batch = config.batch_size // jax.process_count()
    source = sources.make_source(config.data, train=True)
    parts = training.make_parts(config)   # built once, as the training loop does
    mask_fn = masks.make_mask_fn(configlib.mask_spec(config))
    state = parallel.replicate(training.create_state(config, config.data.crop_size, parts), mesh)
    loader = data.from_config(config.data, train=True, batch_size=local_batch, source=source,
                              seed=config.seed, mask_fn=mask_fn)
    step_fn = parallel.jit_train_step(config, mesh, parts)
    writer = reporting.MetricWriter(out_dir)
    pending, history, step, compile_s = [], [], 0, None
    start = time.perf_counter()
    deadline = start + 60.0 * minutes
    try:
        while step < 2 or time.perf_counter() < deadline:   # 2: a rate after the first
            state, scalars = step_fn(state, parallel.shard_batch(next(loader), mesh))
            pending.append(scalars)
            step += 1
            if compile_s is None:
                jax.block_until_ready(scalars)
                compile_s = time.perf_counter() - start
            if step % config.log_every == 0:
                history.append(_log(writer, step, pending, start))
                pending = []
        jax.block_until_ready(state)
        wall = time.perf_counter() - start
        if pending:
            history.append(_log(writer, step, pending, start))
        evaluation = loop.score_test_batches(state, config, mesh, parts.generator, local_batch,
                                             sources.make_source(config.data, train=False),
                                             mask_fn)
        writer.write(step, evaluation)
    finally:
        writer.close()
    host_generator = jax.device_get(state.generator)
    files = checkpoint.export_compact(out_dir / "generator", config.model.to_dict(),
                                      host_generator, config=config.to_dict(),
                                      max_file_bytes=max_file_bytes)
    steady_steps = step - 1
    summary = {
        "config": config.name, "minutes": minutes, "steps": step, "wall_s": wall,
        "images": step * config.batch_size, "batch_size": config.batch_size,
        "first_step_s": compile_s,
        "images_per_s_after_first_step": (steady_steps * config.batch_size
                                          / max(wall - compile_s, 1e-9)) if steady_steps else None,
        "final": history[-1] if history else {}, "evaluation": evaluation,
        "generator_files": [{"name": f.name, "bytes": f.stat().st_size} for f in files],
        "generator_parameters": int(sum(np.size(x) for x in jax.tree.leaves(host_generator))),
        "device_kind": jax.local_devices()[0].device_kind, "device_count": jax.device_count(),
        "data": {k: config.data[k] for k in ("source", "dir", "crop_size", "load_size", "mask")},
    }
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _log(writer, step, pending, start) -> dict:
    """The mean of the pending scalars, checked finite as the training loop does."""
    scalars = loop.mean_scalars(pending)
    loop.check_finite(step, scalars)
    scalars["elapsed_s"] = time.perf_counter() - start
    writer.write(step, scalars)
    return {"step": step, **scalars}


def print_summary(summary: dict):
    ev = summary["evaluation"]
    rate = summary["images_per_s_after_first_step"]
    print(f"trained {summary['config']} for {summary['wall_s']:.0f} s: {summary['steps']} steps "
          f"of {summary['batch_size']}, first step {summary['first_step_s']:.1f} s, then "
          f"{'-' if rate is None else f'{rate:.1f}'} images/s on {summary['device_kind']}")
    print("final: " + ", ".join(f"{k} {v:.4g}" for k, v in summary["final"].items()
                                if k not in ("step", "elapsed_s")))
    print("evaluation: " + ", ".join(f"{k} {v:.4g}" for k, v in ev.items()))
    sizes = [f["bytes"] for f in summary["generator_files"]]
    print(f"generator: {len(sizes)} float16 file(s), largest {max(sizes) / 1e6:.2f} MB, "
          f"{summary['generator_parameters']:,} parameters")
