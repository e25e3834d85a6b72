"""Writing checkpoints: the Orbax manager, ``config.json``, saves that fail in one line, and
the generator-only bundles (``export_generator``: an Orbax step 0; ``export_compact``: float16
``.npz`` files, split at a size per file) that ``checkpoint.load_generator`` reads.

Orbax writes each step into a temporary folder from background threads and renames it
when complete. On a full disk those threads log a traceback each; here the free space
is checked before a save, a failure is raised as one :class:`CheckpointWriteError`
(the partial folder removed, the last complete step named), and the threads' records
are held back while saving (:func:`background_errors_held`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from shiftnet_jax.errors import UserError, escaped, first_line, write_atomically

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
COMPACT = "generator_f16.npz"
SHARD = "generator_f16-{index:05d}-of-{count:05d}.npz"
SHARD_PATTERN = re.compile(r"generator_f16-(\d{5})-of-(\d{5})\.npz")
# What a shard may hold beside its arrays' bytes: zip and .npy headers per entry,
# and deflate's worst-case growth of incompressible data (well under 1 %).
_ENTRY_OVERHEAD, _DEFLATE_MARGIN = 512, 0.01


def manager(workdir, *, max_to_keep: int | None = None, create: bool = True):
    """An Orbax CheckpointManager for ``workdir/checkpoints``."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(Path(workdir).absolute() / CHECKPOINTS, options=options)


def write_config(workdir, config: dict):
    """Write ``config.json`` atomically: on a full disk one line, the old file intact."""
    text = json.dumps(config, indent=2, sort_keys=True, default=str)
    write_atomically(Path(workdir) / CONFIG_FILE, text.encode())


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (a full disk, a read-only folder); one line that names
    the folder, the space free and needed, and the last complete checkpoint, which is intact.
    ``detail``: the reason and the space alone (``convert`` names its output with it)."""

    def __init__(self, message: str, detail: str):
        super().__init__(message)
        self.detail = detail


def _state_bytes(state) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(state) if hasattr(x, "dtype"))


def _complete_steps(directory: Path) -> list[int]:
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _write_failed(mngr, step: int, reason: str, needed: int | None) -> CheckpointWriteError:
    """The one-line error for a failed save of ``step``; its partial folder is removed first."""
    directory = Path(mngr.directory)
    for partial in directory.glob("*.orbax-checkpoint-tmp*"):
        shutil.rmtree(partial, ignore_errors=True)
    space = [f"{needed / 2**20:.3g} MB needed"] if needed else []
    try:
        space.insert(0, f"{shutil.disk_usage(directory).free / 2**20:.3g} MB free")
        done = _complete_steps(directory)
    except OSError:
        done = []
    last = f"step {done[-1]}, intact" if done else "none"
    detail = "; ".join([reason, *space])
    return CheckpointWriteError(f"cannot write checkpoint {step} to {escaped(directory)} ({detail}); "
                                f"the last complete checkpoint: {last}", detail)


def _reason(e: BaseException) -> str:
    # Orbax's writer threads report a full disk as a ValueError whose text holds the OS error.
    text = str(e)
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    for known in ("No space left on device", "Read-only file system", "Permission denied",
                  "Disk quota exceeded"):
        if known in text:
            return known
    return first_line(e)


def save(mngr, step: int, state, *, force: bool = False):
    """Save a pytree of arrays as ``step`` (asynchronously: :func:`finish` waits for it).

    Refused before anything is written when the disk has less free space than the arrays
    need; a write that fails anyway (the previous asynchronous save, surfacing here) is a
    :class:`CheckpointWriteError` with the partial folder removed."""
    needed = _state_bytes(state)
    directory = Path(mngr.directory)
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        free = None
    if free is not None and free < needed + (64 << 10):
        finish(mngr, step)
        raise _write_failed(mngr, step, "not enough space on the device", needed)
    try:
        return mngr.save(step, args=ocp.args.StandardSave(state), force=force)
    except (OSError, ValueError) as e:
        raise _write_failed(mngr, step, _reason(e), needed) from None


def finish(mngr, step: int | None = None):
    """Wait for the asynchronous save; a failed one is a :class:`CheckpointWriteError`."""
    try:
        mngr.wait_until_finished()
    except (OSError, ValueError) as e:
        step = mngr.latest_step() if step is None else step
        raise _write_failed(mngr, step, _reason(e), None) from None


class _HeldRecords(logging.Filter):
    """Holds back Orbax's error records (a background writer's traceback each)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def filter(self, record):
        if record.levelno >= logging.ERROR and "orbax" in record.pathname:
            self.records.append(record)
            return False
        return True


