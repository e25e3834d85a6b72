"""Paris StreetView (given on request by its authors; not downloadable).

Expected layout (as the authors distribute it):
    DIR/paris_train_original/*.png   14,900 training images
    DIR/paris_eval_gt/*.png          100 test images
Run: python train.py --config configs/paris.py --config.data.dir=/path/to/paris
"""

from shiftnet_jax.config import default_config


def get_config():
    c = default_config()
    c.name = "paris"
    c.data.source = "paris"
    c.data.num_workers = 8
    return c
