"""The paper's Places setting: places365_small, six scenes, 30 epochs.

Prepare the data once (ArrayRecord, so no TensorFlow is needed to read it):
    tfds build places365_small --file_format=array_record
"""

from shiftnet_jax.config import default_config


def get_config():
    c = default_config()
    c.name = "places6"
    c.data.source = "tfds"
    c.data.name = "places365_small"
    c.data.classes = ("butte", "canyon", "field", "synagogue", "tundra", "valley")
    c.data.eval_split = "validation"
    c.data.num_workers = 8
    return c
