"""Any folder of images (recursive; jpg, png, bmp, webp, tif).

With DIR/train and DIR/test subfolders those are the splits; otherwise every image
is used for training and evaluation.
Run: python train.py --config configs/folder.py --config.data.dir=/path/to/images
"""

from shiftnet_jax.config import default_config


def get_config():
    c = default_config()
    c.name = "folder"
    c.data.source = "folder"
    c.data.num_workers = 4
    return c
