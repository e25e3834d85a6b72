"""Checkpoints on disk: Orbax for the arrays, JSON for the config beside them.

A checkpoint directory (a training workdir, or what ``convert`` writes) holds::

    config.json          the full config; ``config["model"]`` are the generator's
                         keyword arguments, ``config["data"]`` the data settings
    checkpoints/<step>/  Orbax checkpoints; ``state["generator"]`` are the
                         generator's variables ({"params", ["batch_stats"]})

or, for a small model shipped in a repository (``saving.export_compact``),
``generator_f16.npz`` instead of ``checkpoints/``: the generator's variables
in float16, restored to float32 on loading. :data:`BUNDLED_MODEL` is the one
that ships with this package. With a size limit per file (``max_file_bytes``)
the same arrays are split over ``generator_f16-00000-of-00007.npz``, ...: an
array larger than a file's share is cut into pieces of its flattened values
(``NAME::part<k>of<n>`` with its shape in ``NAME::shape``).

Orbax writes each step to a temporary directory and renames it when complete,
so a partly written checkpoint is never picked up; writing (the manager, ``config.json``,
saves that fail in one line on a full disk, the generator-only and compact bundles) is in
:mod:`shiftnet_jax.saving`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import stat
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from shiftnet_jax import saved_config
from shiftnet_jax.config import ConfigError
from shiftnet_jax.errors import UserError, escaped, first_line, quote
from shiftnet_jax.nets.generator import ShiftNetGenerator
# Writing checkpoints and bundles, re-exported: the loop, convert and the tools call them
# from here.
from shiftnet_jax.saving import (  # noqa: F401
    CHECKPOINTS,
    COMPACT,
    CONFIG_FILE,
    SHARD,
    SHARD_PATTERN,
    CheckpointWriteError,
    background_errors_held,
    export_compact,
    export_generator,
    finish,
    manager,
    restore,
    save,
    write_config,
)
from shiftnet_jax.torchfile.archive import check_zip_directory
from shiftnet_jax.torchfile.limits import CheckpointError

BUNDLED_MODEL = Path(__file__).resolve().parent / "pretrained" / "demo"


# Bounds of a checkpoint folder from a stranger.
MAX_CONFIG_BYTES = 1 << 20        # config.json (a real one: ~2 KB)
MAX_METADATA_BYTES = 64 << 20     # each JSON file Orbax parses
MAX_JSON_DEPTH = 64               # their nesting (Orbax's own: ~10)
MAX_MODEL_BYTES = 2 << 30         # float32 variables of the generator a config describes (paper's: 218 MB)
_ACCEPTED_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


class NotACheckpointError(UserError):
    """The directory holds no usable checkpoint; the message says why, in one line."""


def _json_depth(text: str) -> int:
    """How deeply ``[`` / ``{`` nest in JSON ``text`` (strings left out), without recursion."""
    bare = _JSON_STRING.sub("", text).encode()
    steps = np.frombuffer(bare, np.uint8)
    opens = (steps == ord("[")) | (steps == ord("{"))
    closes = (steps == ord("]")) | (steps == ord("}"))
    return int(np.cumsum(opens.astype(np.int64) - closes).max(initial=0))


def read_json(path, what: str, max_bytes: int = MAX_METADATA_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """A JSON file from a stranger: a regular file of at most ``max_bytes``, nested at most
    ``max_depth`` deep (checked before parsing: 100,000 levels are a RecursionError), parsed;
    every problem is one :class:`NotACheckpointError` line naming the file."""
    path = Path(path)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise NotACheckpointError(f"{escaped(path)}: {what} is not a regular file")
        if st.st_size > max_bytes:
            raise NotACheckpointError(f"{escaped(path)}: {what} is {st.st_size} bytes; the limit is {max_bytes}")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise NotACheckpointError(f"{escaped(path)}: unreadable {what} ({first_line(e)})") from None
    depth = _json_depth(text)
    if depth > max_depth:
        raise NotACheckpointError(f"{escaped(path)}: {what} nests {depth} levels deep; the limit is {max_depth}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise NotACheckpointError(f"{escaped(path)}: unreadable {what} ({first_line(e)})") from None


def read_config(ckpt_dir) -> dict:
    """``config.json`` of a checkpoint directory, checked by the rules of ``--config``
    (:func:`shiftnet_jax.saved_config.check_saved`) before anything is built from it."""
    path = Path(ckpt_dir) / CONFIG_FILE
    if not Path(ckpt_dir).is_dir():
        raise NotACheckpointError(f"{escaped(ckpt_dir)}: no such directory")
    if not path.is_file():
        raise NotACheckpointError(f"{escaped(ckpt_dir)}: not a checkpoint directory (no {CONFIG_FILE}; "
                                  "expected a training workdir or a convert output)")
    raw = read_json(path, "config", MAX_CONFIG_BYTES, saved_config.MAX_SAVED_DEPTH)
    try:
        saved_config.check_saved(raw, where=escaped(path))
    except ConfigError as e:
        raise NotACheckpointError(str(e)) from None
    return raw


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


def _flat_name(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def expected_variables(model) -> dict:
    """``{"params/down_0/conv/bias": jax.ShapeDtypeStruct, ...}``: the generator's variables
    as ``model`` describes them, found without computing (or allocating) any."""
    side = 2 ** model.num_downs  # parameters do not depend on the image size
    image = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    hole = jax.ShapeDtypeStruct((1, side, side, 1), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), image, hole)
    return {_flat_name(path): leaf for path, leaf in _leaves_with_path(shapes)}


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for name, leaf in flat.items():
        node = tree
        *parents, last = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return tree


def encoder_bytes(ngf: int, num_downs: int, in_channels: int = 4) -> int:
    """A lower bound of a generator's float32 bytes: its encoder's 4x4 convs alone (level i has
    ``ngf * min(2**i, 8)`` channels, every variant), computed without tracing the model."""
    channels = [in_channels] + [ngf * min(2 ** i, 8) for i in range(num_downs)]
    return sum(16 * a * b * 4 for a, b in itertools.pairwise(channels))


def _check_size(where, expected: dict):
    total = sum(math.prod(a.shape) * 4 for a in expected.values())
    if total > MAX_MODEL_BYTES:
        raise NotACheckpointError(f"{where}: the model its config describes has {total / 2**30:.3g} GiB "
                                  f"of variables; the limit is {MAX_MODEL_BYTES / 2**30:.3g} GiB")


def _mismatch(where, found: dict, expected: dict, what: str) -> str | None:
    """A one-line description of how ``found`` {name: (shape, dtype)} differs from ``expected``."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        return f"{where}: {what} lacks {len(missing)} array(s) the config's model has (first: {quote(missing[0])})"
    if extra:
        return f"{where}: {what} has {len(extra)} array(s) the config's model lacks (first: {quote(extra[0])})"
    for name, want in expected.items():
        shape, dtype = found[name]
        if tuple(shape) != tuple(want.shape):
            return (f"{where}: {what} array {quote(name)} is {tuple(shape)}; the config's model needs "
                    f"{tuple(want.shape)}")
        if dtype is not None and np.dtype(dtype) not in _ACCEPTED_DTYPES:
            return f"{where}: {what} array {quote(name)} is {np.dtype(dtype)}; expected float16 or float32"
    return None


def _load_compact(paths, expected: dict) -> dict:
    """float16 array files (one ``generator_f16.npz`` or its shards) -> nested float32
    variables. Every record's size is bounded by the array ``expected`` says it belongs to
    and its shape and dtype are read from its .npy header before its data is inflated; no
    record inflates past the size its header declares; pieces are joined, then every
    array is checked against ``expected``."""
    where = escaped(paths[0].parent)
    if sum(path.stat().st_size for path in paths) > MAX_MODEL_BYTES:
        raise NotACheckpointError(f"{where}: the array files exceed {MAX_MODEL_BYTES} bytes")
    stored, pieces, shapes, extra = {}, {}, {}, {}
    for path in paths:
        _check_zip_directory(path, len(expected))
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                base, _, part = name.partition("::")
                if base not in expected:   # reported with the other mismatches below
                    extra[base] = ((), None)
                    continue
                if name in stored or (part and part in pieces.get(base, {})):
                    raise NotACheckpointError(f"{where}: a record name appears twice ({quote(name)})")
                limit = math.prod(expected[base].shape) * 4 + 4096  # float32 at most, and its header
                if info.file_size > limit:
                    raise NotACheckpointError(f"{where}: {path.name} record {quote(info.filename)} "
                                              f"declares {info.file_size} bytes for an array of "
                                              f"{expected[base].shape}")
                with zf.open(info) as f:
                    shape, fortran, dtype = _npy_header(f)
                    is_shape = part == "shape"
                    if (is_shape and dtype.kind not in "iu") or (
                            not is_shape and dtype not in _ACCEPTED_DTYPES):
                        raise NotACheckpointError(f"{where}: {path.name} array {quote(name)} is {dtype}; "
                                                  "expected float16 or float32")
                    nbytes = math.prod(shape) * dtype.itemsize
                    if nbytes > limit:
                        raise NotACheckpointError(f"{where}: {path.name} array {quote(name)} is "
                                                  f"{shape}, larger than the config's model allows")
                    data = f.read(nbytes)
                if len(data) != nbytes:
                    raise NotACheckpointError(f"{where}: {path.name} record {quote(info.filename)} is truncated")
                array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
                if not part:
                    stored[name] = array
                elif is_shape:
                    shapes[base] = tuple(int(n) for n in array)
                else:
                    k, count = (int(n) for n in part[len("part"):].split("of"))
                    pieces.setdefault(base, {})[part] = (k, count, array)
    for base, parts in pieces.items():
        counts = {count for _, count, _ in parts.values()}
        if len(counts) != 1 or len(parts) != counts.pop() or base not in shapes:
            raise NotACheckpointError(f"{where}: array {quote(base)} is incomplete")
        joined = np.concatenate([a for _, _, a in sorted(parts.values(), key=lambda x: x[0])])
        if joined.size != math.prod(shapes[base]):
            raise NotACheckpointError(f"{where}: array {quote(base)} is incomplete")
        stored[base] = joined.reshape(shapes[base])
    found = {**extra, **{k: (v.shape, v.dtype) for k, v in stored.items()}}
    problem = _mismatch(where, found, expected, COMPACT if len(paths) == 1 else "the float16 arrays")
    if problem:
        raise NotACheckpointError(problem)
    return _unflatten({k: v.astype(np.float32) for k, v in stored.items()})


def _npy_header(f) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran order, dtype) from an .npy stream's header (at most 4 KB read)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f, max_header_size=4096)
    return tuple(shape), bool(fortran), np.dtype(dtype)


def _check_zip_directory(path, entries: int):
    """Refuse a zip whose directory lists more records (or bytes, or extra-field bytes) than
    ``entries`` arrays need, before ``zipfile`` parses any of it."""
    try:
        with open(path, "rb") as f:
            check_zip_directory(f, path.stat().st_size, entries, bound=(entries + 64) * (46 + 1024))
    except CheckpointError as e:
        raise NotACheckpointError(f"{escaped(path.parent)}: {COMPACT}: {e} (the config's model has "
                                  f"{entries} arrays)") from None


def _check_orbax_files(step_dir: Path):
    """The JSON files Orbax parses (recursively) for a step, bounded before it parses them."""
    item = step_dir / "default"
    names = [step_dir / "_CHECKPOINT_METADATA", item / "_METADATA", item / "_sharding"]
    if (item / "array_metadatas").is_dir():
        names += sorted((item / "array_metadatas").iterdir())[:64]
    for name in names:
        if name.exists():
            read_json(name, "Orbax metadata")


def _restore_generator(ckpt_dir, step, expected: dict):
    """The generator's variables of ``step`` (default: the latest complete one): the arrays'
    shapes and dtypes from Orbax's metadata are checked against ``expected`` first, then only
    the generator is restored, into exactly those shapes."""
    where = escaped(ckpt_dir)
    mngr = manager(ckpt_dir, create=False)
    try:
        step = mngr.latest_step() if step is None else step
        if step is None:
            raise NotACheckpointError(f"{where}: no complete checkpoint in {CHECKPOINTS}/")
        if step not in mngr.all_steps():
            raise NotACheckpointError(f"{where}: no checkpoint of step {step} in {CHECKPOINTS}/ "
                                      f"(steps: {', '.join(map(str, mngr.all_steps())) or 'none'})")
        step_dir = Path(ckpt_dir).absolute() / CHECKPOINTS / str(step)
    finally:
        mngr.close()
    _check_orbax_files(step_dir)
    try:
        tree = ocp.StandardCheckpointer().metadata(step_dir / "default").item_metadata.tree
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        raise NotACheckpointError(f"{where}: unreadable checkpoint {step} ({first_line(e)})") from None
    if not isinstance(tree, dict) or not isinstance(tree.get("generator"), dict):
        raise NotACheckpointError(f"{where}: checkpoint {step} holds no generator")
    found = {_flat_name(path): (getattr(leaf, "shape", ()), getattr(leaf, "dtype", "V"))
             for path, leaf in _leaves_with_path(tree["generator"])}
    problem = _mismatch(where, found, expected, f"checkpoint {step}")
    if problem:
        raise NotACheckpointError(problem)
    device = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    target = _unflatten({k: jax.ShapeDtypeStruct(v.shape, np.float32, sharding=device)
                         for k, v in expected.items()})
    args = jax.tree.map(lambda a: ocp.ArrayRestoreArgs(sharding=device, global_shape=a.shape,
                                                       dtype=np.float32, strict=True), target)
    try:
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
            state = ckptr.restore(step_dir / "default", args=ocp.args.PyTreeRestore(
                {"generator": target}, restore_args={"generator": args}, partial_restore=True))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise NotACheckpointError(f"{where}: cannot restore step {step} ({first_line(e)})") from None
    return int(step), state["generator"]


def load_generator(ckpt_dir, step: int | None = None, **overrides):
    """Load ``(model, variables, config)`` from a checkpoint directory, treating it as a
    stranger's: the config is checked by the rules of ``--config``, the model it describes is
    bounded in bytes, and every array's shape and dtype is checked against that model before
    it is read. Every bad folder is one :class:`NotACheckpointError` line.

    ``overrides`` replace model keyword arguments (e.g. ``dtype=jnp.bfloat16``).
    """
    config = read_config(ckpt_dir)
    model = ShiftNetGenerator(**{**config.get("model", {}), **overrides})
    at_least = encoder_bytes(model.ngf, model.num_downs, 3)
    if at_least > MAX_MODEL_BYTES:  # refused before tracing the model (seconds for a deep one)
        raise NotACheckpointError(f"{escaped(ckpt_dir)}: the model its config describes has over "
                                  f"{at_least / 2**30:.3g} GiB of variables; the limit is "
                                  f"{MAX_MODEL_BYTES / 2**30:.3g} GiB")
    expected = expected_variables(model)
    _check_size(escaped(ckpt_dir), expected)
    compact = [] if (Path(ckpt_dir) / CHECKPOINTS).is_dir() else compact_files(ckpt_dir)
    if compact:
        try:
            variables = _load_compact(compact, expected)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as e:
            if isinstance(e, NotACheckpointError):
                raise
            raise NotACheckpointError(f"{escaped(ckpt_dir)}: unreadable {COMPACT} ({first_line(e)})") from None
        config.setdefault("step", None)
        return model, variables, config
    if not (Path(ckpt_dir) / CHECKPOINTS).is_dir():
        raise NotACheckpointError(f"{escaped(ckpt_dir)}: has {CONFIG_FILE} but no {CHECKPOINTS}/ folder")
    step, variables = _restore_generator(ckpt_dir, step, expected)
    config["step"] = step
    return model, variables, config
