"""The bundled model's second leg: configs/bundled.py trained on, with more strokes.

Resumes the first leg's workdir at its step 3,300 and trains to 14,000 steps: the
cosine schedule is recomputed for 14,000 steps (a warm restart at lr 8.7e-4), thin
strokes are drawn as often as centre holes (the first leg was 3.9 dB below Telea on
them), and the hole's own L1 (the official mask_weight_G, at a quarter of its weight)
joins the whole-image L1. The run that made ``shiftnet_jax/pretrained/demo`` is in
RESULTS.md.

Run, after the first leg: python train.py --config configs/bundled_long.py --workdir runs/bundled
"""

from pathlib import Path

from shiftnet_jax.config import load_config


def get_config():
    c = load_config(Path(__file__).with_name("bundled.py"))
    c.data.mask = "mix:center=1,strokes=1,rect=1"
    c.loss.hole_l1 = 1.0
    c.num_steps = 14000
    return c
