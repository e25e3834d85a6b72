"""Checkpoints on disk: Orbax for the arrays, JSON for the config beside them.

A checkpoint directory (a training workdir, or what ``convert`` writes) holds::

    config.json          the full config; ``config["model"]`` are the generator's
                         keyword arguments, ``config["data"]`` the data settings
    checkpoints/<step>/  Orbax checkpoints; ``state["generator"]`` are the
                         generator's variables ({"params", ["batch_stats"]})

or, for a small model shipped in a repository (:func:`export_compact`),
``generator_f16.npz`` instead of ``checkpoints/``: the generator's variables
in float16, restored to float32 on loading. :data:`BUNDLED_MODEL` is the one
that ships with this package.

Orbax writes each step to a temporary directory and renames it when complete,
so a partly written checkpoint is never picked up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from shiftnet_jax.errors import UserError
from shiftnet_jax.nets.generator import ShiftNetGenerator

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
COMPACT = "generator_f16.npz"
BUNDLED_MODEL = Path(__file__).resolve().parent / "pretrained" / "demo"


class NotACheckpointError(UserError):
    """The directory holds no usable checkpoint; the message says why, in one line."""


def manager(workdir, *, max_to_keep: int | None = None, create: bool = True):
    """An Orbax CheckpointManager for ``workdir/checkpoints``."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(Path(workdir).absolute() / CHECKPOINTS, options=options)


def write_config(workdir, config: dict):
    """Write ``config.json`` atomically (write then rename)."""
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_config(ckpt_dir) -> dict:
    path = Path(ckpt_dir) / CONFIG_FILE
    if not Path(ckpt_dir).is_dir():
        raise NotACheckpointError(f"{ckpt_dir}: no such directory")
    if not path.is_file():
        raise NotACheckpointError(f"{ckpt_dir}: not a checkpoint directory (no {CONFIG_FILE}; "
                                  "expected a training workdir or a convert output)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NotACheckpointError(f"{path}: unreadable config ({e})") from None


def save(mngr, step: int, state, *, force: bool = False):
    """Save a pytree of arrays as ``step`` (asynchronously; ``mngr.wait_until_finished()``)."""
    return mngr.save(step, args=ocp.args.StandardSave(state), force=force)


def restore(mngr, step: int | None = None, target=None):
    """Restore ``step`` (default: the latest complete one) into the structure of ``target``."""
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None, None
    return step, mngr.restore(step, args=ocp.args.StandardRestore(target))


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
    save(mngr, 0, {"generator": variables})
    mngr.wait_until_finished()
    mngr.close()
    write_config(out_dir, config)


def export_compact(out_dir, model_kwargs: dict, variables, *, config: dict | None = None):
    """Write ``config.json`` + the generator's variables as float16 ``generator_f16.npz``
    (half the bytes of float32; :func:`load_generator` restores float32)."""
    out_dir = Path(out_dir)
    if (out_dir / CONFIG_FILE).exists():
        raise ValueError(f"{out_dir}: already holds a checkpoint; choose a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf, np.float16)
            for path, leaf in _leaves_with_path(variables)}
    tmp = out_dir / (COMPACT + ".tmp.npz")
    np.savez_compressed(tmp, **flat)
    os.replace(tmp, out_dir / COMPACT)
    write_config(out_dir, {**(config or {}), "model": dict(model_kwargs)})


def _leaves_with_path(tree):
    return jax.tree_util.tree_leaves_with_path(tree)


def _load_compact(path) -> dict:
    """``generator_f16.npz`` -> nested float32 variables."""
    variables: dict = {}
    with np.load(path) as z:
        for name in z.files:
            node = variables
            *parents, leaf = name.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = z[name].astype(np.float32)
    return variables


def load_generator(ckpt_dir, step: int | None = None, **overrides):
    """Load ``(model, variables, config)`` from a checkpoint directory.

    ``overrides`` replace model keyword arguments (e.g. ``dtype=jnp.bfloat16``).
    """
    config = read_config(ckpt_dir)
    if (Path(ckpt_dir) / COMPACT).is_file() and not (Path(ckpt_dir) / CHECKPOINTS).is_dir():
        try:
            variables = _load_compact(Path(ckpt_dir) / COMPACT)
        except (OSError, ValueError) as e:
            raise NotACheckpointError(f"{ckpt_dir}: unreadable {COMPACT} ({e})") from None
        model = ShiftNetGenerator(**{**config.get("model", {}), **overrides})
        config.setdefault("step", None)
        return model, variables, config
    if not (Path(ckpt_dir) / CHECKPOINTS).is_dir():
        raise NotACheckpointError(f"{ckpt_dir}: has {CONFIG_FILE} but no {CHECKPOINTS}/ folder")
    mngr = manager(ckpt_dir, create=False)
    try:
        step, state = restore(mngr, step)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise NotACheckpointError(f"{ckpt_dir}: cannot restore step {step} ({e})") from None
    finally:
        mngr.close()
    if state is None:
        raise NotACheckpointError(f"{ckpt_dir}: no complete checkpoint in {CHECKPOINTS}/")
    if "generator" not in state:
        raise NotACheckpointError(f"{ckpt_dir}: checkpoint {step} holds no generator")
    model = ShiftNetGenerator(**{**config.get("model", {}), **overrides})
    config["step"] = int(step)
    return model, state["generator"], config
