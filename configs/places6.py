"""The paper's Places setting: Places365-Standard small images, six scenes, 30 epochs.

Two ways to the data (docs/evaluation.md, "Places"):

* Without TensorFlow: download places365standard_easyformat.tar (~24 GB) from
  places2.csail.mit.edu, extract it, and point the folder source at it:
    python train.py --config configs/places6.py --config.data.source=places_folder \
        --config.data.dir=/data/places365_standard
* TFDS (the default here): build the ArrayRecord files once, which needs TensorFlow
  for that one build (pip install tensorflow-cpu; TFDS downloads the same ~24 GB):
    tfds build places365_small --file_format=array_record
  Training then reads them without TensorFlow.
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
