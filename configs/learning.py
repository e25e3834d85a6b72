"""A learning run anyone can repeat on a CPU: held-out regions of real photographs.

Every photo is split into bands (shiftnet_jax.data.sources.RegionSource): training
crops come from the left 65 % of each photo at random scales, test tiles from
its right 30 %. Photos: scikit-image's colour photographs, plus
../shared/data/photos when it is there, else data/photos (written from Debian packages by
`python tools/get_photos.py`), or any folders: --config.data.dir=builtin,DIR.
The recipe (width, crops, losses, schedule) was chosen by measuring; see
RESULTS.md. The paper's settings stay the defaults of places6/paris.

Run: python train.py --config configs/learning.py   (see experiments/learning.py
for the full experiment: baselines, ablation, curves, RESULTS.md)
"""

import os

from shiftnet_jax.config import default_config

SHARED_PHOTOS = os.path.join("..", "shared", "data", "photos")
LOCAL_PHOTOS = os.path.join("data", "photos")  # python tools/get_photos.py writes them here
PHOTOS = next((d for d in (SHARED_PHOTOS, LOCAL_PHOTOS) if os.path.isdir(d)), None)


def get_config():
    c = default_config()
    c.name = "learning"
    c.model.ngf = 32
    c.model.num_downs = 6          # 64x64 crops down to 1x1; shift at 8x8
    c.discriminator.ndf = 16
    c.data.source = "regions"
    c.data.dir = "builtin" + ("," + PHOTOS if PHOTOS else "")
    c.data.load_size = 64
    c.data.crop_size = 64
    c.data.scale_range = (1.0, 3.0)
    c.data.mask = "mix:center=2,strokes=1,rect=1"
    c.data.num_workers = 2
    c.loss.adversarial = 0.0       # reconstruction only: the targets are PSNR/SSIM (and D costs ~40 %)
    c.optim.lr = 1e-3
    c.optim.schedule = "cosine"
    c.batch_size = 16
    c.num_steps = 6000
    c.log_every = 50
    c.sample_every = 1000
    c.checkpoint_every = 1000
    c.eval_every = 500
    c.eval_batches = 5
    return c
