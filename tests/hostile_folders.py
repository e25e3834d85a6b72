"""Hostile checkpoint folders (config.json, the float16 .npz, Orbax metadata) and a runner.

Each case of :data:`CASES` turns a copy of a small, valid checkpoint folder into
one that attacked an earlier loader: a config that builds an enormous model or
recurses 100,000 levels deep, arrays of the wrong shape, a deflate bomb, Orbax
metadata declaring 2**34 floats. ``python tests/hostile_folders.py DIR`` loads one
folder (or several, in order) with ``checkpoint.load_generator`` and prints one JSON line each (outcome,
message, seconds, peak resident memory); a watchdog thread ends the child at
1 GiB resident (JAX needs more address space than that, so RLIMIT_AS is 4 GiB).
``--table`` builds every case and prints the table of outcomes.
"""
from __future__ import annotations

import json
import math
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from pathlib import Path

MEMORY_LIMIT_MIB = 1024
MODEL = {"ngf": 4, "num_downs": 4, "shift_layer": 2}


# ---------------------------------------------------------------- the valid folders the cases start from
def base_folders(directory: Path) -> tuple[Path, Path]:
    """A compact (.npz) and an Orbax checkpoint of a tiny generator, written once into ``directory``."""
    compact, orbax = directory / "base_compact", directory / "base_orbax"
    if not compact.exists():
        import numpy as np

        from shiftnet_jax import checkpoint
        from shiftnet_jax.nets.generator import ShiftNetGenerator

        # Random values of the right shapes (no init: op-by-op it compiles for minutes on a busy machine).
        rng = np.random.default_rng(0)
        expected = checkpoint.expected_variables(ShiftNetGenerator(**MODEL))
        variables = checkpoint._unflatten({k: rng.standard_normal(v.shape).astype(np.float32)
                                           for k, v in expected.items()})
        checkpoint.export_compact(compact, MODEL, variables)
        checkpoint.export_generator(orbax, MODEL, variables)
    return compact, orbax


def npy(shape, dtype="<f2", body: bytes | None = None) -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + (body or b"")


def rewrite_npz(folder: Path, change):
    """Rewrite ``generator_f16.npz``: ``change(records)`` edits the {name: bytes} of its records."""
    path = folder / "generator_f16.npz"
    with zipfile.ZipFile(path) as zf:
        records = {n: zf.read(n) for n in zf.namelist()}
    change(records)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in records.items():
            zf.writestr(name, data)


def _zeros_deflated(header: bytes, n: int) -> bytes:
    """Raw deflate of ``header`` + ``n`` zero bytes, compressed in 8 MB blocks."""
    co, block = zlib.compressobj(1, zlib.DEFLATED, -15), b"\x00" * (8 << 20)
    out, done = [co.compress(header)], 0
    while done < n:
        k = min(len(block), n - done)
        out.append(co.compress(block if k == len(block) else block[:k]))
        done += k
    out.append(co.flush())
    return b"".join(out)


def npz_bomb(folder: Path, name: str, shape):
    """Replace record ``name`` by an array of ``shape`` float16 zeros, deflated (~1000:1)."""
    header, nbytes = npy(shape), 2 * math.prod(shape)
    rewrite_npz(folder, lambda r: r.pop(name))
    # A raw deflated record (CRC 0: a reader that checks shapes first never gets that far).
    _append_raw_record(folder / "generator_f16.npz", name, _zeros_deflated(header, nbytes), len(header) + nbytes)


