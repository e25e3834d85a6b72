"""benchmarks/bench.py: a smoke run at a tiny size writes valid JSON and Markdown; the
layer profile reads its shapes from the model (plain and res variants).

Not a timing test: no figure is compared with anything. The side-by-side path is
exercised with a made-up reference JSON (no torch needed).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from benchmarks import measure
from benchmarks.cases import layers
from shiftnet_jax.nets.generator import ShiftNetGenerator

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
           "--json", str(out), "--markdown", str(tmp / "bench.md")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, (tmp / "bench.md").read_text()


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


def test_markdown_table_has_a_row_per_figure(report):
    table = report[2].splitlines()
    assert table[0].startswith("| what | size | dtype | B | median ms")
    figures = [line for line in table[2:] if line.startswith("| ")]
    # infer, train, 2 shift cases x (fwd, fwd_bwd)
    assert len(figures) == 6, table
    assert not any("FAILED" in line for line in figures)


@pytest.mark.parametrize("variant", ["shift", "res"])
def test_profile_reads_the_layer_shapes_from_the_model(variant):
    """Every conv the profile times has the kernel shape of the model's own parameter,
    the norms and the shift level the shapes the model gives them; the up conv after the
    shift level reads 3C channels (plain: [d, e, shift]) or 2C (res: [d + r, e])."""
    model = ShiftNetGenerator(ngf=4, num_downs=5, shift_layer=3, variant=variant)
    size, batch = 32, 2
    recorded = layers.model_layers(model, size, batch)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jax.numpy.zeros((1, size, size, 3)),
                                               jax.numpy.zeros((1, size, size, 1))))["params"]
    convs = [r for r in recorded if r.group in ("conv", "conv_transpose")]
    assert [r.path for r in convs] == [f"down_{i}/conv" for i in range(5)] + [
        f"up_{i}/conv" for i in reversed(range(5))]
    for r in convs:
        level, _ = r.path.split("/")
        kernel = params[level]["conv"]["kernel"].shape
        assert kernel == (4, 4, r.args[0].shape[-1], r.output.shape[-1]), r.path
        assert r.args[0].shape[0] == batch
    norms = [r for r in recorded if r.group == "norm"]
    assert len(norms) == 3 + 4   # down_1..down_3, up_1..up_4
    for r in norms:
        assert r.args[0].shape == r.output.shape
        assert params[r.path.split("/")[0]]["norm"]["scale"].shape == (r.args[0].shape[-1],)
    (level,) = [r for r in recorded if r.group == "shift"]
    c = model.widths[2]
    assert level.args[0].shape == (batch, size // 8, size // 8, c)   # decoded features
    assert level.args[2].shape == (batch, size // 8, size // 8)      # the feature hole
    up = next(r for r in convs if r.path == "up_2/conv")
    assert up.args[0].shape[-1] == (2 if variant == "res" else 3) * c
    assert level.output.shape == up.args[0].shape
    # the profile times each layer on operands of exactly these shapes
    ops = layers.operands(level, size, jax.random.key(0))
    assert [o.shape for o in ops if o is not None] == [
        a.shape for a in level.args if a is not None]
    assert ops[2].dtype == bool and 0 < int(ops[2][0].sum()) < ops[2][0].size


@pytest.mark.parametrize("kind, name", [
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"), ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
    ("NVIDIA H100 NVL", "NVIDIA H100 NVL"), ("NVIDIA H200", "NVIDIA H200 SXM"),
    ("NVIDIA A100-SXM4-80GB", "NVIDIA A100"), ("NVIDIA L40S", "NVIDIA L40S"),
    ("NVIDIA L4", "NVIDIA L4"), ("TPU v5 lite", "TPU v5e"), ("TPU v5p", "TPU v5p"),
    ("cpu", None)])
def test_device_peaks_by_kind(kind, name):
    found, peaks = measure.device_peaks(kind)
    assert found == name
    if name and name.startswith("NVIDIA"):
        assert peaks["bfloat16"] > peaks["tf32"] > peaks["float32"] > 0
