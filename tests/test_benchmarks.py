"""Smoke test of benchmarks/bench.py: it runs at a tiny size and writes valid JSON.

Not a timing test: no figure is compared with anything. The side-by-side path is
exercised with a made-up reference JSON (no torch needed).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"


def _fake_reference(path, size):
    ref = {"impl": "reference-pytorch", "commit": "0" * 40, "device": "cpu", "threads": 2,
           "ngf": 4, "size": size,
           "batches": {"1": {"median_s": 0.5, "images_per_s": 2.0, "min_s": 0.5}},
           "train": {"batch": 1, "median_s": 1.0, "images_per_s": 1.0, "min_s": 1.0}}
    path.write_text(json.dumps(ref))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out, ref = tmp / "bench.json", tmp / "ref.json"
    _fake_reference(ref, 32)
    cmd = [sys.executable, str(BENCH), "--quick", "--device", "cpu", "--ngf", "4",
           "--num-downs", "5", "--sizes", "32", "--batches", "1", "--train-batches", "1",
           "--dtypes", "float32", "--only", "infer,train,shift", "--shift-sizes", "32",
           "--shift-tiles", "0,8", "--loader-steps", "1", "--reference-json", str(ref),
           # plain lax convs: half the compile time of the CPU formulations at this size
           "--conv-impl", "lax",
           "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_environment_recorded(report):
    env = report[0]["environment"]
    for key in ("date", "command", "cpu_model", "platform", "device_kind", "jax", "jaxlib",
                "flax", "loadavg_start", "loadavg_end"):
        assert key in env, key
    assert env["platform"] == "cpu"
    assert "float32" in report[0]["peaks_tflops"]
    assert report[0]["peaks_tflops"]["float32"]["value"] > 0


def test_every_case_ran(report):
    results = report[0]["results"]
    kinds = sorted({r["kind"] for r in results})
    assert kinds == ["infer", "shift", "train"]
    for r in results:
        assert r["ok"], r.get("error")


def test_figures_are_sane(report):
    results = report[0]["results"]
    infer = next(r for r in results if r["kind"] == "infer")
    assert infer["images_per_s"] > 0 and math.isfinite(infer["median_s"])
    assert infer["latency_ms"] > 0
    assert infer["flops"] > 0 and infer["achieved_tflops"] > 0
    assert 0 < infer["floor_s"]
    assert infer["peak_device_bytes"] is None and "memory_stats" in infer["peak_device_bytes_note"]
    assert infer["compiled_memory"]["temp_bytes"] >= 0
    train = next(r for r in results if r["kind"] == "train")
    assert train["images_per_s"] > 0 and train["flops"] > infer["flops"]
    assert train["loader"]["train_with_loader_images_per_s"] > 0
    assert all(math.isfinite(v) for v in train["first_step_scalars"].values())
    shifts = {r["tile"]: r for r in results if r["kind"] == "shift"}
    assert shifts[0]["effective"] == "dense"
    assert shifts[8]["effective"].startswith("tiled")
    for r in shifts.values():
        assert r["fwd"]["median_s"] > 0 and r["fwd_bwd"]["median_s"] > 0


def test_side_by_side_ratios(report):
    cmp_ = report[0]["comparison"]["32"]
    ours = next(r for r in report[0]["results"] if r["kind"] == "infer" and r["batch"] == 1)
    assert cmp_["inference"]["batch_1"]["ratio"] == pytest.approx(ours["images_per_s"] / 2.0)
    assert cmp_["training"]["batch_1_float32"]["ratio"] > 0
    assert "side-by-side" in report[1]
