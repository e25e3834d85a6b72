"""Tests for shiftnet_jax.torchfile.reader: a torch-free, code-free reader of torch.save files.

Checkpoints are produced here by a tiny writer that emits the pickle opcodes the
way torch.save lays them out (zip and legacy formats), so no torch is needed.
"""
from __future__ import annotations

import io
import os
import pickle
import posix
import re
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shiftnet_jax.torchfile.reader import (
    CheckpointError,
    UnsafeCheckpointError,
    read_torch_state_dict,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reference"
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"reference fixtures not found at {FIXTURES} (shared/ beside the checkout)")
# What malicious.pth runs under a permissive loader (read with pickletools.dis):
# GLOBAL 'posix system' + 'touch /tmp/shiftnet_pwned' + REDUCE.
PWNED = Path("/tmp/shiftnet_pwned")

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover
    BF16 = None

STORAGE_NAMES = {np.dtype(k): v for k, v in [
    (np.float32, "FloatStorage"), (np.float64, "DoubleStorage"), (np.float16, "HalfStorage"),
    (np.int64, "LongStorage"), (np.int32, "IntStorage"), (np.int16, "ShortStorage"),
    (np.int8, "CharStorage"), (np.uint8, "ByteStorage"), (np.bool_, "BoolStorage")]}
if BF16 is not None:
    STORAGE_NAMES[BF16] = "BFloat16Storage"


# ---------------------------------------------------------------- a minimal torch.save writer
class Call:
    """Emits GLOBAL module.name, the argument tuple, REDUCE."""

    def __init__(self, module, name, args=()):
        self.module, self.name, self.args = module, name, tuple(args)


class Global:
    """Emits GLOBAL module.name alone (a class or dtype used as a value)."""

    def __init__(self, module, name):
        self.module, self.name = module, name


class Pid:
    """Emits a persistent id (BINPERSID) for the tuple `value`."""

    def __init__(self, value):
        self.value = value


class Tensor:
    """A tensor on storage `key`: emits torch._utils._rebuild_tensor_v2(persistent storage id, ...)."""

    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, offset, tuple(size), tuple(stride)


class Build:
    """Emits `obj` then BUILD with `state` (how torch attaches _metadata to a state dict)."""

    def __init__(self, obj, state):
        self.obj, self.state = obj, state


class state_dict(dict):  # noqa: N801 - reads like the torch call it stands for
    """Pickled the way torch pickles an OrderedDict: OrderedDict() then SETITEMS."""


def _ops(x, storages, legacy) -> bytes:
    """Protocol-2 opcodes for x, without memo (torch's memo only makes the file shorter)."""
    def rec(v):
        return _ops(v, storages, legacy)

    def items(d):  # MARK key value ... SETITEMS
        return b"(" + b"".join(rec(k) + rec(v) for k, v in d.items()) + b"u" if d else b""

    if x is None:
        return b"N"
    if isinstance(x, bool):
        return b"\x88" if x else b"\x89"
    if isinstance(x, int):
        if 0 <= x < 256:
            return b"K" + bytes([x])
        if -(2**31) <= x < 2**31:
            return b"J" + struct.pack("<i", x)
        n = x.to_bytes((x.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(n)]) + n
    if isinstance(x, str):
        b = x.encode()
        return b"X" + struct.pack("<I", len(b)) + b
    if isinstance(x, tuple):
        return b"(" + b"".join(map(rec, x)) + b"t"
    if isinstance(x, state_dict):
        return b"ccollections\nOrderedDict\n)R" + items(x)
    if isinstance(x, dict):
        return b"}" + items(x)
    if isinstance(x, Call):
        return f"c{x.module}\n{x.name}\n".encode() + rec(x.args) + b"R"
    if isinstance(x, Build):
        return rec(x.obj) + rec(x.state) + b"b"
    if isinstance(x, Global):
        return f"c{x.module}\n{x.name}\n".encode()
    if isinstance(x, Pid):
        return rec(x.value) + b"Q"
    if isinstance(x, Tensor):
        # ('storage', torch.<T>Storage, key, location, numel[, view_metadata]) as a persistent id
        storage = storages[x.key]
        pid = ("storage", Global("torch", STORAGE_NAMES[storage.dtype]), x.key, "cpu", storage.size)
        pid += (None,) if legacy else ()
        return rec(Call("torch._utils", "_rebuild_tensor_v2", (
            Pid(pid), x.offset, x.size, x.stride, False, Call("collections", "OrderedDict"))))
    raise TypeError(type(x))


