"""Read PyTorch ``torch.save(state_dict)`` checkpoints without torch and without running pickled code.

Two on-disk formats are understood:

* zip (PyTorch >= 1.6): ``<name>/data.pkl`` is the object pickle; its persistent
  ids ``('storage', storage_type, key, location, numel)`` name raw storages kept
  in ``<name>/data/<key>``; ``<name>/byteorder`` says ``little`` or ``big``.
* legacy (before 1.6): consecutive pickles -- magic number, protocol version,
  sys info, the object pickle, the list of storage keys -- then, per key, an
  8-byte little-endian element count followed by the raw bytes.

The object pickle goes through an unpickler whose ``find_class`` maps the few
globals a state dict uses onto local stand-ins and refuses everything else, so
nothing named in the file is ever imported or called.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

try:  # ml_dtypes ships with jax; without it bfloat16 storages are refused.
    import ml_dtypes

    _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    _BFLOAT16 = None

__all__ = ["CheckpointError", "UnsafeCheckpointError", "read_torch_state_dict"]


class CheckpointError(ValueError):
    """Any problem reading a checkpoint; str(e) is one clear line naming the file and the problem."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle asks for a global/callable outside the allow-list."""


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_INT = {"Long": np.int64, "Int": np.int32, "Short": np.int16, "Char": np.int8, "Byte": np.uint8}
# torch.<X>Storage -> numpy dtype; torch.UntypedStorage is raw bytes.
_STORAGE_DTYPES = {f"{k}Storage": np.dtype(v) for k, v in _INT.items()}
_STORAGE_DTYPES.update(FloatStorage=np.dtype(np.float32), DoubleStorage=np.dtype(np.float64),
                       HalfStorage=np.dtype(np.float16), BoolStorage=np.dtype(np.bool_),
                       BFloat16Storage=_BFLOAT16, UntypedStorage=np.dtype(np.uint8))
# torch.<dtype> globals (newer formats, _rebuild_tensor_v3) share numpy's names: float32, bool...
_TORCH_DTYPES = {d.name: d for d in _STORAGE_DTYPES.values() if d is not None}
_TORCH_DTYPES.setdefault("bfloat16", None)
# Keys under which training scripts nest the weights ({'state_dict': sd, 'epoch': 3}).
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net_G", "netG", "generator")


class _Inert:
    """Base of every stand-in: refuses the pickle BUILD opcode, so a file cannot mutate them."""

    __slots__ = ()

    def __setstate__(self, state):
        raise CheckpointError("malformed pickle: it tries to set the state of a storage or tensor")


class _TypeTag(_Inert):
    """Stand-in for ``torch.FloatStorage`` & co. and ``torch.float32`` & co."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


class _Storage(_Inert):
    """One storage: a flat array in file byte order, or (legacy) a slice of another storage."""

    __slots__ = ("dtype", "order", "data", "parent", "start", "size")

    def __init__(self, dtype, order, data=None, parent=None, start=0, size=0):
        self.dtype, self.order = dtype.newbyteorder(order), order  # dtype in file byte order
        self.data, self.parent, self.start, self.size = data, parent, start, size

    def array(self):
        if self.parent is not None:
            return self.parent.array()[self.start:self.start + self.size]
        if self.data is None:
            raise CheckpointError("a storage used by a tensor has no data in the file")
        return self.data


class _Tensor(_Inert):
    """A tensor to build once every storage is known (legacy storages come after the pickle)."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage, offset, size, stride, dtype=None):
        if not isinstance(storage, _Storage):
            raise CheckpointError("malformed pickle: a tensor is rebuilt from a non-storage")
        self.storage, self.offset, self.size, self.stride, self.dtype = storage, offset, size, stride, dtype


