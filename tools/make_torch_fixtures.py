"""Write the genuine torch.save fixtures of tests/data/ (needs torch; the test suite does not).

    /path/to/venv-with-torch/bin/python tools/make_torch_fixtures.py tests/data

Files written:

* ``torch_dtypes_zip.pth``: every dtype numpy (with ml_dtypes) can hold, in the
  zip format, plus views (transposed, offset, 0-d, empty), tied weights, a
  Parameter and a nested module state dict with its ``_metadata``.
* ``torch_dtypes_legacy.pth``: the same, ``_use_new_zipfile_serialization=False``,
  without the dtypes torch itself cannot read back from a legacy file
  (uint16/32/64, float8: torch writes them, then fails to load them).
* ``torch_dtypes.npz``: what torch.load returns from the zip file (the legacy
  file holds a subset of it), one array per tensor: the raw C-order bytes as
  uint8, under the key ``name::dtype::shape``.
* ``torch_complex32.pth``, ``torch_uint16_legacy.pth``: genuine files that
  the reader must refuse as unsupported (numpy has no complex32; torch
  cannot load the second).
"""
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

warnings.simplefilter("ignore")  # legacy-format deprecation notes
torch.manual_seed(0)

LEGACY_OK = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
             "uint8", "bool", "complex64", "complex128"]
ZIP_ONLY = ["uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
            "float8_e5m2fnuz", "float8_e8m0fnu"]


def sample(name: str) -> torch.Tensor:
    dt = getattr(torch, name)
    if name == "bool":
        return torch.tensor([True, False, True])
    if name.startswith("float8"):  # every kind of bit pattern, NaN encodings included
        return torch.tensor([0, 1, 0x7F, 0x80, 0xFF, 0x3C], dtype=torch.uint8).view(dt)
    if dt.is_floating_point:
        return torch.tensor([0.0, -0.0, 1.5, float("inf"), float("nan"), -3.25e-3], dtype=dt)
    if dt.is_complex:
        return torch.tensor([1 + 2j, -0.5j, float("nan")], dtype=dt)
    info = torch.iinfo(dt)
    return torch.tensor([info.min, info.max, 0, 1], dtype=dt) if name != "uint64" else \
        torch.tensor([0, 1, 2**63 - 1], dtype=torch.int64).view(torch.uint64)


def state(dtypes):
    torch.manual_seed(0)  # the same values in both files
    sd = {f"t_{n}": sample(n) for n in dtypes}
    base = torch.arange(24, dtype=torch.float32)
    sd["view_transposed"] = base[:6].view(2, 3).t()
    sd["view_offset"] = base[10:14]
    sd["scalar"] = base[23]
    sd["empty"] = torch.zeros(0, 4)
    sd["tied_a"] = sd["tied_b"] = torch.linspace(-1, 1, 5)
    sd["param"] = torch.nn.Parameter(torch.ones(2, 2))
    sd["module"] = torch.nn.Linear(1, 1).state_dict()  # nested, with _metadata
    return sd


def expected(loaded, prefix=""):
    out = {}
    for k, v in loaded.items():
        if isinstance(v, dict):
            out.update(expected(v, f"{prefix}{k}."))
            continue
        v = v.detach().contiguous()
        raw = v.reshape(-1).view(torch.uint8).numpy() if v.numel() else np.zeros(0, np.uint8)
        name = str(v.dtype).removeprefix("torch.").replace("bool", "bool")
        out[f"{prefix}{k}::{name}::{'x'.join(map(str, v.shape))}"] = raw.copy()
    return out


def check_ml_dtypes(loaded):
    """torch's float8 formats and ml_dtypes' of the same name decode every byte alike."""
    import ml_dtypes

    for name in ZIP_ONLY:
        if name.startswith("float8"):
            t = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(getattr(torch, name))
            ours = np.arange(256, dtype=np.uint8).view(getattr(ml_dtypes, name)).astype(np.float32)
            np.testing.assert_array_equal(t.float().numpy(), ours, err_msg=name)


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fmt, dtypes in (("zip", LEGACY_OK + ZIP_ONLY), ("legacy", LEGACY_OK)):
        path = out / f"torch_dtypes_{fmt}.pth"
        torch.save(state(dtypes), path, _use_new_zipfile_serialization=fmt == "zip")
        loaded = torch.load(path, weights_only=True)  # what torch reads is what we must read
        if fmt == "zip":
            np.savez_compressed(out / "torch_dtypes.npz", **expected(loaded))
            check_ml_dtypes(loaded)
    torch.save({"w": torch.zeros(2, dtype=torch.complex32)}, out / "torch_complex32.pth")
    torch.save({"w": torch.tensor([1, 2, 3], dtype=torch.int32).to(torch.uint16)}, out / "torch_uint16_legacy.pth",
               _use_new_zipfile_serialization=False)
    for p in sorted(out.iterdir()):
        print(f"{p.stat().st_size:6d}  {p}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data")
