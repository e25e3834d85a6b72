"""benchmarks/gpu_suite.sh --dry-run: the GPU suite's every path on CPU at tiny sizes, so it
is known to work before anyone spends GPU time on it (real processes, real files)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from shiftnet_jax import checkpoint

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


def _run(*args, timeout=600):
    env = {**os.environ, "PY": sys.executable}
    return subprocess.run([str(SUITE), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_suite")
    ref = tmp / "ref.json"   # a made-up reference result (no torch here)
    ref.write_text(json.dumps({
        "impl": "reference-pytorch", "commit": "0" * 40, "device": "cpu", "threads": 2,
        "ngf": 4, "size": 32, "batches": {"1": {"median_s": 0.5, "images_per_s": 2.0},
                                          "8": {"median_s": 1.0, "images_per_s": 8.0}},
        "train": {"batch": 1, "median_s": 1.0, "images_per_s": 1.0}}))
    proc = _run("--dry-run", "--out", tmp / "out", "--reference-json", ref)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return (json.loads((tmp / "out" / "gpu_suite.json").read_text()),
            (tmp / "out" / "gpu_suite.md").read_text())


def test_dry_run_measures_every_kind(suite):
    report, _ = suite
    assert report["dry_run"] and report["environment"]["platform"] == "cpu"
    results = report["results"]
    assert all(r["ok"] for r in results), [r.get("error") for r in results]
    infer = {(r["dtype"], r["batch"]) for r in results if r["kind"] == "infer"}
    assert infer == {(d, b) for d in ("float32", "bfloat16") for b in (1, 2)}
    (train,) = [r for r in results if r["kind"] == "train"]
    assert train["achieved_tflops"] > 0 and 0 < train["fraction_of_floor"]
    assert train["loader"]["train_with_loader_images_per_s"] > 0
    assert set(report["peaks_tflops"]) == {"float32", "bfloat16"}


def test_dry_run_compares_with_the_reference(suite):
    comparison = suite[0]["comparison"]["32"]
    ours = next(r for r in suite[0]["results"] if r["kind"] == "infer" and r["batch"] == 1
                and r["dtype"] == "float32")
    assert comparison["inference"]["batch_1"]["ratio"] == pytest.approx(ours["images_per_s"] / 2)
    assert comparison["training"]["ours_best"]["ratio"] > 0


def test_markdown_table(suite):
    _, md = suite
    assert md.startswith("# GPU suite") and "DRY RUN" in md
    rows = [line for line in md.splitlines() if line.startswith("| infer") or
            line.startswith("| train")]
    assert len(rows) == 5
    assert "## The loader feeding the step" in md and "ours / reference at 32" in md


def test_budget_spent_skips_cases_and_says_so(tmp_path):
    proc = _run("--dry-run", "--budget-minutes", "0", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert report["results"] and all(r.get("skipped") for r in report["results"])
    assert "budget was spent" in proc.stdout
    # no reference checkout here: recorded as not run, with the reason
    assert "no reference checkout" in report["reference"]["32"]["error"]
    assert "not run (no reference checkout" in (tmp_path / "gpu_suite.md").read_text()


def test_train_for_a_budget_writes_a_loadable_sharded_generator(tmp_path):
    proc = _run("--dry-run", "--train", ROOT / "configs" / "sample.py", "--minutes", "0.05",
                "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] >= 2 and metrics["images_per_s_after_first_step"] > 0
    assert all(math.isfinite(v) for v in metrics["evaluation"].values())
    assert "eval/psnr_hole" in metrics["evaluation"]
    files = sorted((tmp_path / "run" / "generator").glob("generator_f16-*.npz"))
    assert len(files) == len(metrics["generator_files"]) > 1   # the dry run's 50 kB limit
    assert all(f.stat().st_size <= 50_000 for f in files)
    model, variables, config = checkpoint.load_generator(tmp_path / "run" / "generator")
    assert config["model"]["ngf"] == 4
    image = jnp.zeros((1, 32, 32, 3))
    out = model.apply(variables, image, jnp.ones((1, 32, 32, 1)))
    assert out.shape == (1, 32, 32, 3) and np.isfinite(np.asarray(out)).all()
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") >= 2


def test_a_bad_config_is_one_line(tmp_path):
    proc = _run("--dry-run", "--train", tmp_path / "missing.py", "--out", tmp_path / "x")
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr
