"""Learning, asserted: a few hundred steps of the learning config (held-out regions of
real photographs) fill held-out holes better than the empty hole and than mean fill."""

import json
from pathlib import Path

from shiftnet_jax import config as configlib
from shiftnet_jax.data import sources
from shiftnet_jax.inference import evaluate
from shiftnet_jax.train.loop import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]


def test_a_few_hundred_steps_beat_the_empty_hole_and_mean_fill_on_held_out_regions(tmp_path):
    config = configlib.load_config(ROOT / "configs" / "learning.py")
    configlib.apply_overrides(config, [
        ("data.dir", "builtin"), ("model.ngf", "8"), ("batch_size", "8"), ("num_steps", "300"),
        ("eval_every", "0"), ("eval_batches", "8"), ("sample_every", "0"), ("checkpoint_every", "300"),
        ("log_every", "50"), ("data.mask", "center")])
    configlib.validate(config)
    summary = train_and_evaluate(config, tmp_path)
    # The final evaluation ran on the held-out test tiles only.
    held_out = sources.make_source(config.data, train=False)
    assert all("test tile" in held_out.describe(i) for i in range(len(held_out)))
    assert summary["eval/l1_hole"] < 0.5 * summary["eval/input_l1_hole"], summary
    report = evaluate.evaluate(tmp_path, masks="center", out_dir=tmp_path / "eval", samples=0,
                               progress=False)
    hole = {m: report["overall"][m]["hole"] for m in ("shiftnet", "mean_fill")}
    assert report["num_images"] == len(held_out)
    assert hole["shiftnet"]["l1"] < hole["mean_fill"]["l1"], json.dumps(hole)
