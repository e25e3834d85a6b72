"""The bundled model's recipe: the learning run at 128x128, shift at 16x16.

Same photos and held-out split as configs/learning.py (training crops from the
left 65 % of each photo at random scales, test tiles from its right 30 %), at
twice the side: one more down level (num_downs 7: 128 -> 1), so the shift layer
(L-3) runs on a 16x16 map as the paper's does on 32x32 at 256. The run that made
``shiftnet_jax/pretrained/demo`` is in RESULTS.md: two legs in one workdir,

    python train.py --config configs/bundled.py --workdir runs/bundled
    python train.py --config configs/bundled.py --workdir runs/bundled \
        --config.num_steps=14000 --config.data.mask=mix:center=1,strokes=1,rect=1 \
        --config.loss.hole_l1=1

The second resumes the first at its step 3,300 with the cosine schedule recomputed
for 14,000 steps (a warm restart at lr 8.7e-4), thin strokes drawn as often as centre
holes (the first leg was 3.9 dB below Telea on them), and the hole's own L1 (the
official mask_weight_G, at a quarter of its weight) beside the whole-image L1.
"""

from pathlib import Path

from shiftnet_jax.config import load_config


def get_config():
    c = load_config(Path(__file__).with_name("learning.py"))
    c.name = "bundled"
    c.model.num_downs = 7          # 128x128 crops down to 1x1; shift at 16x16
    c.data.load_size = 128
    c.data.crop_size = 128
    c.batch_size = 8
    c.num_steps = 3300
    c.log_every = 100
    c.sample_every = 0
    c.checkpoint_every = 1000
    c.eval_every = 0
    return c
