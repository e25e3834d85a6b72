"""The training loop: data, steps, logging, checkpoints, resumption, shutdown.

Workdir layout::

    config.json                  the config of the run (eval.py reads it)
    checkpoints/<step>/          Orbax checkpoints of the whole TrainState
    metrics.jsonl                one JSON object per logged step (and "eval/*" at the end)
    tensorboard/                 the same scalars as TensorBoard event files
    samples/step_<step>.png      masked input | raw output | composite | ground truth
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import jax
import numpy as np

from shiftnet_jax import checkpoint, data, masks, metrics, reporting
from shiftnet_jax import train as training


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


def mask_fn(data_config):
    return masks.make_mask_fn(masks.parse_mask_spec(data_config.mask))


def total_steps(config, steps_per_epoch: float) -> int:
    if config.num_steps:
        return int(config.num_steps)
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def _check_finite(step, scalars):
    bad = [k for k, v in scalars.items() if k != "psnr_hole" and not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(f"step {step}: {', '.join(bad)} became {scalars[bad[0]]}; "
                               "stopped, the last good checkpoint is kept")


def _mean_scalars(pending):
    fetched = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def evaluate(state, config, mesh, predict, local_batch: int):
    """Hole and whole-image metrics of the composite on up to ``eval_batches`` test batches."""
    loader = data.from_config(config.data, train=False, batch_size=local_batch,
                              mask_fn=mask_fn(config.data), seed=config.seed)
    sums, count = {}, 0
    for i, batch in enumerate(loader):
        if i >= config.eval_batches:
            break
        image, hole = batch["image"], batch["hole"]
        n = len(image)
        # A short last batch is padded to the sharded batch size; the padding is dropped.
        padded = {k: np.concatenate([v, np.repeat(v[-1:], local_batch - n, axis=0)])
                  for k, v in batch.items()}
        output = jax.device_get(predict(state.generator, training.shard_batch(padded, mesh)))
        fake = metrics.composite(np.asarray(output)[:n], image, hole)
        values = {"psnr": metrics.psnr(fake, image), "psnr_hole": metrics.psnr(fake, image, hole),
                  "ssim": metrics.ssim(fake, image), "l1_hole": metrics.mean_l1(fake, image, hole),
                  "l2_hole": metrics.mean_l2(fake, image, hole),
                  "input_psnr_hole": metrics.psnr(image * (1 - hole), image, hole)}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + float(np.nansum(np.asarray(v)))
        count += len(image)
    return {f"eval/{k}": v / max(count, 1) for k, v in sums.items()}


def train_and_evaluate(config, workdir) -> dict:
    """Train as ``config`` says, in ``workdir`` (resuming from its latest checkpoint)."""
    if config.distributed:
        jax.distributed.initialize()
    workdir = Path(workdir)
    main_process = jax.process_index() == 0
    mesh = training.make_mesh()
    training.check_batch_size(config.batch_size, mesh)
    local_batch = config.batch_size // jax.process_count()
    # Open the data first: a missing data set fails in a second, not after init.
    source = data.make_source(config.data, train=True)
    if main_process:
        checkpoint.write_config(workdir, config.to_dict())

    mngr = checkpoint.manager(workdir, max_to_keep=config.keep_checkpoints)
    state = training.replicate(training.create_state(config, config.data.crop_size), mesh)
    restored_step, restored = checkpoint.restore(mngr, target=state)
    if restored is not None:
        state = restored
    start = int(jax.device_get(state.step))

    loader = data.from_config(config.data, train=True, batch_size=local_batch, source=source,
                              mask_fn=mask_fn(config.data), seed=config.seed, start_step=start)
    steps = total_steps(config, loader.steps_per_epoch)
    step_fn = training.jit_train_step(config, mesh)
    predict = training.jit_predict(config, mesh)
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
        scalars = _mean_scalars(pending)
        _check_finite(step, scalars)
        now = time.perf_counter()
        scalars["images_per_s"] = len(pending) * config.batch_size / (now - last_log)
        writer.write(step, scalars)
        bar.set_postfix(loss=f"{scalars['g_loss']:.3f}", img_s=f"{scalars['images_per_s']:.1f}")
        pending, last_log = [], now

    def save():
        flush()
        checkpoint.save(mngr, step, state)

    try:
        with _StopRequested() as stop:
            batches = iter(loader)
            while step < steps and stop.signal is None:
                batch = next(batches)
                state, step_scalars = step_fn(state, training.shard_batch(batch, mesh))
                pending.append(step_scalars)
                step += 1
                bar.update(1)
                if step % config.log_every == 0:
                    flush()
                if config.sample_every and step % config.sample_every == 0 and main_process:
                    output = jax.device_get(predict(state.generator,
                                                    training.shard_batch(batch, mesh)))
                    reporting.save_png(workdir / "samples" / f"step_{step:07d}.png",
                                       reporting.sample_grid(batch["image"], batch["hole"],
                                                             output))
                if step % config.checkpoint_every == 0:
                    save()
            if stop.signal is not None:
                bar.write(f"{stop.signal}: saving checkpoint {step} and stopping")
            save()
        mngr.wait_until_finished()
        summary = {"step": step, **scalars}
        if step >= steps and config.eval_batches:
            summary.update(evaluate(state, config, mesh, predict, local_batch))
            writer.write(step, {k: v for k, v in summary.items() if k.startswith("eval/")})
        return summary
    finally:
        bar.close()
        writer.close()
        mngr.wait_until_finished()
        mngr.close()