@contextlib.contextmanager
def background_errors_held():
    """While saving: Orbax's writer threads log each failure as a traceback (154 of them on
    a full disk); :func:`save` and :func:`finish` already raise it as one line, so the
    records are held back, and shown after all only if no error was raised."""
    logger, held = logging.getLogger("absl"), _HeldRecords()
    logger.addFilter(held)
    try:
        yield
    except BaseException:
        held.records.clear()
        raise
    finally:
        logger.removeFilter(held)
        for record in held.records:
            logger.handle(record)


def restore(mngr, step: int | None = None, target=None):
    """Restore ``step`` (default: the latest complete one) into the structure of ``target``."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, None
    return step, mngr.restore(step, args=ocp.args.StandardRestore(target))


# ------------------------------------------ generator-only and compact bundles
def export_generator(out_dir, model_kwargs: dict, variables, *, config: dict | None = None,
                     source: str | None = None):
    """Write a generator-only checkpoint (step 0) that ``load_generator`` reads.

    Refuses to write into a directory that already holds a checkpoint, so an
    existing one is never overwritten.
    """
    out_dir = Path(out_dir)
    if (out_dir / CONFIG_FILE).exists() or (out_dir / CHECKPOINTS).exists():
        raise ValueError(f"{out_dir}: already holds a checkpoint; choose a new directory")
    config = dict(config or {})
    config["model"] = dict(model_kwargs)
    if source:
        config["source"] = source
    mngr = manager(out_dir)
    with background_errors_held():
        save(mngr, 0, {"generator": variables})
        finish(mngr, 0)
    mngr.close()
    write_config(out_dir, config)


def export_compact(out_dir, model_kwargs: dict, variables, *, config: dict | None = None,
                   max_file_bytes: int | None = None):
    """Write ``config.json`` + the generator's variables as float16 (half the bytes of
    float32; :func:`load_generator` restores float32): one ``generator_f16.npz``, or
    with ``max_file_bytes`` as many ``generator_f16-*-of-*.npz`` files as it takes for
    each to stay within that size. Returns the paths of the array files."""
    out_dir = Path(out_dir)
    if (out_dir / CONFIG_FILE).exists():
        raise ValueError(f"{out_dir}: already holds a checkpoint; choose a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf, np.float16)
            for path, leaf in jax.tree_util.tree_leaves_with_path(variables)}
    groups = [flat] if max_file_bytes is None else _shard(flat, max_file_bytes)
    paths = []
    for index, arrays in enumerate(groups):
        name = COMPACT if max_file_bytes is None else SHARD.format(index=index, count=len(groups))
        tmp = out_dir / (name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        if max_file_bytes is not None and tmp.stat().st_size > max_file_bytes:
            raise RuntimeError(f"{name}: {tmp.stat().st_size} bytes > {max_file_bytes}")
        os.replace(tmp, out_dir / name)
        paths.append(out_dir / name)
    write_config(out_dir, {**(config or {}), "model": dict(model_kwargs)})
    return paths


def _shard(flat: dict, max_file_bytes: int) -> list[dict]:
    """Arrays -> groups of entries whose file stays within ``max_file_bytes``; arrays
    larger than a file's share are cut into pieces of their flattened values."""
    budget = int(max_file_bytes * (1 - _DEFLATE_MARGIN)) - 2 * _ENTRY_OVERHEAD
    if budget < 8 * _ENTRY_OVERHEAD:
        raise ValueError(f"max_file_bytes {max_file_bytes} is too small for a shard "
                         f"(at least {int(10 * _ENTRY_OVERHEAD / (1 - _DEFLATE_MARGIN)) + 1})")
    entries = []
    for name, array in flat.items():
        if array.nbytes + _ENTRY_OVERHEAD <= budget:
            entries.append((name, array))
            continue
        values = array.ravel()
        step = (budget - _ENTRY_OVERHEAD) // array.itemsize
        count = -(-values.size // step)
        entries.append((f"{name}::shape", np.asarray(array.shape, np.int64)))
        entries += [(f"{name}::part{k}of{count}", values[k * step:(k + 1) * step])
                    for k in range(count)]
    groups, size = [{}], 0
    for name, array in entries:
        need = array.nbytes + _ENTRY_OVERHEAD
        if groups[-1] and size + need > budget:
            groups.append({})
            size = 0
        groups[-1][name] = array
        size += need
    return groups