def _append_raw_record(path: Path, name: str, compressed: bytes, size: int):
    """Add a deflated record with the given declared size to the zip at ``path``."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        blobs = [(i, zf.open(i).read()) for i in infos]
    out, central = bytearray(), bytearray()
    for info, data in blobs:
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = comp.compress(data) + comp.flush()
        central += _central(info.filename, len(out), body, len(data), zlib.crc32(data))
        out += _local(info.filename, body, len(data), zlib.crc32(data))
    central += _central(name, len(out), compressed, size, 0)
    out += _local(name, compressed, size, 0)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(blobs) + 1, len(blobs) + 1, len(central), len(out), 0)
    path.write_bytes(bytes(out + central) + end)


def _local(name, body, size, crc) -> bytes:
    n = name.encode()
    size32 = min(size, 0xFFFFFFFF)
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(body), size32, len(n), 0) + n + body


def _central(name, offset, body, size, crc) -> bytes:
    n = name.encode()
    size32 = min(size, 0xFFFFFFFF)
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(body), size32,
                       len(n), 0, 0, 0, 0, 0, offset) + n


def orbax_zarray(folder: Path, array: str, shape):
    """Declare ``shape`` for ``array`` in its zarr metadata inside the Orbax (OCDBT) store."""
    import tensorstore as ts

    base = f"file://{(folder / 'checkpoints' / '0' / 'default').absolute()}/"
    kv = ts.KvStore.open({"driver": "ocdbt", "base": base}).result()
    key = f"{array}/.zarray".encode()
    meta = json.loads(kv.read(key).result().value)
    meta["shape"], meta["chunks"] = list(shape), list(shape)
    kv.write(key, json.dumps(meta).encode()).result()


def set_config(folder: Path, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(edit(config)))


def _model(**kw):
    return lambda c: {**c, "model": {**c["model"], **kw}}


# ---------------------------------------------------------------- the cases: name -> (base, how)
BIAS = "params/down_0/conv/bias"
CASES = {  # name -> (base "compact"/"orbax", expected outcome, substring of the message or None)
    "good_compact": ("compact", "ok", None),
    "good_orbax": ("orbax", "ok", None),
    "config_unknown_model_key": ("compact", "NotACheckpointError", "unknown config field 'model.nfg'"),
    "config_string_for_dict": ("compact", "NotACheckpointError", "config group 'model' must be a JSON object"),
    "config_json_list": ("compact", "NotACheckpointError", "must be a JSON object, got list"),
    "config_nested_100000": ("compact", "NotACheckpointError", "config nests 100001 levels deep; the limit is 4"),
    "config_huge_file": ("compact", "NotACheckpointError", "the limit is 1048576"),
    "config_ngf_million": ("compact", "NotACheckpointError", "'model.ngf' must be <= 1024; got 1000000"),
    "config_num_downs_1000": ("compact", "NotACheckpointError", "'model.num_downs' must be <= 10; got 1000"),
    "config_ngf_text": ("compact", "NotACheckpointError", "'model.ngf' takes an integer, got 'thirty-two'"),
    "config_unknown_variant": ("compact", "NotACheckpointError", "variant must be one of"),
    "config_crop_size_text": ("compact", "NotACheckpointError", "'data.crop_size' takes an integer, got 'big'"),
    "config_crop_size_65536": ("compact", "NotACheckpointError", "'data.crop_size' must be <= 2048"),
    "config_model_of_4_gib": ("compact", "NotACheckpointError", "GiB of variables; the limit is 2 GiB"),
    "config_tfds_dir_root": ("compact", "ok", None),
    "npz_wrong_shape": ("compact", "NotACheckpointError", "is (5,); the config's model needs (4,)"),
    "npz_missing_array": ("compact", "NotACheckpointError", "lacks 1 array(s)"),
    "npz_extra_array": ("compact", "NotACheckpointError", "has 1 array(s) the config's model lacks"),
    "npz_deflate_bomb_256_mib": ("compact", "NotACheckpointError", "declares 268435584 bytes for an array of (4,)"),
    "npz_declared_size_lies": ("compact", "NotACheckpointError", "declares 4294967295 bytes for an array of (4,)"),
    "npz_wrong_dtype": ("compact", "NotACheckpointError", "is complex128; expected float16 or float32"),
    "npz_20000_records": ("compact", "NotACheckpointError", "zip records (20026) exceeds max_entries (+64)=90"),
    "orbax_bias_2_34_floats": ("orbax", "NotACheckpointError", "is (17179869184,); the config's model needs (4,)"),
    "orbax_bias_2_29_floats": ("orbax", "NotACheckpointError", "is (536870912,); the config's model needs (4,)"),
    "orbax_metadata_nested_100000": ("orbax", "NotACheckpointError", "Orbax metadata nests 100001 levels deep"),
    "orbax_no_generator_arrays": ("orbax", "NotACheckpointError", "config's model has"),
}


def _make(name: str, folder: Path):
    if name == "config_unknown_model_key":
        set_config(folder, _model(nfg=3))
    elif name == "config_string_for_dict":
        set_config(folder, lambda c: {**c, "model": "ngf=32"})
    elif name == "config_json_list":
        set_config(folder, lambda c: [c])
    elif name == "config_nested_100000":
        (folder / "config.json").write_text("[" * 100_001 + "]" * 100_001)
    elif name == "config_huge_file":
        set_config(folder, lambda c: {**c, "name": "x" * (2 << 20)})
    elif name == "config_ngf_million":
        set_config(folder, _model(ngf=10 ** 6))
    elif name == "config_num_downs_1000":
        set_config(folder, _model(num_downs=1000))
    elif name == "config_ngf_text":
        set_config(folder, _model(ngf="thirty-two"))
    elif name == "config_unknown_variant":
        set_config(folder, _model(variant="trojan"))
    elif name == "config_crop_size_text":
        set_config(folder, lambda c: {**c, "data": {"crop_size": "big"}})
    elif name == "config_crop_size_65536":
        set_config(folder, lambda c: {**c, "data": {"crop_size": 65536}})
    elif name == "config_model_of_4_gib":
        set_config(folder, lambda c: {**c, "model": {**c["model"], "ngf": 1024, "num_downs": 10},
                                      "data": {"crop_size": 1024}})
    elif name == "config_tfds_dir_root":
        set_config(folder, lambda c: {**c, "data": {"source": "tfds", "dir": "/"}})
    elif name == "npz_wrong_shape":
        rewrite_npz(folder, lambda r: r.__setitem__(BIAS + ".npy", npy((5,), body=bytes(10))))
    elif name == "npz_missing_array":
        rewrite_npz(folder, lambda r: r.pop(BIAS + ".npy"))
    elif name == "npz_extra_array":
        rewrite_npz(folder, lambda r: r.__setitem__("params/extra.npy", npy((1,), body=bytes(2))))
    elif name == "npz_deflate_bomb_256_mib":
        npz_bomb(folder, BIAS + ".npy", (1 << 27,))
    elif name == "npz_declared_size_lies":
        npz_lying_size(folder)
    elif name == "npz_wrong_dtype":
        rewrite_npz(folder, lambda r: r.__setitem__(BIAS + ".npy", npy((4,), "<c16", bytes(64))))
    elif name == "npz_20000_records":
        rewrite_npz(folder, lambda r: r.update({f"x{k}.npy": b"" for k in range(20_000)}))
    elif name == "orbax_bias_2_34_floats":
        orbax_zarray(folder, "generator.params.down_0.conv.bias", (1 << 34,))
    elif name == "orbax_bias_2_29_floats":
        orbax_zarray(folder, "generator.params.down_0.conv.bias", (1 << 29,))
    elif name == "orbax_metadata_nested_100000":
        (folder / "checkpoints" / "0" / "default" / "_METADATA").write_text("[" * 100_001 + "]" * 100_001)
    elif name == "orbax_no_generator_arrays":
        meta_path = folder / "checkpoints" / "0" / "default" / "_METADATA"
        meta = json.loads(meta_path.read_text())
        meta["tree_metadata"] = {k: v for k, v in meta["tree_metadata"].items() if "down_0" not in k}
        meta_path.write_text(json.dumps(meta))


def npz_lying_size(folder: Path):
    """The bias record declares 4 GiB - 1 of data (its zip sizes lie; its .npy header does not)."""
    path = folder / "generator_f16.npz"
    with zipfile.ZipFile(path) as zf:
        bias = zf.read(BIAS + ".npy")
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    rewrite_npz(folder, lambda r: r.pop(BIAS + ".npy"))
    _append_raw_record(path, BIAS + ".npy", comp.compress(bias) + comp.flush(), 0xFFFFFFFF)


def build(name: str, directory: Path) -> Path:
    """Copy the case's base folder into ``directory / name`` and make it hostile."""
    compact, orbax = base_folders(directory)
    folder = directory / name
    shutil.copytree(compact if CASES[name][0] == "compact" else orbax, folder)
    _make(name, folder)
    return folder