def _obj_pickle(obj, storages, legacy) -> bytes:
    return b"\x80\x02" + _ops(obj, storages, legacy) + b"."


def write_zip(path, obj, storages: dict, byteorder="little", pkl: bytes | None = None):
    """torch >= 1.6 layout: archive/data.pkl, archive/byteorder, archive/data/<key>."""
    order = "<" if byteorder == "little" else ">"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pkl if pkl is not None else _obj_pickle(obj, storages, False))
        zf.writestr("archive/byteorder", byteorder)
        zf.writestr("archive/version", "3\n")
        for key, arr in storages.items():
            zf.writestr(f"archive/data/{key}", arr.astype(arr.dtype.newbyteorder(order)).tobytes())


def legacy_header(little_endian=True) -> bytes:
    info = {"protocol_version": 1001, "little_endian": little_endian,
            "type_sizes": {"short": 2, "int": 4, "long": 8}}
    return b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, info))


def write_legacy(path, obj, storages: dict, byteorder="little", pkl: bytes | None = None):
    """pre-1.6 layout: header pickles, object pickle, key list, then (int64 numel, bytes) per storage.

    The data is little-endian whatever the header says: torch reads it so (checked
    with torch 2.14 on a file whose header says big-endian).
    """
    order = "<"
    out = [legacy_header(byteorder == "little"),
           pkl if pkl is not None else _obj_pickle(obj, storages, True),
           pickle.dumps(list(storages), protocol=2)]
    for arr in storages.values():
        out += [struct.pack("<q", arr.size), arr.astype(arr.dtype.newbyteorder(order)).tobytes()]
    Path(path).write_bytes(b"".join(out))


WRITERS = {"zip": write_zip, "legacy": write_legacy}


# ---------------------------------------------------------------- reference fixtures
@needs_fixtures
@pytest.mark.parametrize("name", ["reference_ngf8_center.pth", "reference_ngf8_center_legacy.pth"])
def test_fixture_matches_npz_bitwise(name):
    ref = np.load(FIXTURES / "shiftnet_ref_center.npz")
    expected = {k[len("state/"):]: ref[k] for k in ref.files if k.startswith("state/")}
    got = read_torch_state_dict(FIXTURES / name)
    assert expected and set(expected) <= set(got)
    for key, want in expected.items():
        have = got[key]
        assert have.dtype == want.dtype and have.shape == want.shape, key
        assert have.tobytes() == want.tobytes(), key
        assert have.flags.c_contiguous and have.flags.owndata and have.flags.writeable
    extra = set(got) - set(expected)
    if name.endswith("_legacy.pth"):  # pre-0.4 InstanceNorm buffers, ignored by callers
        assert extra and all(k.endswith((".running_mean", ".running_var")) for k in extra)
    else:
        assert not extra


@pytest.fixture
def no_shell(monkeypatch):
    """Record (instead of running) any os.system/subprocess call the reader might make."""
    calls = []
    spy = lambda *a, **k: calls.append(a) or 0  # noqa: E731
    for mod, attr in [(os, "system"), (posix, "system"), (subprocess, "call"),
                      (subprocess, "run"), (subprocess, "Popen"), (subprocess, "check_call")]:
        monkeypatch.setattr(mod, attr, spy)
    return calls


def _stamp(path: Path):
    return path.stat().st_mtime_ns if path.exists() else None


@needs_fixtures
def test_malicious_fixture_refused_without_side_effect(no_shell):
    before = _stamp(PWNED)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_torch_state_dict(FIXTURES / "malicious.pth")
    msg = str(info.value)
    assert msg.startswith("malicious.pth: ") and "\n" not in msg
    assert "posix.system" in msg and "refuses to load" in msg
    assert _stamp(PWNED) == before  # `touch /tmp/shiftnet_pwned` never ran
    assert not no_shell


