"""The training loop: data, steps, logging, checkpoints, resumption, shutdown.

Workdir layout::

    config.json                  the config of the run (eval.py reads it)
    checkpoints/<step>/          Orbax checkpoints of the whole TrainState
    metrics.jsonl                one JSON object per logged step (and "eval/*" at the end)
    tensorboard/                 the same scalars as TensorBoard event files
    samples/step_<step>.png      masked input | raw output | composite | ground truth
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import signal
import sys
import time
from pathlib import Path

import jax
import numpy as np

from shiftnet_jax import checkpoint
from shiftnet_jax import config as configlib
from shiftnet_jax.data import image_io, masks, sources
from shiftnet_jax.data import loader as data
from shiftnet_jax.data.image_io import to_uint8
from shiftnet_jax.inference import evaluate, predict
from shiftnet_jax.train import official_config, parallel, reporting
from shiftnet_jax.train import step as training


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class _StopRequested:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each step."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no handlers, no graceful stop
                pass
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def total_steps(config, steps_per_epoch: float) -> int:
    if config.num_steps:
        return int(config.num_steps)
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def check_finite(step, scalars):
    """Raise :class:`TrainingDiverged` (one line) when a logged loss is NaN or infinite."""
    bad = [k for k, v in scalars.items() if k != "psnr_hole" and not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"step {step}: {', '.join(bad)} became {scalars[bad[0]]}; "
                               "stopped, the last good checkpoint is kept")


def mean_scalars(pending) -> dict[str, float]:
    """The steps' scalar dicts (device values) -> their means, fetched once."""
    fetched = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def predict_batch(model, variables, batch, mesh):
    """The sharded forward on this process's batch -> (image, hole, Prediction), gathered from
    every process (a collective: every process must call it)."""
    sharded = parallel.shard_batch(data.to_float({k: batch[k] for k in ("image", "hole")}), mesh)
    prediction = predict.forward(model, variables, sharded["image"], sharded["hole"])
    return (parallel.gather(sharded["image"]), parallel.gather(sharded["hole"]),
            predict.Prediction(parallel.gather(prediction.composite), parallel.gather(prediction.output), None))


# eval/* key -> (method, region, metric) of the ScoreTable: the names experiments/ read.
EVAL_KEYS = {"psnr": ("shiftnet", "whole", "psnr"), "psnr_hole": ("shiftnet", "hole", "psnr"),
             "ssim": ("shiftnet", "whole", "ssim"), "l1_hole": ("shiftnet", "hole", "l1"),
             "l2_hole": ("shiftnet", "hole", "l2"), "input_psnr_hole": ("input", "hole", "psnr"),
             "input_l1_hole": ("input", "hole", "l1")}


def score_test_batches(state, config, mesh, model, local_batch: int, source, mask_fn) -> dict:
    """``eval/*`` metrics of the composite on up to ``eval_batches`` test batches, scored as
    ``eval.py`` scores (:class:`~shiftnet_jax.inference.evaluate.ScoreTable`: 8-bit results,
    images without a hole and NaN values left out of the means). ``input`` is the masked
    input (the hole mid-grey): the empty-hole baseline.

    Every process runs the same number of batches (a collective per batch); a
    process whose share of the test images ran out sends an empty batch that
    counts for nothing.
    """
    loader = data.from_config(config.data, train=False, batch_size=local_batch, source=source,
                              seed=config.seed, mask_fn=mask_fn)
    share = math.ceil(len(source) / jax.process_count())
    side = config.data.crop_size
    empty = {"image": np.zeros((0, side, side, 3), np.float32),
             "hole": np.zeros((0, side, side, 1), np.float32)}
    table = evaluate.ScoreTable(("shiftnet", "input"))
    for _ in range(min(config.eval_batches, math.ceil(share / local_batch))):
        batch = next(loader, None) or empty
        valid = predict.pad_batch(np.ones(len(batch["image"]), bool), local_batch)
        padded = {k: predict.pad_batch(v, local_batch) for k, v in batch.items()}
        image, hole, prediction = predict_batch(model, state.generator, padded, mesh)
        keep = parallel.gather(parallel.shard_batch({"valid": valid}, mesh)["valid"])
        table.add({"shiftnet": to_uint8(prediction.composite), "input": to_uint8(image * (1 - hole))},
                  image, hole, keep)
    means = table.means()
    scores = {f"eval/{key}": means[m][r][k] for key, (m, r, k) in EVAL_KEYS.items()}
    return {k: v for k, v in scores.items() if v is not None}   # None: no image had a hole


