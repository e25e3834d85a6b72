"""The built-in default: a few minutes on a 2-core CPU, no download.

Trains a small Shift-Net (64x64 crops, shift at 8x8) on the real photographs that
ship inside scikit-image, with a mixture of holes; writes checkpoints, sample grids,
TensorBoard and JSONL metrics, and a final evaluation to runs/sample/.
"""

from shiftnet_jax.config import default_config


def get_config():
    c = default_config()
    c.name = "sample"
    c.model.ngf = 16
    c.model.num_downs = 6
    c.discriminator.ndf = 16
    c.data.source = "sample"
    c.data.load_size = 96
    c.data.crop_size = 64
    c.data.mask = "mix"
    c.batch_size = 8
    c.num_steps = 300
    c.log_every = 10
    c.sample_every = 100
    c.checkpoint_every = 100
    c.eval_batches = 2
    return c