# ---------------------------------------------------------------- running folders, bounded
def run_isolated(*folders, timeout=120.0) -> list[dict]:
    """Load ``folders`` one after the other in one child process (JAX starts once: ~4 s);
    its peak resident memory is reset before each (``/proc/self/clear_refs``), so each
    result has that folder's time and peak. A crash ends the child: the rest say so."""
    cmd = [sys.executable, __file__, *map(str, folders)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    crashed = {"outcome": f"crashed (exit {proc.returncode})", "message": proc.stderr[-800:]}
    return (results + [crashed] * len(folders))[:len(folders)]


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def _watchdog():
    """End this process (exit 137) as soon as it holds more than MEMORY_LIMIT_MIB resident."""
    while True:
        if _status("VmRSS:") > MEMORY_LIMIT_MIB:
            print(json.dumps({"outcome": "killed (over 1 GiB resident)"}), flush=True)
            os._exit(137)
        time.sleep(0.005)


def _child(folders: list[str]):
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    threading.Thread(target=_watchdog, daemon=True).start()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)
    import jax

    from shiftnet_jax import checkpoint

    checkpoint.expected_variables(checkpoint.ShiftNetGenerator(**MODEL))  # JAX warm: time the loading only
    for folder in folders:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident size
        start = time.perf_counter()
        try:
            model, variables, _ = checkpoint.load_generator(folder)
            outcome, message = "ok", f"{len(jax.tree_util.tree_leaves(variables))} arrays, ngf {model.ngf}"
            del variables
        except checkpoint.NotACheckpointError as e:
            outcome, message = type(e).__name__, str(e)
        seconds = time.perf_counter() - start
        print(json.dumps({"outcome": outcome, "message": message, "seconds": seconds,
                          "peak_mib": _status("VmHWM:")}), flush=True)


def table():
    rows = ["| attack | outcome | load time (s) | peak RSS (MiB) | message |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        results = run_isolated(*(build(name, Path(tmp)) for name in CASES))
        for name, r in zip(CASES, results):
            msg = r["message"].replace("|", "\\|").replace(tmp, "TMP")[:150]
            rows.append(f"| {name} | {r['outcome']} | {r.get('seconds', float('nan')):.3f} | "
                        f"{r.get('peak_mib', float('nan')):.0f} | {msg} |")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's shiftnet_jax
    if sys.argv[1:] == ["--table"]:
        table()
    else:
        _child(sys.argv[1:])
