"""Evaluation: deterministic numbers, reports, baselines, per-band results, CLI errors."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import key
from PIL import Image

from shiftnet_jax import checkpoint
from shiftnet_jax.inference import evaluate
from shiftnet_jax.nets.generator import ShiftNetGenerator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny checkpoint whose config reads the built-in sample photos at 64x64, and a
    folder of 6 images plus one unreadable file."""
    root = tmp_path_factory.mktemp("eval")
    model = ShiftNetGenerator(ngf=4, num_downs=5)
    variables = jax.jit(model.init)(key(), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 64, 64, 1)))
    checkpoint.export_generator(root / "ckpt", {"ngf": 4, "num_downs": 5}, variables, config={
        "data": {"source": "sample", "eval_split": "test", "crop_size": 64, "load_size": 72}})
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    for i in range(6):
        y, x = np.mgrid[0:70, 0:80] / 80
        base = np.stack([np.sin(5 * x + i), np.cos(4 * y - i), np.sin(3 * (x + y))], -1) * 90 + 128
        image = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i}.png")
    (root / "images" / "broken.png").write_text("not an image")
    return root


def test_same_numbers_twice_reports_baselines_and_bands(setup):
    kwargs = dict(data=setup / "images", masks="strokes", batch_size=4, seed=3, samples=2, progress=False)
    first = evaluate.evaluate(setup / "ckpt", out_dir=setup / "a", **kwargs)
    second = evaluate.evaluate(setup / "ckpt", out_dir=setup / "b", **kwargs)
    assert first["overall"] == second["overall"] and first["bands"] == second["bands"]
    assert first["num_images"] == 6 and first["skipped"] == {"empty_hole": 0, "unreadable": 1}
    assert any("broken.png" in w for w in first["warnings"])
    for method in evaluate.COMPARED:
        for region in evaluate.REGIONS:
            values = first["overall"][method][region]
            assert set(values) == {"psnr", "ssim", "l1", "l2"}
            assert all(np.isfinite(v) for v in values.values())
    # Composited results: the whole-image error is the hole error diluted by the known pixels.
    for method in evaluate.COMPARED:
        assert first["overall"][method]["whole"]["l1"] < first["overall"][method]["hole"]["l1"]
    assert first["overall"]["telea"] != first["overall"]["mean_fill"]
    # Per-band results: every image lands in one band, labels in 10 % steps.
    bands = first["bands"]
    assert sum(b["n"] for b in bands.values()) == 6 and len(bands) >= 2
    for label, band in bands.items():
        lo, hi = (int(v) for v in label.rstrip("%").split("-"))
        assert hi == lo + 10 and lo / 100 <= band["hole_ratio"] < hi / 100
        assert set(band["results"]) == set(evaluate.COMPARED)
    # Files: JSON equal to the returned report, Markdown with the table, side-by-sides.
    out = setup / "a"
    saved = json.loads((out / "report.json").read_text())
    assert saved["overall"] == first["overall"] and saved["samples"] == ["sample_000.png", "sample_001.png"]
    md = (out / "report.md").read_text()
    assert "| all | 6 | shiftnet |" in md and "navier_stokes" in md and "![sample_000.png]" in md
    panel = np.asarray(Image.open(out / "sample_000.png"))
    assert panel.shape[1] == 7 * 64 + 6 * 2  # input, ours, 4 baselines, truth
    assert "PSNR hole" in evaluate.table(first).splitlines()[0]


def test_config_test_split_limit_and_mask_folder(setup):
    pytest.importorskip("skimage")  # the "sample" source
    (setup / "masks").mkdir(exist_ok=True)
    hole = np.zeros((64, 64), np.uint8)
    hole[10:40, 20:50] = 255
    Image.fromarray(hole).save(setup / "masks" / "m.png")
    report = evaluate.evaluate(setup / "ckpt", masks=str(setup / "masks"), limit=1, progress=False)
    assert report["num_images"] == 1 and report["data"] == "sample test"
    assert list(report["bands"]) == ["20-30%"]  # 900 / 4096 = 22 %
    assert (setup / "ckpt" / "eval" / "report.json").is_file()


def test_baselines_fill_only_the_hole():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    hole = np.zeros((2, 32, 32), bool)
    hole[0, 8:20, 8:20] = True
    hole[1] = True  # nothing known: mean fill is mid-grey
    out = evaluate.baselines(image, hole)
    for filled in out.values():
        assert filled.shape == image.shape and filled.dtype == np.uint8
        np.testing.assert_array_equal(filled[0][~hole[0]], image[0][~hole[0]])
    mean = np.rint(image[0][~hole[0]].mean(0))
    np.testing.assert_array_equal(out["mean_fill"][0][hole[0]], np.broadcast_to(mean, (144, 3)))
    assert (out["mean_fill"][1] == 128).all()


def test_bad_arguments_are_one_line_errors(setup, tmp_path):
    with pytest.raises(ValueError, match="unknown mask kind"):
        evaluate.evaluate(setup / "ckpt", masks="no-such-kind", out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="multiple of 2\\*\\*num_downs"):
        evaluate.evaluate(setup / "ckpt", size=48, out_dir=tmp_path, progress=False)
    r = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--ckpt", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "not a checkpoint directory" in r.stderr


def test_cli_prints_the_table(setup, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("eval_cli", ROOT / "eval.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    code = cli.main(["--ckpt", str(setup / "ckpt"), "--data", str(setup / "images"), "--masks", "rect",
                     "--out", str(tmp_path), "--limit", "3", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.splitlines()[0].split()[:4] == ["holes", "n", "method", "PSNR"]
    assert "mean_fill" in captured.out and (tmp_path / "report.md").is_file()