# ---------------------------------------------------------------- hand-built unsafe pickles
class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [2, 4])
def test_hand_built_malicious_legacy_refused(tmp_path, request, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"w": _Evil(os.system, f"touch {marker}")}, protocol=protocol)
    no_shell = request.getfixturevalue("no_shell")  # only after pickling the real os.system
    path = tmp_path / "evil_legacy.pth"
    path.write_bytes(legacy_header() + payload + pickle.dumps([], protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"^evil_legacy\.pth: .*posix\.system"):
        read_torch_state_dict(path)
    assert not marker.exists() and not no_shell


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("global_", [("builtins", "eval"), ("builtins", "exec"), ("subprocess", "call"),
                                     ("os", "system"), ("torch", "load"), ("numpy", "load"),
                                     ("collections", "namedtuple")], ids=".".join)
def test_unsafe_globals_refused(tmp_path, no_shell, fmt, global_):
    marker = tmp_path / "pwned"
    storages = {"0": np.arange(4, dtype=np.float32)}
    # Hide the call inside a tensor's arguments, where a careless loader would run it.
    bad = Call(*global_, (f"open({str(marker)!r}, 'w').close()",))
    obj = state_dict({"w": Tensor("0", 0, (4,), (1,)), "x": bad})
    path = tmp_path / f"evil.{fmt}.pth"
    WRITERS[fmt](path, obj, storages)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_torch_state_dict(path)
    assert str(info.value) == (f"{path.name}: refuses to load: the pickle calls "
                               f"{global_[0]}.{global_[1]}, which a state dict never needs")
    assert not marker.exists() and not no_shell


def test_build_on_storage_type_refused(tmp_path):
    """BUILD on an allow-listed stand-in must not let a file change what it means."""
    storages = {"0": np.arange(4, dtype=np.float32)}
    pkl = (b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w"
           b"ctorch\nFloatStorage\n}(X\x05\x00\x00\x00dtypeK\x01ub" b"u.")
    write_zip(tmp_path / "b.pth", None, storages, pkl=pkl)
    with pytest.raises(CheckpointError, match=r"^b\.pth: "):
        read_torch_state_dict(tmp_path / "b.pth")


# ---------------------------------------------------------------- malformed files
def _garbage_cases(tmp: Path, fixtures_ok: bool):
    rng = np.random.default_rng(0)
    cases = {
        "empty.pth": b"",
        "random.pth": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "random80.pth": b"\x80" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "image.png": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "int_pickle.pth": pickle.dumps(12345, protocol=2),
        "text.pth": b"hello\nworld\n",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("something/else.txt", "no pickle here")
    cases["nopickle.pth"] = buf.getvalue()
    storages = {"0": np.arange(1000, dtype=np.float32)}
    obj = state_dict({"w": Tensor("0", 0, (1000,), (1,))})
    for fmt, writer in WRITERS.items():
        writer(tmp / "full", obj, storages)
        full = (tmp / "full").read_bytes()
        cases[f"cut_{fmt}_half.pth"] = full[: len(full) // 2]
        cases[f"cut_{fmt}_end.pth"] = full[:-10]
    if fixtures_ok:
        full = (FIXTURES / "reference_ngf8_center.pth").read_bytes()
        cases["cut_fixture_zip.pth"] = full[: len(full) * 3 // 5]
        full = (FIXTURES / "reference_ngf8_center_legacy.pth").read_bytes()
        cases["cut_fixture_legacy.pth"] = full[: len(full) - 1000]
        cases["cut_fixture_legacy_pickle.pth"] = full[:5000]
    return cases


def test_malformed_files_give_one_line_errors(tmp_path):
    cases = _garbage_cases(tmp_path, FIXTURES.is_dir())
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as info:
            read_torch_state_dict(path)
        msg = str(info.value)
        assert msg.startswith(f"{name}: ") and "\n" not in msg and len(msg) < 320, msg
        assert not isinstance(info.value, UnsafeCheckpointError), msg
    assert str(_err(tmp_path / "empty.pth")) == "empty.pth: the file is empty"
    assert "truncated" in str(_err(tmp_path / "cut_zip_end.pth"))
    assert "truncated" in str(_err(tmp_path / "cut_legacy_end.pth"))
    if FIXTURES.is_dir():
        assert "truncated" in str(_err(tmp_path / "cut_fixture_legacy_pickle.pth"))


def _err(path):
    with pytest.raises(CheckpointError) as info:
        read_torch_state_dict(path)
    return info.value


def test_missing_file_and_directory(tmp_path):
    assert str(_err(tmp_path / "absent.pth")).startswith("absent.pth: cannot read the file")
    assert str(_err(tmp_path)).startswith(f"{tmp_path.name}: ")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_tensor_outside_storage_refused(tmp_path, fmt):
    storages = {"0": np.arange(4, dtype=np.float32)}
    for i, (offset, size, stride) in enumerate([(0, (5,), (1,)), (3, (2,), (1,)), (0, (2, 2), (3, 1)),
                                                (-1, (2,), (1,)), (0, (2,), (-1,))]):
        path = tmp_path / f"oob{i}.pth"
        WRITERS[fmt](path, state_dict({"w": Tensor("0", offset, size, stride)}), storages)
        with pytest.raises(CheckpointError, match=rf"^oob{i}\.pth: "):
            read_torch_state_dict(path)


# ---------------------------------------------------------------- structure: sharing, unwrapping, metadata
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_shared_storage_nesting_and_metadata(tmp_path, fmt):
    base = np.arange(24, dtype=np.int64)
    storages = {"s": base, "t": np.array([1.5], dtype=np.float64)}
    inner = Build(state_dict({
        "a": Tensor("s", 0, (2, 3), (3, 1)),
        "b": Tensor("s", 6, (3, 2), (1, 3)),   # transposed view of the next 6 elements
        "c": Tensor("s", 23, (), ()),          # 0-d tensor at the end
        "e": Tensor("s", 0, (0, 4), (4, 1)),   # empty
        "num_batches_tracked": 7,
    }), {"_metadata": state_dict({"": {"version": 1}})})
    path = tmp_path / "sd.pth"
    WRITERS[fmt](path, {"state_dict": inner, "epoch": 3, "opt": {"lr": Tensor("t", 0, (), ())}}, storages)
    got = read_torch_state_dict(path)
    assert set(got) == {"a", "b", "c", "e"}  # single nested state dict unwrapped, non-tensors dropped
    np.testing.assert_array_equal(got["a"], base[:6].reshape(2, 3))
    np.testing.assert_array_equal(got["b"], base[6:12].reshape(2, 3).T)
    assert got["c"].shape == () and got["c"] == 23 and got["e"].shape == (0, 4)
    assert all(a.dtype == np.int64 and a.flags.c_contiguous for a in got.values())
    assert not np.shares_memory(got["a"], got["b"])

    # Two tensor-holding dicts and no preferred key: flattened with '.'.
    obj = {"enc": state_dict({"w": Tensor("s", 0, (2,), (1,))}),
           "dec": {"w": Tensor("t", 0, (1,), (1,)), "deep": {"x": Tensor("s", 4, (1,), (1,))}}}
    WRITERS[fmt](path, obj, storages)
    assert set(read_torch_state_dict(path)) == {"enc.w", "dec.w", "dec.deep.x"}
    obj = {"net_G": state_dict({"w": Tensor("s", 0, (2,), (1,))}), "net_D": {"v": Tensor("t", 0, (1,), (1,))}}
    WRITERS[fmt](path, obj, storages)
    assert set(read_torch_state_dict(path)) == {"w"}


def test_parameter_size_and_v3_dtype(tmp_path):
    """_rebuild_parameter, torch.Size and _rebuild_tensor_v3 (untyped bytes + a torch dtype global)."""
    storages = {"u": np.arange(4, dtype=np.int32).view(np.uint8), "f": np.arange(6, dtype=np.float32)}
    hooks = Call("collections", "OrderedDict")
    v3 = Call("torch._utils", "_rebuild_tensor_v3", (
        Pid(("storage", Global("torch", "UntypedStorage"), "u", "cpu", 16)), 1,
        Call("torch", "Size", ((3,),)), (1,), False, hooks, Global("torch", "int32")))
    param = Call("torch._utils", "_rebuild_parameter", (Tensor("f", 0, (2, 3), (3, 1)), True, hooks))
    path = tmp_path / "v3.pth"
    write_zip(path, state_dict({"i": v3, "p": param}), storages)
    got = read_torch_state_dict(path)
    np.testing.assert_array_equal(got["i"], np.array([1, 2, 3], np.int32))
    assert got["i"].dtype == np.int32
    np.testing.assert_array_equal(got["p"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_corrupt_zip_record(tmp_path):
    storages = {"0": np.arange(64, dtype=np.float32)}
    path = tmp_path / "crc.pth"
    write_zip(path, state_dict({"w": Tensor("0", 0, (64,), (1,))}), storages)
    data = bytearray(path.read_bytes())
    data[data.index(storages["0"].tobytes()) + 40] ^= 0xFF  # the CRC no longer matches
    path.write_bytes(bytes(data))
    assert str(_err(path)).startswith("crc.pth: truncated or corrupt zip record 'archive/data/0'")


def test_legacy_storage_view(tmp_path):
    """Pre-1.6 files may name a slice of a storage: ('storage', T, root, loc, n, (view, offset, size))."""
    root = np.arange(10, dtype=np.float32)
    pid = (b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00rX\x03\x00\x00\x00cpuK\n"
           b"(X\x01\x00\x00\x00vK\x04K\x03ttQ")
    pkl = (b"\x80\x02}(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor\n" + pid
           + b"K\x01(K\x02t(K\x01ttRu.")
    path = tmp_path / "view.pth"
    write_legacy(path, None, {"r": root}, pkl=pkl)
    np.testing.assert_array_equal(read_torch_state_dict(path)["w"], root[5:7])


# ---------------------------------------------------------------- property: round trip
DTYPES = list(STORAGE_NAMES)


@st.composite
def tensors(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dtype == BF16:  # hypothesis cannot draw bfloat16: draw its bit patterns
        arr = draw(hnp.arrays(np.uint16, shape)).view(BF16)
    else:
        arr = draw(hnp.arrays(dtype, shape))
    return arr, draw(st.booleans()), draw(st.integers(0, 5)), draw(st.integers(0, 3))


def _c_strides(shape):
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return tuple(reversed(out))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(tensors(), min_size=1, max_size=3), fmt=st.sampled_from(["zip", "legacy"]),
       byteorder=st.sampled_from(["little", "big"]), wrap=st.booleans())
def test_round_trip(items, fmt, byteorder, wrap):
    storages, sd, expected = {}, {}, {}
    for i, (arr, transposed, front, back) in enumerate(items):
        # Store either the array or its transpose, padded so the tensor has a storage offset.
        stored = np.array(arr.T, order="C") if transposed else arr  # keeps 0-d as 0-d
        stride = _c_strides(stored.shape)
        stride = tuple(reversed(stride)) if transposed else stride
        pad = np.zeros(front + back, arr.dtype)
        storages[str(i)] = np.concatenate([pad[:front], stored.ravel(), pad[front:]])
        sd[f"layer{i}.weight"] = Tensor(str(i), front, arr.shape, stride)
        expected[f"layer{i}.weight"] = arr
    obj = state_dict(sd)
    if wrap:
        obj = {"model": obj, "epoch": 12}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.pth"
        WRITERS[fmt](path, obj, storages, byteorder=byteorder)
        got = read_torch_state_dict(path)
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]
        assert have.dtype == want.dtype and have.dtype.isnative and have.shape == want.shape
        assert have.tobytes() == np.ascontiguousarray(want).tobytes()  # bitwise, NaNs included
        assert have.flags.c_contiguous and have.flags.owndata


# ---------------------------------------------------------------- hostile files (tests/hostile_checkpoints.py)
import hostile_checkpoints as hostile  # noqa: E402

from shiftnet_jax.torchfile import reader as torch_pickle  # noqa: E402


def _check_message(msg: str, file_name: str):
    assert msg.startswith(f"{file_name}: "), msg
    assert len(msg) <= 300 and msg.isprintable(), msg  # one line, no escape codes


@pytest.mark.parametrize("case", list(hostile.CASES))
def test_hostile_file_is_refused_fast_in_bounded_memory(tmp_path, case):
    """Each file runs in a child with a 1 GiB address-space limit and a timeout."""
    outcome, fragment = hostile.CASES[case]
    path = hostile.build(case, tmp_path)
    kwargs = dict(hostile.FAST.get(case, {}))
    if case == "overlapping_views":
        kwargs["max_output_bytes"] = 1 << 30  # an explicit limit applies as the default does
    result = hostile.run_isolated(path, kwargs, timeout=30)
    assert result["outcome"] == outcome, result
    assert result["seconds"] < 2.0 and result["peak_mib"] < 300, result
    if outcome != "ok":
        assert fragment in result["message"], result
        _check_message(result["message"], path.name)


def test_hostile_files_that_load_give_torch_values(tmp_path):
    got = read_torch_state_dict(hostile.build("tensor_under_many_keys", tmp_path))
    assert len(got) == 2000 and len({id(a) for a in got.values()}) == 1  # one array, not 2000 copies
    got = read_torch_state_dict(hostile.build("big_endian_legacy_header", tmp_path))
    np.testing.assert_array_equal(got["w"], np.array([1.5, -2.0], np.float32))  # little-endian, as torch
    got = read_torch_state_dict(hostile.build("uint16_untyped", tmp_path))
    assert got["w"].dtype == np.uint16 and got["w"].tolist() == [1, 2, 65535]


def test_build_cannot_mutate_the_reader(tmp_path):
    defaults = torch_pickle._rebuild_v2.__defaults__
    with pytest.raises(CheckpointError, match="sets the state of the function"):
        read_torch_state_dict(hostile.build("build_on_function", tmp_path))
    assert torch_pickle._rebuild_v2.__defaults__ == defaults


def test_file_name_with_control_characters_is_escaped(tmp_path):
    path = tmp_path / "evil\x1b[31m\nname.pth"
    path.write_bytes(b"")
    msg = str(_err(path))
    assert msg == "evil\\x1b[31m\\nname.pth: the file is empty"


def test_limits_are_keyword_arguments(tmp_path):
    path = tmp_path / "w.pth"
    write_zip(path, state_dict({"w": Tensor("0", 0, (64,), (1,))}), {"0": np.zeros(64, np.float32)})
    assert read_torch_state_dict(path)["w"].shape == (64,)
    for kwargs, fragment in [({"max_file_bytes": 100}, "max_file_bytes=100"),
                             ({"max_output_bytes": 100}, "max_output_bytes=100"),
                             ({"max_entries": 0}, "max_entries=0"),
                             ({"max_pickle_bytes": 10}, "max_pickle_bytes=10"),
                             ({"max_depth": 1}, "max_depth=1"),
                             ({"max_objects": 5}, "max_objects=5"),
                             ({"max_opcodes": 5}, "max_opcodes=5")]:
        with pytest.raises(torch_pickle.CheckpointLimitError, match=fragment):
            read_torch_state_dict(path, **kwargs)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_storage_size_must_match_the_pickle(tmp_path, fmt):
    """torch refuses a record/block whose size differs from numel x itemsize; so do we."""
    storages = {"0": np.arange(4, dtype=np.float32)}
    pkl = _obj_pickle(state_dict({"w": Tensor("0", 0, (4,), (1,))}), storages, fmt == "legacy")
    pkl = pkl.replace(b"X\x03\x00\x00\x00cpuK\x04", b"X\x03\x00\x00\x00cpuK\x05")  # declares 5
    path = tmp_path / "size.pth"
    WRITERS[fmt](path, None, storages, pkl=pkl)
    assert re.search(r"(holds 16 bytes, but the pickle declares 20|holds 4 elements in the file, "
                     r"but the pickle declares 5)", str(_err(path)))


def test_deflated_records_are_read(tmp_path):
    """torch reads deflated zip records (re-zipped checkpoints); so do we, within the declared size."""
    arr = np.arange(1000, dtype=np.float32)
    pkl = _obj_pickle(state_dict({"w": Tensor("0", 0, (1000,), (1,))}), {"0": arr}, False)
    path = tmp_path / "deflated.pth"
    path.write_bytes(hostile.torch_zip(pkl, [("0", hostile.deflated("archive/data/0", arr.tobytes()))]))
    np.testing.assert_array_equal(read_torch_state_dict(path)["w"], arr)


# ---------------------------------------------------------------- genuine files written by torch (tools/make_torch_fixtures.py)
DATA = Path(__file__).resolve().parent / "data"


def _torch_expected():
    with np.load(DATA / "torch_dtypes.npz") as z:
        out = {}
        for key in z.files:
            name, dtype, shape = key.split("::")
            out[name] = (dtype, tuple(int(n) for n in shape.split("x") if n), z[key].tobytes())
        return out


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_genuine_torch_files_load_bit_exact(fmt):
    got = read_torch_state_dict(DATA / f"torch_dtypes_{fmt}.pth")
    want = _torch_expected()
    if fmt == "legacy":  # torch cannot read these dtypes back from a legacy file
        want = {k: v for k, v in want.items()
                if not k.startswith(("t_uint16", "t_uint32", "t_uint64", "t_float8"))}
    assert set(got) == set(want)
    for name, (dtype, shape, raw) in want.items():
        have = got[name]
        assert (have.dtype.name, have.shape) == (dtype, shape), name
        assert have.tobytes() == raw, name
        assert have.flags.c_contiguous and have.dtype.isnative
    assert got["tied_a"] is got["tied_b"]  # one storage, one array
    assert "module.weight" in got and "module.bias" in got


@pytest.mark.parametrize("name, fragment", [
    ("torch_complex32.pth", "dtype torch.complex32, which numpy cannot represent"),
    ("torch_uint16_legacy.pth", "legacy-format file with an untyped storage"),
])
def test_genuine_but_unsupported_files_say_so(name, fragment):
    with pytest.raises(torch_pickle.UnsupportedCheckpointError) as info:
        read_torch_state_dict(DATA / name)
    assert str(info.value).startswith(f"{name}: ") and fragment in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


# ---------------------------------------------------------------- property: damaged and random files
def _only_checkpoint_errors(path):
    try:
        read_torch_state_dict(path)
    except CheckpointError as e:
        _check_message(str(e), path.name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(["zip", "legacy"]), data=st.data())
def test_damaged_genuine_files_fail_cleanly(tmp_path, fmt, data):
    """Flipped bytes or a cut anywhere in a genuine file: it loads, or one clear CheckpointError."""
    raw = bytearray((DATA / f"torch_dtypes_{fmt}.pth").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[:data.draw(st.integers(1, len(raw)))]
    path = tmp_path / "damaged.pth"
    path.write_bytes(bytes(raw))
    _only_checkpoint_errors(path)


_OPS = [b"(", b"t", b")", b"\x85", b"\x86", b"}", b"]", b"a", b"e", b"s", b"u", b"0", b"1", b"2",
        b"N", b"K\x01", b"X\x01\x00\x00\x00k", b"q\x00", b"h\x00", b"\x94", b"R", b"b", b"Q",
        b"ctorch._utils\n_rebuild_tensor_v2\n", b"ctorch\nFloatStorage\n", b"ccollections\nOrderedDict\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.sampled_from(_OPS), max_size=40))
def test_random_opcode_streams_fail_cleanly(tmp_path, ops):
    path = tmp_path / "ops.pth"
    path.write_bytes(hostile.torch_zip(b"\x80\x02" + b"".join(ops) + b".", [("0", bytes(16))]))
    _only_checkpoint_errors(path)


def test_big_endian_untyped_storage_is_unsupported(tmp_path):
    """torch does not byte-swap untyped storages (uint16 & co.) of a big-endian archive, so its
    values would come out swapped: refused rather than guessed."""
    pkl = hostile.state(("w", hostile.tensor_v3("0", 6, (3,), "uint16")))
    path = tmp_path / "be.pth"
    path.write_bytes(hostile.torch_zip(pkl, [("0", bytes(6))], byteorder=b"big"))
    with pytest.raises(torch_pickle.UnsupportedCheckpointError, match="untyped storage in a big-endian"):
        read_torch_state_dict(path)