def train_and_evaluate(config, workdir) -> dict:
    """Train as ``config`` says, in ``workdir`` (resuming from its latest checkpoint)."""
    if config.distributed:
        parallel.init_distributed()
    workdir = Path(workdir)
    main_process = jax.process_index() == 0
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.batch_size, mesh)
    local_batch = config.batch_size // jax.process_count()
    # Open the data first: a missing data set fails in a second, not after init.
    source = sources.make_source(config.data, train=True)
    if main_process:
        checkpoint.write_config(workdir, config.to_dict())

    # Built once for the run: the networks and optimiser, and the mask function (for a
    # ``files`` spec this reads every mask image).
    parts = training.make_parts(config)
    mask_fn = masks.make_mask_fn(configlib.mask_spec(config))

    mngr = checkpoint.manager(workdir, max_to_keep=config.keep_checkpoints)
    if config.get("compat") == "official":   # the official code's step and D (docs/official-mode.md)
        state = parallel.replicate(official_config.create_state(config, config.data.crop_size), mesh)
    else:
        state = parallel.replicate(training.create_state(config, config.data.crop_size, parts), mesh)
    restored_step, restored = checkpoint.restore(mngr, target=state)
    if restored is not None:
        state = restored
    start = int(jax.device_get(state.step))

    loader = data.from_config(config.data, train=True, batch_size=local_batch, source=source,
                              seed=config.seed, start_step=start, mask_fn=mask_fn, dtype="uint8")
    steps = total_steps(config, loader.steps_per_epoch)
    if start >= steps:  # resumed at its last step: nothing to train (the caller says so)
        loader.close()
        mngr.close()
        return {"step": start, "already_complete": steps}
    step_fn = parallel.jit_train_step(config, mesh, parts, steps_per_epoch=loader.steps_per_epoch)
    generator = parts.generator
    # Opened on first use, then reused by every evaluation.
    eval_source = functools.cache(lambda: sources.make_source(config.data, train=False))
    writer = reporting.MetricWriter(workdir, enabled=main_process)
    from tqdm import tqdm

    bar = tqdm(total=steps, initial=start, unit="step", dynamic_ncols=True,
               disable=not main_process, desc=config.name)
    if restored is not None and main_process:
        bar.write(f"resumed from {workdir / 'checkpoints' / str(restored_step)}")
    pending, last_log, step, scalars = [], time.perf_counter(), start, {}

    def flush():
        nonlocal pending, last_log, scalars
        if not pending:
            return
        scalars = mean_scalars(pending)
        check_finite(step, scalars)
        now = time.perf_counter()
        scalars["images_per_s"] = len(pending) * config.batch_size / (now - last_log)
        writer.write(step, scalars)
        bar.set_postfix(loss=f"{scalars['g_loss']:.3f}", img_s=f"{scalars['images_per_s']:.1f}")
        pending, last_log = [], now

    def save():
        flush()
        checkpoint.save(mngr, step, state)

    try:
        with _StopRequested() as stop, checkpoint.background_errors_held():
            batches = iter(loader)
            while step < steps and stop.signal is None:
                batch = next(batches)
                state, step_scalars = step_fn(state, parallel.shard_batch(batch, mesh))
                pending.append(step_scalars)
                step += 1
                bar.update(1)
                if step % config.log_every == 0:
                    flush()
                if config.sample_every and step % config.sample_every == 0:
                    image, hole, prediction = predict_batch(generator, state.generator, batch, mesh)
                    if main_process:
                        image_io.save_png(workdir / "samples" / f"step_{step:07d}.png",
                                          reporting.sample_grid(image, hole, prediction.output))
                if step % config.checkpoint_every == 0:
                    save()
                if config.eval_every and step % config.eval_every == 0 and step < steps:
                    flush()
                    writer.write(step, score_test_batches(state, config, mesh, generator, local_batch,
                                                          eval_source(), mask_fn))
            if stop.signal is not None:
                bar.write(f"{stop.signal}: saving checkpoint {step} and stopping")
            save()
            checkpoint.finish(mngr, step)
        summary = {"step": step, **scalars}
        if step >= steps and config.eval_batches:
            summary.update(score_test_batches(state, config, mesh, generator, local_batch,
                                              eval_source(), mask_fn))
            writer.write(step, {k: v for k, v in summary.items() if k.startswith("eval/")})
        return summary
    finally:
        loader.close()
        bar.close()
        writer.close()
        with contextlib.suppress(checkpoint.CheckpointWriteError):  # raised above already
            checkpoint.finish(mngr)
        mngr.close()


def run_from_command_line(config_path, overrides, workdir=None) -> int:
    """``train.py``: load and check the config, train, print one summary line.

    Every expected failure (config, data, divergence) is one ``error:`` line on
    stderr and exit code 1; done is exit code 0.
    """
    logging.getLogger("absl").setLevel(logging.WARNING)   # Orbax logs every save at INFO
    try:
        config = configlib.load_config(config_path)
        configlib.apply_overrides(config, overrides)
        configlib.validate(config)
        workdir = workdir or f"runs/{config.name}"
        summary = train_and_evaluate(config, workdir)
    except (configlib.ConfigError, ValueError, FileNotFoundError, TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if jax.process_index() != 0:  # process 0 speaks for the run
        return 0
    if "already_complete" in summary:
        print(f"already complete: {workdir} is at step {summary['step']} of {summary['already_complete']}; "
              "nothing trained (a larger --config.num_steps trains on, another --workdir starts afresh)")
        return 0
    shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k != "step")
    print(f"done: step {summary['step']} in {workdir}: {shown}")
    return 0
