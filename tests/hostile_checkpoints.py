"""Hostile checkpoint files, built from pickle opcodes and raw zip bytes, and a runner for them.

Each case of :data:`CASES` builds one file (a few hundred bytes to a few MB)
that attacked an earlier reader: unbounded work, a crash, silently wrong values,
mutated process state. ``python tests/hostile_checkpoints.py PATH [KWARGS_JSON]``
reads one file with ``read_torch_state_dict`` and prints one JSON line: the
outcome, the one-line message, the seconds taken and the peak resident memory.
``python tests/hostile_checkpoints.py --table`` builds every case and runs each
in its own process (1 GiB address-space limit) to print the table of outcomes.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

from isolated import limit_memory, report, run_child, table_cells

# ---------------------------------------------------------------- pickle opcodes (protocol 2)
PROTO, STOP, MARK, TUPLE, DICT_EMPTY, SETITEMS, REDUCE, BUILD = b"\x80\x02", b".", b"(", b"t", b"}", b"u", b"R", b"b"


def s(text: str) -> bytes:
    b = text.encode("utf-8", "surrogatepass")
    return b"X" + struct.pack("<I", len(b)) + b


def i(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2 ** 31) <= n < 2 ** 31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def g(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def put(n: int) -> bytes:
    return b"r" + struct.pack("<I", n)


def get(n: int) -> bytes:
    return b"j" + struct.pack("<I", n)


def odict(*pairs) -> bytes:
    body = b"".join(k + v for k, v in pairs)
    return g("collections", "OrderedDict") + b")" + REDUCE + (MARK + body + SETITEMS if pairs else b"")


def pid(key: str, numel: int, storage="FloatStorage", module="torch", legacy=False) -> bytes:
    return tup(s("storage"), g(module, storage), s(key), s("cpu"), i(numel),
               *([b"N"] if legacy else [])) + b"Q"


def tensor(key, numel, offset, size, stride, storage="FloatStorage", legacy=False) -> bytes:
    return (g("torch._utils", "_rebuild_tensor_v2")
            + tup(pid(key, numel, storage, legacy=legacy), i(offset), tup(*map(i, size)),
                  tup(*map(i, stride)), b"\x89", odict()) + REDUCE)


def tensor_v3(key, nbytes, size, dtype) -> bytes:
    stride = [1] * len(size)
    for d in range(len(size) - 2, -1, -1):
        stride[d] = stride[d + 1] * size[d + 1]
    return (g("torch._utils", "_rebuild_tensor_v3")
            + tup(pid(key, nbytes, "UntypedStorage", "torch.storage"), i(0), tup(*map(i, size)),
                  tup(*map(i, stride)), b"\x89", odict(), g("torch", dtype)) + REDUCE)


def pickle_of(body: bytes) -> bytes:
    return PROTO + body + STOP


def shared_tuple(levels: int) -> bytes:
    """t0 = (); t_{k+1} = (t_k, t_k): 2**levels leaves, hashing it never ends."""
    out = b")" + put(0) + b"0"
    for k in range(levels):
        out += get(k) + get(k) + b"\x86" + put(k + 1) + b"0"
    return out + get(levels)


# ---------------------------------------------------------------- raw zip archives
def raw_zip(records) -> bytes:
    """records: (name, payload, method, declared_size, crc); payload is already compressed."""
    local, central = bytearray(), bytearray()
    for name, payload, method, declared, crc in records:
        nb = name.encode()
        offset = len(local)
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                             len(payload), declared, len(nb), 0) + nb + payload
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                               len(payload), declared, len(nb), 0, 0, 0, 0, 0, offset) + nb
    n = len(records)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(central), len(local), 0)
    return bytes(local + central + end)


def stored(name, data: bytes):
    return (name, data, 0, len(data), zlib.crc32(data))


def deflated(name, data: bytes):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = c.compress(data) + c.flush()
    return (name, payload, 8, len(data), zlib.crc32(data))


def torch_zip(pkl: bytes, storages=(), folder="archive", byteorder=b"little", extra=()) -> bytes:
    records = [stored(f"{folder}/data.pkl", pkl), stored(f"{folder}/byteorder", byteorder)]
    records += [stored(f"{folder}/data/{k}", v) if isinstance(v, bytes) else v for k, v in storages]
    return raw_zip(records + list(extra) + [stored(f"{folder}/version", b"3\n")])


def legacy_file(pkl: bytes, storages, little_endian=True) -> bytes:
    import pickle
    info = {"protocol_version": 1001, "little_endian": little_endian,
            "type_sizes": {"short": 2, "int": 4, "long": 8}}
    out = [pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, info)]
    out += [pkl, pickle.dumps([k for k, _ in storages], protocol=2)]
    for _, (numel, data) in storages:
        out += [struct.pack("<q", numel), data]
    return b"".join(out)


def floats(*values) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def state(*pairs) -> bytes:
    return pickle_of(odict(*[(s(k), v) for k, v in pairs]))


_STORAGE_NAMES = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
                  "int64": "LongStorage", "int32": "IntStorage", "uint8": "ByteStorage"}


def write_state_dict(path, arrays: dict):
    """A plain torch-style zip checkpoint of ``{name: numpy array}`` (C order, little-endian)."""
    import numpy as np

    pairs, storages = [], []
    for n, (name, arr) in enumerate(arrays.items()):
        arr = np.array(arr, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        stride = [st // arr.itemsize for st in arr.strides] if arr.size else [0] * arr.ndim
        pairs.append((name, tensor(str(n), arr.size, 0, arr.shape, stride,
                                   _STORAGE_NAMES[arr.dtype.name])))
        storages.append((str(n), arr.astype(arr.dtype.newbyteorder("<")).tobytes()))
    Path(path).write_bytes(torch_zip(state(*pairs), storages))


# ---------------------------------------------------------------- the cases
def _bomb(n_bytes: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk, parts = bytes(1 << 20), []
    for _ in range(n_bytes >> 20):
        parts.append(c.compress(chunk))
    return b"".join(parts) + c.flush()


def case_memo_index(d):
    return torch_zip(state(("w", tensor("0", 1, 0, (1,), (1,)) + put(2 ** 31 - 1))), [("0", floats(1))])


def case_stride_zero(d):
    return torch_zip(state(("w", tensor("0", 150, 0, (600_000_000,), (0,)))), [("0", bytes(600))])


def case_tensor_under_many_keys(d):
    n = 1 << 20  # a 4 MB storage referenced under 2000 keys
    first = ("k0", tensor("0", n, 0, (n,), (1,)) + put(0))
    pairs = [first] + [(f"k{j}", get(0)) for j in range(1, 2000)]
    return torch_zip(state(*pairs), [("0", bytes(4 * n))])


def case_overlapping_views(d):
    n = 1 << 20  # 2000 distinct views of one 4 MB storage: 8 GB if each were copied
    pairs = [(f"k{j}", tensor("0", n, j, (n - 2000,), (1,))) for j in range(2000)]
    return torch_zip(state(*pairs), [("0", bytes(4 * n))])


def case_shared_nested_dicts(d):
    body = odict((s("w"), tensor("0", 1, 0, (1,), (1,)))) + put(0)
    for k in range(30):  # d_{k+1} = {'a': d_k, 'b': d_k}: 2**30 flattened entries
        body = body + b"0" + odict((s("a"), get(k)), (s("b"), get(k))) + put(k + 1)
    return torch_zip(pickle_of(body), [("0", floats(1))])


def case_shared_tuple_dict_key(d):
    return torch_zip(pickle_of(DICT_EMPTY + shared_tuple(30) + i(1) + b"s"))


def case_shared_tuple_storage_key(d):
    bad = tup(s("storage"), g("torch", "FloatStorage"), shared_tuple(30), s("cpu"), i(1)) + b"Q"
    body = (g("torch._utils", "_rebuild_tensor_v2")
            + tup(bad, i(0), tup(i(1)), tup(i(1)), b"\x89", odict()) + REDUCE)
    return torch_zip(state(("w", body)), [("0", floats(1))])


def case_persistent_id_repr(d):
    return torch_zip(state(("w", shared_tuple(30) + b"Q")))  # its repr: 4 GB


def case_bzip2_record(d):
    data = bytes(4000)
    import bz2
    rec = ("archive/data/0", bz2.compress(data), 12, len(data), zlib.crc32(data))
    return torch_zip(state(("w", tensor("0", 1000, 0, (1000,), (1,)))), [("0", rec)])


def case_lzma_record(d):
    data = bytes(4000)
    rec = ("archive/data/0", b"\x09\x14\x05\x00" + bytes(16), 14, len(data), zlib.crc32(data))
    return torch_zip(state(("w", tensor("0", 1000, 0, (1000,), (1,)))), [("0", rec)])


def case_deflate_declared_huge(d):
    numel = (2 ** 32 - 4) // 4  # the record says 4 GB and so does the pickle
    rec = ("archive/data/0", _bomb(1 << 20), 8, numel * 4, 0)
    return torch_zip(state(("w", tensor("0", numel, 0, (numel,), (1,)))), [("0", rec)])


def case_deflate_lies(d):
    # declares 4 KB, inflates to 64 MB
    rec = ("archive/data/0", _bomb(64 << 20), 8, 4096, zlib.crc32(bytes(4096)))
    return torch_zip(state(("w", tensor("0", 1024, 0, (1024,), (1,)))), [("0", rec)])


def case_deep_tuple(d):
    return torch_zip(pickle_of(b")" + b"\x85" * 300_000))


def case_deep_marks(d):
    return torch_zip(pickle_of(MARK * 1_000_000))


def case_huge_int(d):
    return torch_zip(pickle_of(b"\x8b" + struct.pack("<I", 1 << 20) + b"\x01" * (1 << 20)))


def case_cyclic_dict(d):
    return torch_zip(pickle_of(DICT_EMPTY + put(0) + s("self") + get(0) + b"s"))


def case_big_endian_legacy_header(d):
    pkl = state(("w", tensor("0", 2, 0, (2,), (1,), legacy=True)))
    return legacy_file(pkl, [("0", (2, floats(1.5, -2.0)))], little_endian=False)


def case_duplicate_record(d):
    pkl = state(("w", tensor("0", 2, 0, (2,), (1,))))
    return torch_zip(pkl, [("0", floats(1, 2)), ("0", floats(9, 9))])


def case_two_folders(d):
    pkl = state(("w", tensor("0", 2, 0, (2,), (1,))))
    return torch_zip(pkl, [("0", floats(1, 2))], extra=[stored("other/data.pkl", pkl)])


def case_flattened_key_collision(d):
    nested = odict((s("b"), tensor("1", 1, 0, (1,), (1,))))
    return torch_zip(state(("a.b", tensor("0", 1, 0, (1,), (1,))), ("a", nested)),
                     [("0", floats(1)), ("1", floats(2))])


def case_build_on_function(d):
    # BUILD on an allow-listed function: would set its __defaults__ for the whole process
    evil = g("torch._utils", "_rebuild_tensor_v2") + odict() + BUILD + b"0"
    return torch_zip(state(("w", evil + tensor("0", 1, 0, (1,), (1,)))), [("0", floats(1))])


def case_uint16_untyped(d):
    return torch_zip(state(("w", tensor_v3("0", 6, (3,), "uint16"))), [("0", struct.pack("<3H", 1, 2, 65535))])


def case_complex32_untyped(d):
    return torch_zip(state(("w", tensor_v3("0", 4, (1,), "complex32"))), [("0", bytes(4))])


def case_long_escape_key(d):
    key = "\x1b[2J\x1b[31mred\nsecond line\r\x07" + "k" * 1_000_000
    nested = odict((s("b"), tensor("1", 1, 0, (1,), (1,))))
    return torch_zip(state((key + ".b", tensor("0", 1, 0, (1,), (1,))), (key, nested)),
                     [("0", floats(1)), ("1", floats(2))])


def case_escape_key_collision(d):
    key = "\x1b[2J\x1b[31mred\nsecond line\r\x07\u202e" + "k" * 500
    nested = odict((s("b"), tensor("1", 1, 0, (1,), (1,))))
    return torch_zip(state((key + ".b", tensor("0", 1, 0, (1,), (1,))), (key, nested)),
                     [("0", floats(1)), ("1", floats(2))])


def case_many_objects(d):
    return torch_zip(pickle_of(b"]" + MARK + b"N" * 600_000 + b"e"))


def case_many_opcodes(d):
    return torch_zip(pickle_of(b"N" + b"(0" * 600_000))


def case_many_zip_records(d):
    recs = [stored(f"archive/x{j}", b"") for j in range(20_000)]
    return torch_zip(state(), extra=recs)


def case_int_keys_colliding(d):
    # 40,000 integer keys that all hash to 0: a dict of them takes quadratic time to build
    # (20,000: 3 s; the 240,000: a hang).
    body = b"}" + MARK + b"".join(i(k * (2 ** 61 - 1)) + b"N" for k in range(1, 40_001)) + SETITEMS
    return torch_zip(pickle_of(body))


def case_int_keys_many(d):
    body = b"}" + MARK + b"".join(i(k) + b"N" for k in range(150_000)) + SETITEMS
    return torch_zip(pickle_of(body))


def case_shared_dict_many_keys(d):
    # One 30,000-entry dict without tensors, shared (memo) under 30,000 keys of the top dict:
    # a search for the dict that holds the tensors walked it once per key (9e8 steps: minutes).
    inner = b"N" + put(1) + b"0" + b"}" + put(0) + MARK + \
        b"".join(s(f"k{k}") + get(1) for k in range(30_000)) + SETITEMS + b"0"
    top = b"}" + MARK + b"".join(s(f"t{k}") + get(0) for k in range(30_000)) + SETITEMS
    return torch_zip(pickle_of(inner + top))


def case_legacy_opcodes_over_pickles(d):
    # Each of the legacy format's pickles within max_opcodes, together over it.
    return _legacy_busy(b"N" + b"(0" * 150_000)


def _legacy_busy(busy: bytes) -> bytes:
    import pickle
    info = pickle_of(busy + b"0" + b"}")  # sys info: a dict, after 300,000 opcodes of busywork
    out = [pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001)]
    return b"".join(out + [info, pickle_of(busy + b"0" + odict()), pickle.dumps([], protocol=2)])


def case_zip_extra_fields(d):
    # 74 records with 64 KB extra fields of empty sub-records: zipfile decodes them quadratically.
    extra = b"\xfe\xca\x00\x00" * 16_383
    local, central = bytearray(), bytearray()
    records = [stored("archive/data.pkl", state()), stored("archive/version", b"3\n")]
    records += [stored(f"archive/x{k}", b"") for k in range(72)]
    for name, payload, method, declared, crc in records:
        nb = name.encode()
        offset = len(local)
        local += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                             len(payload), declared, len(nb), 0) + nb + payload
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                               len(payload), declared, len(nb), len(extra), 0, 0, 0, 0, offset) + nb + extra
    n = len(records)
    return bytes(local + central + struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, n, n, len(central), len(local), 0))


def case_huge_sparse_file(d):
    return None  # made by truncate(): see build()


CASES = {  # name -> (expected outcome, substring of the message or None)
    "memo_index": ("CheckpointLimitError", "memo index (2147483647) exceeds max_memo"),
    "stride_zero": ("CheckpointError", "overlaps itself"),
    "tensor_under_many_keys": ("ok", None),
    "overlapping_views": ("CheckpointLimitError", "exceeds max_output_bytes"),
    "shared_nested_dicts": ("CheckpointError", "appears twice"),
    "shared_tuple_dict_key": ("CheckpointError", "a dict key is a tuple of 2"),
    "shared_tuple_storage_key": ("CheckpointError", "a storage id with a bad key"),
    "persistent_id_repr": ("CheckpointError", "unexpected persistent id (a tuple of 2)"),
    "bzip2_record": ("UnsupportedCheckpointError", "compression method 12"),
    "lzma_record": ("UnsupportedCheckpointError", "compression method 14"),
    "deflate_declared_huge": ("CheckpointLimitError", "(4294967292) exceeds max_output_bytes"),
    "deflate_lies": ("CheckpointError", "inflates past its declared 4096 bytes"),
    "deep_tuple": ("CheckpointLimitError", "containers nested (33) exceeds max_depth=32"),
    "deep_marks": ("CheckpointLimitError", "MARKs nested (33) exceeds max_depth=32"),
    "huge_int": ("CheckpointLimitError", "MAX_INT_BITS"),
    "cyclic_dict": ("CheckpointError", "changed after it was used"),
    "big_endian_legacy_header": ("ok", None),
    "duplicate_record": ("CheckpointError", "appears twice"),
    "two_folders": ("CheckpointError", "several folders"),
    "flattened_key_collision": ("CheckpointError", "two tensors are named 'a.b'"),
    "build_on_function": ("CheckpointError", "sets the state of the function _rebuild_tensor_v2"),
    "uint16_untyped": ("ok", None),
    "complex32_untyped": ("UnsupportedCheckpointError", "torch.complex32"),
    "long_escape_key": ("CheckpointLimitError", "length (1000028) exceeds MAX_KEY_CHARS=1024"),
    "escape_key_collision": ("CheckpointError", "two tensors are named '\\x1b[2J\\x1b[31mred\\nsecond"),
    "many_objects": ("CheckpointLimitError", "objects built"),
    "many_opcodes": ("CheckpointLimitError", ") exceeds max_opcodes="),
    "many_zip_records": ("CheckpointLimitError", "zip records (20003) exceeds max_entries (+64)=1064"),
    "int_keys_colliding": ("CheckpointError", "a dict key is the integer"),
    "int_keys_many": ("CheckpointLimitError", "integer dict keys (100001) exceeds MAX_INT_KEYS=100000"),
    "shared_dict_many_keys": ("CheckpointError", "appears twice"),
    "legacy_opcodes_over_pickles": ("CheckpointLimitError", ") exceeds max_opcodes=400000"),
    "zip_extra_fields": ("CheckpointLimitError", "extra field bytes (65532) exceeds MAX_ZIP_EXTRA=1024"),
    "huge_sparse_file": ("CheckpointLimitError", "file size (3221225472) exceeds max_file_bytes"),
    "dev_zero": ("CheckpointError", "not a regular file"),
    "fifo": ("CheckpointError", "not a regular file"),
}
# Limits lowered for a case, to keep its file small.
KWARGS = {"many_zip_records": {"max_entries": 1000}, "legacy_opcodes_over_pickles": {"max_opcodes": 400_000}}
# ... and, in the test suite only, to keep it fast (the table runs the defaults).
FAST = {**KWARGS, "many_opcodes": {"max_opcodes": 100_000}, "many_objects": {"max_objects": 50_000}}


def build(name: str, directory: Path) -> Path:
    """Write the file of case ``name`` into ``directory`` and return its path."""
    if name == "dev_zero":
        return Path("/dev/zero")
    path = directory / f"{name}.pth"
    if name == "fifo":
        os.mkfifo(path)
    elif name == "huge_sparse_file":
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04")
            f.truncate(3 << 30)
    else:
        path.write_bytes(globals()[f"case_{name}"](directory))
    return path


# ---------------------------------------------------------------- running one file, bounded


def run_isolated(path, kwargs=None, timeout=20.0) -> dict:
    """Read ``path`` in a child process with a 1 GiB address-space limit and a timeout."""
    return run_child(__file__, [path, json.dumps(kwargs or {})], timeout)


def _child(path: str, kwargs: dict):
    limit_memory()
    from shiftnet_jax.torchfile.reader import CheckpointError, read_torch_state_dict

    start = time.perf_counter()
    try:
        got = read_torch_state_dict(path, **kwargs)
        outcome, message = "ok", f"{len(got)} tensors"
    except CheckpointError as e:
        outcome, message = type(e).__name__, str(e)
    report(outcome, message, start)


def table():
    rows = ["| attack | outcome | read time (s) | peak RSS (MiB) | message |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in CASES:
            rows.append(f"| {name} | {table_cells(run_isolated(build(name, Path(tmp)), KWARGS.get(name)))}")
    print("\n".join(rows))


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        table()
    else:
        _child(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
