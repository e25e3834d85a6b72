"""Read PyTorch ``torch.save(state_dict)`` checkpoints without torch and without running pickled code.

Two on-disk formats are understood:

* zip (PyTorch >= 1.6): ``<folder>/data.pkl`` is the object pickle; its persistent
  ids ``('storage', storage_type, key, location, numel)`` name raw storages kept
  in ``<folder>/data/<key>``; ``<folder>/byteorder`` says ``little`` or ``big``.
* legacy (before 1.6): consecutive pickles -- magic number, protocol version,
  sys info, the object pickle, the list of storage keys -- then, per key, an
  8-byte little-endian element count followed by the raw bytes, always
  little-endian whatever the sys info says (as torch reads them).

The pickles run on :mod:`shiftnet_jax.torchfile.pickle_vm`'s restricted machine: the few
globals a state dict uses map onto local stand-ins, everything else is refused,
so nothing named in the file is ever imported or called. Every size is checked
against the limits below before the work it implies is done; the file is
validated before any tensor data is read. Files torch reads, we read with
torch's values; what torch refuses, we refuse; a few things torch reads
inconsistently (duplicate zip records) or unsafely we also refuse.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from shiftnet_jax.errors import one_line
from shiftnet_jax.torchfile import archive
from shiftnet_jax.torchfile.archive import MAX_FILE_BYTES
from shiftnet_jax.torchfile.limits import (
    CheckpointError,
    CheckpointLimitError,
    Limits,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    limit,
    quote,
)
from shiftnet_jax.torchfile.pickle_vm import Budget, Reducer, describe, load_pickle
from shiftnet_jax.torchfile.tensors import (
    Storage,
    Tensor,
    flatten,
    is_dims,
    make_tensor,
    materialise,
    select,
)

try:  # ml_dtypes ships with jax; without it bfloat16/float8 tensors are unsupported.
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

__all__ = ["CheckpointError", "CheckpointLimitError", "UnsafeCheckpointError",
           "UnsupportedCheckpointError", "read_torch_state_dict", "MAX_FILE_BYTES"]

MAX_OUTPUT_BYTES = 8 << 30    # tensor bytes decoded (storages read, arrays returned), absolute cap
OUTPUT_PER_FILE_BYTE = 4      # ... and by default at most 4 x the file size + 64 MiB
OUTPUT_SLACK = 64 << 20
MAX_ENTRIES = 20_000          # tensors returned (and zip records); Shift-Net has ~70

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _ml(name):
    return np.dtype(getattr(ml_dtypes, name)) if ml_dtypes is not None and hasattr(ml_dtypes, name) else None


# torch dtype name -> numpy dtype (None: torch has it, we cannot represent it).
_DTYPES = {
    "float32": np.dtype(np.float32), "float64": np.dtype(np.float64), "float16": np.dtype(np.float16),
    "bfloat16": _ml("bfloat16"), "int64": np.dtype(np.int64), "int32": np.dtype(np.int32),
    "int16": np.dtype(np.int16), "int8": np.dtype(np.int8), "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_), "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128), "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32), "uint64": np.dtype(np.uint64),
    **{n: _ml(n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                           "float8_e8m0fnu")},
    **dict.fromkeys(["complex32", "float4_e2m1fn_x2", "bits1x8", "bits2x4", "bits4x2", "bits8",
                     "bits16", "quint8", "qint8", "qint32", "quint4x2", "quint2x4"]),
}
# torch.<X>Storage -> torch dtype name (torch.UntypedStorage, raw bytes, is handled apart).
_STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
             "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
             "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
             "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
             "ComplexDoubleStorage": "complex128", "QUInt8Storage": "quint8",
             "QInt8Storage": "qint8", "QInt32Storage": "qint32", "QUInt4x2Storage": "quint4x2",
             "QUInt2x4Storage": "quint2x4"}


class _TypeTag:
    """Stand-in for ``torch.FloatStorage`` & co. and ``torch.float32`` & co."""

    __slots__ = ("name", "dtype_name", "is_storage", "untyped")

    def __init__(self, name, dtype_name, is_storage, untyped=False):
        self.name, self.dtype_name, self.is_storage, self.untyped = name, dtype_name, is_storage, untyped

    def dtype(self) -> np.dtype:
        dt = _DTYPES[self.dtype_name]
        if dt is None:
            raise UnsupportedCheckpointError(f"a tensor of dtype torch.{self.dtype_name}, which "
                                             "numpy cannot represent, is not supported")
        return dt


def _rebuild_v1(storage, offset, size, stride):
    return make_tensor(storage, offset, size, stride)


def _rebuild_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    return make_tensor(storage, offset, size, stride)


def _rebuild_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    if not isinstance(dtype, _TypeTag) or dtype.is_storage:
        raise CheckpointError(f"malformed pickle: tensor dtype is {describe(dtype)}")
    return make_tensor(storage, offset, size, stride, dtype.dtype())


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    if not isinstance(data, Tensor):
        raise CheckpointError(f"malformed pickle: a parameter of {describe(data)}")
    return data  # a Parameter is just its tensor for our purposes


def _ordered_dict(*args):
    if args:
        raise CheckpointError("malformed pickle: OrderedDict called with arguments")
    return {}  # dicts keep insertion order


def _size(dims):
    if not is_dims(dims):
        raise CheckpointError("malformed pickle: torch.Size of non-dimensions")
    return dims


_REDUCERS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch", "Size"): _size,
    ("torch._utils", "_rebuild_tensor"): _rebuild_v1,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


def _find_class(module, name):
    if (module, name) in _REDUCERS:
        return Reducer(name, _REDUCERS[(module, name)])
    if module in ("torch", "torch.storage") and name == "UntypedStorage":
        return _TypeTag(name, "uint8", is_storage=True, untyped=True)
    if module == "torch" and name in _STORAGES:
        return _TypeTag(name, _STORAGES[name], is_storage=True)
    if module == "torch" and name in _DTYPES:
        return _TypeTag(name, name, is_storage=False)
    raise UnsafeCheckpointError(f"refuses to load: the pickle calls {quote(module + '.' + name, 80)[1:-1]}, "
                                "which a state dict never needs")


def _no_pid(pid):
    raise CheckpointError("malformed legacy header: it names a storage")


def _check_pid(pid, n):
    """('storage', type tag, key, location, numel[, view]) -> (tag, key, numel)."""
    if type(pid) is tuple and len(pid) >= 1 and pid[0] == "module":
        raise CheckpointError("holds a whole pickled model (torch.save(model)), not a state dict")
    if not (type(pid) is tuple and len(pid) == n and pid[0] == "storage"):
        raise CheckpointError(f"malformed pickle: unexpected persistent id ({describe(pid)})")
    tag, key, location, numel = pid[1:5]
    if not isinstance(tag, _TypeTag) or not tag.is_storage:
        raise CheckpointError(f"malformed pickle: storage of type {describe(tag)}")
    if type(key) is not str or type(location) is not str or type(numel) is not int or numel < 0:
        raise CheckpointError("malformed pickle: a storage id with a bad key, location or size")
    return tag, key, numel

def _read_zip(f, size, lim: Limits, max_entries):
    zf = archive.ZipArchive(f, size, max_entries)
    order = "<"  # archives without a byteorder record are little-endian (torch's default)
    if zf.has("byteorder"):
        order = {b"little": "<", b"big": ">"}.get(zf.read("byteorder", 16, "16 bytes"))
        if order is None:
            raise CheckpointError("unknown byteorder record (neither 'little' nor 'big')")
    storages = {}

    def persistent_load(pid):
        tag, key, numel = _check_pid(pid, 5)
        if key not in storages:  # the first declaration of a key wins, as in torch
            dtype = np.dtype(np.uint8) if tag.untyped else tag.dtype()
            s = storages[key] = Storage(key, dtype, tag.untyped, numel * dtype.itemsize, order)
            s.where = f"data/{key}"
            if not zf.has(s.where):
                raise CheckpointError(f"zip archive lacks the record for storage {quote(key)}")
            if zf.size_of(s.where) != s.nbytes:  # checked before anything is read
                raise CheckpointError(f"zip record for storage {quote(key)} holds {zf.size_of(s.where)} "
                                      f"bytes, but the pickle declares {s.nbytes}")
        return storages[key]

    pickle = zf.read("data.pkl", lim.max_pickle_bytes, "max_pickle_bytes")
    obj = load_pickle(io.BytesIO(pickle), _find_class, persistent_load, lim)
    return obj, lambda root, out: zf.read_into(root.where, out)


def _read_legacy(f, size, lim: Limits):
    head = f.read(min(size, lim.max_pickle_bytes))
    stream = io.BytesIO(head)
    budget = Budget()  # the five pickles share the limits on opcodes and objects

    def header(what):
        return load_pickle(stream, _no_class, _no_pid, lim, budget)

    try:
        magic = header("magic number")
    except CheckpointError:
        magic = None
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (neither a zip archive nor a legacy magic number)")
    storages = {}  # root and view keys, as torch keeps them

    def persistent_load(pid):
        tag, key, numel = _check_pid(pid, 6)
        if tag.untyped:  # torch >= 2.1 writes these for uint16 & co., and cannot read them back
            raise UnsupportedCheckpointError("a legacy-format file with an untyped storage (torch "
                                             "cannot load it either); re-save it in the zip format")
        if key not in storages:
            dtype = tag.dtype()
            storages[key] = Storage(key, dtype, False, numel * dtype.itemsize)
        root, view = storages[key], pid[5]
        if view is None:
            return root
        if not (type(view) is tuple and len(view) == 3 and type(view[0]) is str and is_dims(view[1:])):
            raise CheckpointError("malformed pickle: a bad storage view")
        view_key, offset, n = view
        if view_key not in storages:
            item = root.dtype.itemsize
            if root.root is not root or (offset + n) * item > root.nbytes:
                raise CheckpointError(f"malformed pickle: storage view {quote(view_key)} lies outside its storage")
            storages[view_key] = Storage(view_key, root.dtype, False, n * item, root=root, start=offset * item)
        return storages[view_key]

    try:
        if header("protocol version") != _LEGACY_PROTOCOL:
            raise CheckpointError("unsupported legacy protocol version")
        header("sys info")  # torch ignores it: legacy storages are little-endian regardless
        obj = load_pickle(stream, _find_class, persistent_load, lim, budget)
        keys = header("storage keys")
    except CheckpointError as e:
        if len(head) < size and str(e).startswith("truncated"):
            raise limit("the pickles' size", f">{len(head)}", "max_pickle_bytes", lim.max_pickle_bytes) from None
        raise
    if type(keys) is not list or not all(type(k) is str for k in keys):
        raise CheckpointError("malformed legacy checkpoint: no list of storage keys")
    pos = stream.tell()
    for key in keys:  # each: int64 element count, then the bytes; a repeated key: last wins (torch)
        s = storages.get(key)
        if s is None or s.root is not s:
            raise CheckpointError(f"malformed legacy checkpoint: storage {quote(key)} is listed but never used")
        f.seek(pos)
        count = f.read(8)
        if len(count) < 8:
            raise CheckpointError("truncated: the storage data ends early")
        numel = int.from_bytes(count, "little", signed=True)
        if numel * s.dtype.itemsize != s.nbytes:  # torch: "storage has wrong byte size"
            raise CheckpointError(f"storage {quote(key)} holds {numel} elements in the file, but the "
                                  f"pickle declares {s.nbytes // s.dtype.itemsize}")
        s.where, pos = pos + 8, pos + 8 + s.nbytes
        if pos > size:
            raise CheckpointError("truncated: the storage data ends early")

    def source(root, out):
        archive.read_exactly(f, root.where, out, f"storage {quote(root.key)}")

    return obj, source


def _no_class(module, name):
    raise CheckpointError("malformed legacy header: it names a global")


def file_name(path) -> str:
    text = os.fsdecode(path)
    name = Path(text).name or text
    name = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in name[:200])
    return name if len(name) <= 80 else name[:38] + "…" + name[-38:]


def read_torch_state_dict(path, *, max_file_bytes: int = MAX_FILE_BYTES,
                          max_output_bytes: int | None = None, max_entries: int = MAX_ENTRIES,
                          **pickle_limits) -> dict[str, np.ndarray]:
    """Read a ``torch.save(state_dict)`` file (zip or legacy format) into ``{name: numpy array}``.

    Arrays are C-contiguous copies in native byte order, bit-exact. Entries that are
    the same view of the same storage (tied weights) are one array. Nested dicts
    are flattened with '.', a single wrapped state dict (``'state_dict'``,
    ``'model'``, ``'net_G'``, ...) is unwrapped, and non-tensor entries are dropped.

    Limits (checked before the work they bound): ``max_file_bytes``;
    ``max_output_bytes`` of tensor data decoded (default: 4 x the file size +
    64 MiB, at most 8 GiB); ``max_entries`` tensors; and the pickle's
    ``max_pickle_bytes``, ``max_depth``, ``max_memo``, ``max_objects``,
    ``max_opcodes`` (see :mod:`shiftnet_jax.torchfile.pickle_vm`).

    Raises :class:`UnsafeCheckpointError` when the pickle asks for anything
    outside the allow-list, :class:`UnsupportedCheckpointError` for what numpy
    cannot represent, :class:`CheckpointLimitError` when a limit is hit and
    :class:`CheckpointError` for every other problem; the message is one
    printable line of at most 300 characters, starting with the file name.
    """
    name = file_name(path)
    lim = Limits(**pickle_limits)
    try:
        with archive.open_regular_file(path, max_file_bytes) as (f, size):
            if max_output_bytes is None:
                max_output_bytes = min(MAX_OUTPUT_BYTES, OUTPUT_PER_FILE_BYTE * size + OUTPUT_SLACK)
            magic = f.read(4)
            f.seek(0)
            if not magic:
                raise CheckpointError("the file is empty")
            if magic == b"PK\x03\x04":
                obj, source = _read_zip(f, size, lim, max_entries)
            elif magic[:1] == b"\x80":
                obj, source = _read_legacy(f, size, lim)
            elif f.read(262)[257:262] == b"ustar":
                raise UnsupportedCheckpointError("the tar checkpoint format (PyTorch < 0.1.10) is not supported")
            else:
                raise CheckpointError("not a PyTorch checkpoint (neither a zip archive nor a pickle)")
            return materialise(flatten(select(obj), max_entries), source, max_output_bytes)
    except CheckpointError as e:
        raise type(e)(one_line(f"{name}: {e}")) from None
    except OSError as e:
        raise CheckpointError(one_line(f"{name}: cannot read the file: {e.strerror or type(e).__name__}")) from None
    except MemoryError:
        raise CheckpointLimitError(one_line(f"{name}: out of memory while reading it; the limits "
                                            "are too generous for this machine")) from None
    except Exception as e:  # a case we did not foresee: still one clear line, never a traceback
        raise CheckpointError(one_line(f"{name}: not a readable PyTorch checkpoint "
                                       f"({type(e).__name__}: {str(e)[:100]})")) from e