def _rebuild_tensor(storage, offset, size, stride, *_ignored):  # requires_grad, hooks, metadata
    return _Tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    if not isinstance(dtype, _TypeTag) or dtype.dtype is None:
        raise CheckpointError(f"unsupported tensor dtype {getattr(dtype, 'name', dtype)!r:.40}")
    return _Tensor(storage, offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return data  # a Parameter is just its tensor for our purposes


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch", "Size"): tuple,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and hands storage ids to ``load_storage``."""

    def __init__(self, file, load_storage=None):
        super().__init__(file, fix_imports=False, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _TypeTag(name, _STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _TypeTag(name, _TORCH_DTYPES[name])
        raise UnsafeCheckpointError(f"refuses to load: the pickle calls {module}.{name}, "
                                    "which a state dict never needs")

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and pid[:1] == ("module",):
            raise CheckpointError("holds a whole pickled model (torch.save(model)), not a state dict")
        if not (isinstance(pid, tuple) and pid[:1] == ("storage",)) or self._load_storage is None:
            raise CheckpointError(f"malformed pickle: unexpected persistent id {pid!r:.60}")
        stype = pid[1] if len(pid) > 1 else None
        if not isinstance(stype, _TypeTag) or stype.name not in _STORAGE_DTYPES:
            raise CheckpointError(f"malformed pickle: storage of unknown type {stype!r:.40}")
        if stype.dtype is None:
            raise CheckpointError(f"{stype.name} needs the ml_dtypes package, which is not installed")
        return self._load_storage(stype.dtype, *pid[2:])


def _load_zip(data: bytes):
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, EOFError):
        raise CheckpointError("truncated or corrupt zip archive") from None
    pickles = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pickles:
        raise CheckpointError("zip archive without data.pkl: not a PyTorch checkpoint")
    prefix = min(pickles, key=len)[: -len("data.pkl")]

    def record(name):
        try:
            return zf.read(prefix + name)
        except KeyError:
            raise CheckpointError(f"zip archive lacks the record {prefix + name!r}") from None
        except (zipfile.BadZipFile, EOFError, zlib.error) as e:
            raise CheckpointError(f"truncated or corrupt zip record {prefix + name!r} ({e})") from None

    order = "<"  # archives without a byteorder record predate big-endian support
    if prefix + "byteorder" in zf.namelist():
        order = {b"little": "<", b"big": ">"}.get(record("byteorder").strip())
        if order is None:
            raise CheckpointError("unknown byteorder record")
    storages = {}

    def load_storage(dtype, key, location=None, numel=None, *_):
        if key not in storages:
            raw = record(f"data/{key}")
            dt = dtype.newbyteorder(order)
            if len(raw) % dt.itemsize:
                raise CheckpointError(f"storage {key!r} is {len(raw)} bytes, not a whole number of {dt}")
            storages[key] = _Storage(dtype, order, np.frombuffer(raw, dt))
        return storages[key]

    return _SafeUnpickler(io.BytesIO(record("data.pkl")), load_storage).load()


def _load_legacy(data: bytes):
    f = io.BytesIO(data)
    try:
        magic = _SafeUnpickler(f).load()
    except Exception:
        magic = None
    if type(magic) is not int or magic != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (neither a zip archive nor a legacy magic number)")
    if _SafeUnpickler(f).load() != _LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy protocol version")
    sys_info = _SafeUnpickler(f).load()
    order = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"
    storages = {}  # key -> root storage, filled after the object pickle

    def load_storage(dtype, key, location=None, numel=None, view=None, *_):
        root = storages.setdefault(key, _Storage(dtype, order))
        if view is None:
            return root
        view_key, start, size = view  # legacy storage views: a slice of the root
        return storages.setdefault(view_key, _Storage(dtype, order, parent=root, start=start, size=size))

    obj = _SafeUnpickler(f, load_storage).load()
    keys = _SafeUnpickler(f).load()
    if not isinstance(keys, list):
        raise CheckpointError("malformed legacy checkpoint: no list of storage keys")
    pos = f.tell()
    for key in keys:
        if pos + 8 > len(data):
            raise CheckpointError("truncated: the storage data ends early")
        (numel,) = struct.unpack_from("<q", data, pos)
        root = storages.get(key)
        if root is None or root.parent is not None:
            raise CheckpointError(f"malformed legacy checkpoint: storage {key!r:.40} is never used")
        nbytes = numel * root.dtype.itemsize
        if numel < 0 or pos + 8 + nbytes > len(data):
            raise CheckpointError("truncated: the storage data ends early")
        root.data = np.frombuffer(data, root.dtype, numel, pos + 8)
        pos += 8 + nbytes
    return obj


def _is_dims(x, n=None):
    return (isinstance(x, tuple) and (n is None or len(x) == n)
            and all(type(v) is int and v >= 0 for v in x))


def _to_array(t: _Tensor) -> np.ndarray:
    """Copy a tensor out of its storage, honouring offset, size, stride and byte order."""
    flat = t.storage.array()
    if t.dtype is not None:  # v3: reinterpret the storage bytes as the tensor dtype
        dt = t.dtype.newbyteorder(t.storage.order)
        flat = flat.view(np.uint8)[: flat.nbytes // dt.itemsize * dt.itemsize].view(dt)
    size, stride, offset = t.size, t.stride, t.offset
    if not (_is_dims(size) and _is_dims(stride, len(size)) and type(offset) is int and offset >= 0):
        raise CheckpointError("malformed pickle: a tensor has an invalid offset, size or stride")
    native = flat.dtype.newbyteorder("=")
    if 0 in size:
        return np.zeros(size, native)
    # Bounds check before as_strided, which would otherwise read arbitrary memory.
    if offset + sum((n - 1) * s for n, s in zip(size, stride)) >= flat.size:
        raise CheckpointError("malformed checkpoint: a tensor reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride], writeable=False)
    return np.array(view, dtype=native, order="C", copy=True)


def _select(obj):
    """Unwrap ``{'state_dict': sd, 'epoch': 3}``-style containers around a single state dict."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"the pickle holds a {type(obj).__name__}, not a state dict")
    if any(isinstance(v, _Tensor) for v in obj.values()):
        return obj
    nested = [k for k, v in obj.items()
              if isinstance(v, dict) and any(isinstance(x, _Tensor) for x in v.values())]
    if len(nested) == 1:
        return obj[nested[0]]
    for key in _WRAPPER_KEYS:
        if key in nested:
            return obj[key]
    return obj


def _flatten(obj, prefix, out, depth=0):
    if depth > 32:
        raise CheckpointError("malformed pickle: dicts nested too deeply (or a cycle)")
    for k, v in obj.items():
        if isinstance(v, _Tensor):
            out[f"{prefix}{k}"] = _to_array(v)
        elif isinstance(v, dict):
            _flatten(v, f"{prefix}{k}.", out, depth + 1)
        # anything else (ints, strings, lists, _metadata) is not a tensor: dropped
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())


def read_torch_state_dict(path) -> dict[str, np.ndarray]:
    """Read a ``torch.save(state_dict)`` file (zip or legacy format) into ``{name: numpy array}``.

    Arrays are fresh C-contiguous copies in native byte order.  Nested dicts are
    flattened with '.', a single wrapped state dict (``'state_dict'``, ``'model'``,
    ``'net_G'``, ...) is unwrapped, and non-tensor entries are dropped.  Raises
    :class:`UnsafeCheckpointError` when the pickle asks for anything outside the
    allow-list and :class:`CheckpointError` for every other problem.
    """
    name = Path(os.fsdecode(path)).name or os.fsdecode(path)
    try:
        data = Path(path).read_bytes()
        if not data:
            raise CheckpointError("the file is empty")
        if data[:4] == b"PK\x03\x04":
            obj = _load_zip(data)
        elif data[:1] == b"\x80":
            obj = _load_legacy(data)
        elif data[257:262] == b"ustar":
            raise CheckpointError("the tar checkpoint format (PyTorch < 0.1.10) is not supported")
        else:
            raise CheckpointError("not a PyTorch checkpoint (neither a zip archive nor a pickle)")
        return _flatten(_select(obj), "", {})
    except CheckpointError as e:
        raise type(e)(_one_line(f"{name}: {e}")) from None
    except OSError as e:
        raise CheckpointError(_one_line(f"{name}: cannot read the file: {e.strerror or e}")) from e
    except (pickle.UnpicklingError, EOFError) as e:
        raise CheckpointError(_one_line(f"{name}: truncated or corrupt pickle ({e})")[:300]) from e
    except Exception as e:  # anything else is a malformed file: type errors from odd opcodes...
        detail = f"{type(e).__name__}: {e}"
        raise CheckpointError(_one_line(f"{name}: not a readable PyTorch checkpoint ({detail})")[:300]) from e
