"""The tensors of a checkpoint, from stand-ins to numpy arrays.

:mod:`shiftnet_jax.torchfile.reader` turns each storage and tensor of the pickle into
a :class:`Storage` / :class:`Tensor` stand-in, validated when it is created
(inside its storage, no self-overlap). Then the state dict is picked out and
flattened, visiting each dict once, and each distinct view is copied out of its
storage once, after the total is checked against ``max_output_bytes``.
"""
from __future__ import annotations

import math

import numpy as np

from shiftnet_jax.torchfile import archive
from shiftnet_jax.torchfile.limits import (
    CheckpointError,
    UnsupportedCheckpointError,
    limit,
    quote,
)
from shiftnet_jax.torchfile.pickle_vm import describe

MAX_KEY_CHARS = 1024          # characters of one flattened key
MAX_DIMS = 64
# Keys under which training scripts nest the weights ({'state_dict': sd, 'epoch': 3}).
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net_G", "netG", "generator")


class Storage:
    """A storage: ``nbytes`` raw bytes of elements ``dtype``, or (legacy) a slice of a root storage."""

    __slots__ = ("key", "dtype", "untyped", "nbytes", "order", "root", "start", "where")

    def __init__(self, key, dtype, untyped, nbytes, order="<", root=None, start=0):
        self.key, self.dtype, self.untyped, self.nbytes, self.order = key, dtype, untyped, nbytes, order
        self.root, self.start = root or self, start  # start: byte offset in the root
        self.where = None  # zip: record name; legacy: file offset of the data


class Tensor:
    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage, offset, size, stride, dtype):
        self.storage, self.offset, self.size, self.stride, self.dtype = storage, offset, size, stride, dtype


def is_dims(x):
    return type(x) is tuple and len(x) <= MAX_DIMS and all(type(v) is int and v >= 0 for v in x)


def make_tensor(storage, offset, size, stride, dtype=None):
    """A validated :class:`Tensor`: inside its storage, not overlapping itself."""
    if not isinstance(storage, Storage):
        raise CheckpointError(f"malformed pickle: a tensor is rebuilt from {describe(storage)}")
    if dtype is None:  # v1/v2: the storage's own element type
        if storage.untyped:
            raise CheckpointError("malformed pickle: a typed tensor on an untyped storage")
        dtype = storage.dtype
    if not (type(offset) is int and offset >= 0 and is_dims(size) and is_dims(stride)
            and len(size) == len(stride)):
        raise CheckpointError("malformed pickle: a tensor has an invalid offset, size or stride")
    if storage.untyped and dtype.itemsize > 1 and storage.order == ">":
        # torch does not swap untyped storages: its values would be byte-swapped
        raise UnsupportedCheckpointError(f"a {dtype} tensor on an untyped storage in a "
                                         "big-endian archive is not supported")
    if math.prod(size):
        extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if extent > storage.nbytes // dtype.itemsize:
            raise CheckpointError("malformed checkpoint: a tensor reaches outside its storage")
        # Non-overlapping iff, dims sorted by stride, each stride passes the extent of
        # the smaller ones. Overlap (stride 0, expand()) would multiply the bytes out.
        reach = 0
        for s, n in sorted((s, n) for n, s in zip(size, stride) if n > 1):
            if s <= reach:
                raise CheckpointError("a tensor overlaps itself (stride 0 or overlapping strides, "
                                      "as from expand()); save it .contiguous()")
            reach += (n - 1) * s
    return Tensor(storage, offset, size, stride, dtype)

def select(obj):
    """Unwrap ``{'state_dict': sd, 'epoch': 3}``-style containers around a single state dict."""
    if type(obj) is not dict:
        raise CheckpointError(f"the pickle holds {describe(obj)}, not a state dict")
    if any(isinstance(v, Tensor) for v in obj.values()):
        return obj
    holds = {}  # id -> holds a tensor: each dict is searched once, however many keys share it

    def holds_tensor(v) -> bool:
        if id(v) not in holds:
            holds[id(v)] = any(isinstance(x, Tensor) for x in v.values())
        return holds[id(v)]
    nested = [k for k, v in obj.items() if type(v) is dict and holds_tensor(v)]
    if len(nested) == 1:
        return obj[nested[0]]
    for key in _WRAPPER_KEYS:
        if key in nested:
            return obj[key]
    return obj


