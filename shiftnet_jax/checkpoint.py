"""Checkpoints on disk: Orbax for the arrays, JSON for the config beside them.

A checkpoint directory (a training workdir, or what ``convert`` writes) holds::

    config.json          the full config; ``config["model"]`` are the generator's
                         keyword arguments, ``config["data"]`` the data settings
    checkpoints/<step>/  Orbax checkpoints; ``state["generator"]`` are the
                         generator's variables ({"params", ["batch_stats"]})

or, for a small model shipped in a repository (:func:`export_compact`),
``generator_f16.npz`` instead of ``checkpoints/``: the generator's variables
in float16, restored to float32 on loading. :data:`BUNDLED_MODEL` is the one
that ships with this package. With a size limit per file (``max_file_bytes``)
the same arrays are split over ``generator_f16-00000-of-00007.npz``, ...: an
array larger than a file's share is cut into pieces of its flattened values
(``NAME::part<k>of<n>`` with its shape in ``NAME::shape``).

Orbax writes each step to a temporary directory and renames it when complete,
so a partly written checkpoint is never picked up.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from shiftnet_jax.errors import UserError
from shiftnet_jax.nets.generator import ShiftNetGenerator

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
COMPACT = "generator_f16.npz"
SHARD = "generator_f16-{index:05d}-of-{count:05d}.npz"
SHARD_PATTERN = re.compile(r"generator_f16-(\d{5})-of-(\d{5})\.npz")
# What a shard may hold beside its arrays' bytes: zip and .npy headers per entry,
# and deflate's worst-case growth of incompressible data (well under 1 %).
_ENTRY_OVERHEAD, _DEFLATE_MARGIN = 512, 0.01
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
            for path, leaf in _leaves_with_path(variables)}
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


def _leaves_with_path(tree):
    return jax.tree_util.tree_leaves_with_path(tree)


def compact_files(ckpt_dir) -> list[Path]:
    """The float16 array files of a compact checkpoint ([] if it is none); a missing
    shard is a :class:`NotACheckpointError`."""
    ckpt_dir = Path(ckpt_dir)
    if (ckpt_dir / COMPACT).is_file():
        return [ckpt_dir / COMPACT]
    shards = sorted(p for p in ckpt_dir.glob("generator_f16-*-of-*.npz")
                    if SHARD_PATTERN.fullmatch(p.name))
    if not shards:
        return []
    count = int(SHARD_PATTERN.fullmatch(shards[0].name).group(2))
    expected = [ckpt_dir / SHARD.format(index=i, count=count) for i in range(count)]
    missing = [p.name for p in expected if not p.is_file()]
    if missing:
        raise NotACheckpointError(f"{ckpt_dir}: missing {len(missing)} of {count} array "
                                  f"files ({missing[0]} first)")
    return expected


def _load_compact(paths) -> dict:
    """float16 array files -> nested float32 variables (pieces joined, reshaped)."""
    flat, pieces, shapes = {}, {}, {}
    for path in paths:
        with np.load(path) as z:
            for name in z.files:
                base, _, part = name.partition("::")
                if not part:
                    flat[name] = z[name]
                elif part == "shape":
                    shapes[base] = tuple(int(n) for n in z[name])
                else:
                    k, count = (int(n) for n in part[len("part"):].split("of"))
                    pieces.setdefault(base, [None] * count)[k] = z[name]
    for base, parts in pieces.items():
        if any(p is None for p in parts) or base not in shapes:
            raise ValueError(f"array {base!r} is incomplete")
        flat[base] = np.concatenate(parts).reshape(shapes[base])
    variables: dict = {}
    for name, value in flat.items():
        node = variables
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value.astype(np.float32)
    return variables


def load_generator(ckpt_dir, step: int | None = None, **overrides):
    """Load ``(model, variables, config)`` from a checkpoint directory.

    ``overrides`` replace model keyword arguments (e.g. ``dtype=jnp.bfloat16``).
    """
    config = read_config(ckpt_dir)
    compact = [] if (Path(ckpt_dir) / CHECKPOINTS).is_dir() else compact_files(ckpt_dir)
    if compact:
        try:
            variables = _load_compact(compact)
        except (OSError, ValueError) as e:
            raise NotACheckpointError(f"{ckpt_dir}: unreadable float16 arrays ({e})") from None
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
