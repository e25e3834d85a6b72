"""Writing checkpoints: the Orbax manager, ``config.json``, and saves that fail in one line.

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
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from shiftnet_jax.errors import UserError, escaped, first_line, write_atomically

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"


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