def flatten(obj, max_entries):
    """{dotted name: tensor}; each dict is visited once, every name must be new."""
    out, seen, todo = {}, set(), [("", obj)]
    while todo:
        prefix, d = todo.pop()
        if id(d) in seen:
            raise CheckpointError(f"the dict under {quote(prefix[:-1]) if prefix else 'the top'} "
                                  "appears twice (shared or cyclic dicts are not a state dict)")
        seen.add(id(d))
        nested = []
        for k, v in d.items():
            name = f"{prefix}{k}"
            if len(name) > MAX_KEY_CHARS:
                raise limit(f"key {quote(name, 40)} length", len(name), "MAX_KEY_CHARS", MAX_KEY_CHARS)
            if isinstance(v, Tensor):
                if name in out:
                    raise CheckpointError(f"two tensors are named {quote(name)} once nested dicts "
                                          "are flattened with '.'")
                out[name] = v
                if len(out) > max_entries:
                    raise limit("tensors", len(out), "max_entries", max_entries)
            elif type(v) is dict:
                nested.append((name + ".", v))
            # anything else (ints, strings, lists, _metadata) is not a tensor: dropped
        todo.extend(reversed(nested))
    return out


def materialise(tensors, source, max_output_bytes):
    """numpy copies of the tensors; the same view of the same storage is one array."""
    views, by_root = {}, {}
    for name, t in tensors.items():
        vk = (id(t.storage), t.offset, t.size, t.stride, t.dtype.str, t.dtype.name)
        if vk not in views:
            views[vk] = (t, [])
            by_root.setdefault(id(t.storage.root), []).append(vk)
        views[vk][1].append(name)
    decoded = sum(math.prod(t.size) * t.dtype.itemsize for t, _ in views.values())
    read = sum(views[vks[0]][0].storage.root.nbytes for vks in by_root.values())
    for what, n in (("tensor bytes", decoded), ("storage bytes to read", read)):
        if n > max_output_bytes:
            raise limit(what, n, "max_output_bytes", max_output_bytes)
    arrays = {}
    for vks in by_root.values():
        root = views[vks[0]][0].storage.root
        if root.where is None:
            raise CheckpointError(f"storage {quote(root.key)} used by a tensor has no data in the file")
        for i, arr in _storage_arrays(root, [views[vk][0] for vk in vks], source).items():
            arrays[vks[i]] = arr
    return {name: arrays[vk] for vk, (_, names) in views.items() for name in names}


def _swap_unit(dtype):
    return dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize


def _storage_arrays(root, views, source):
    """Read one root storage and return {index in views: array}."""
    t = views[0]
    nbytes = math.prod(t.size) * t.dtype.itemsize
    c_strides = [math.prod(t.size[i + 1:]) for i in range(len(t.size))]
    if (len(views) == 1 and t.storage is root and t.offset == 0 and nbytes == root.nbytes
            and all(s == c or n == 1 for s, c, n in zip(t.stride, c_strides, t.size))):
        # The common case: one tensor fills its storage in C order -> read straight into it.
        out = np.empty(t.size, t.dtype)
        raw = out.reshape(-1).view(np.uint8)
        source(root, raw)
        if root.order == ">":
            archive.swap_bytes(raw, _swap_unit(root.dtype))
        return {0: out}
    raw = np.empty(root.nbytes, np.uint8)
    source(root, raw)
    if root.order == ">":  # as torch: swap by the storage's element type
        archive.swap_bytes(raw, _swap_unit(root.dtype))
    result = {}
    for i, t in enumerate(views):
        if not math.prod(t.size):
            result[i] = np.zeros(t.size, t.dtype)
            continue
        base = raw[t.storage.start:t.storage.start + t.storage.nbytes]
        flat = base[: base.size // t.dtype.itemsize * t.dtype.itemsize].view(t.dtype)
        view = np.lib.stride_tricks.as_strided(
            flat[t.offset:], shape=t.size, strides=[s * t.dtype.itemsize for s in t.stride],
            writeable=False)
        result[i] = np.array(view, order="C", copy=True)
    return result
