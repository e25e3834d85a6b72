"""The one place that loads the official PyTorch Shift-Net code (Zhaoyi-Yan/Shift-Net_pytorch).

Nothing of it is vendored: :func:`load_reference` imports it at run time from a
checkout outside this repository (``ref/Shift-Net_pytorch`` is git-ignored; the
fixtures were made at commit a353431). No file of it is modified and none of its
functions is replaced; the only run-time changes:

* stand-in modules for its unused top-level imports (torchvision, scikit-image,
  Pillow) when they are not installed;
* ``util.util.models.vgg16`` is :func:`random_vgg16`: VGG16's layer layout with
  random weights, so that nothing downloads ImageNet weights.

Used by ``benchmarks/reference_torch.py`` (timing) and ``tools/make_*_fixtures.py``
(the parity fixtures). Needs torch.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types

import torch.nn as nn


def random_vgg16(pretrained=False, **_):
    """Standard VGG16 (configuration D); random weights instead of ImageNet ones."""
    layers, c_in = [], 3
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(c_in, v, kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True)]
            c_in = v
    return types.SimpleNamespace(features=nn.Sequential(*layers))


def install_stand_ins():
    """Modules the reference imports at top level but that we do not need."""
    def stub(name, **attrs):
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    if importlib.util.find_spec("torchvision") is None:
        tv = stub("torchvision")
        tv.models = stub("torchvision.models", vgg16=random_vgg16)
        tv.transforms = stub("torchvision.transforms")
    if importlib.util.find_spec("skimage") is None:
        stub("skimage").transform = stub("skimage.transform", resize=None)
    if importlib.util.find_spec("PIL") is None:
        stub("PIL").Image = stub("PIL.Image")


def load_reference(ref):
    """Import the official code from the checkout `ref`: (networks, ShiftNetModel,
    TrainOptions, commit or None)."""
    ref = os.path.abspath(ref)
    sys.path.insert(0, ref)
    install_stand_ins()
    import util.util as rutil
    rutil.models = types.SimpleNamespace(vgg16=random_vgg16)  # never download VGG16
    from models import networks
    from models.shift_net.shiftnet_model import ShiftNetModel
    from options.train_options import TrainOptions
    try:
        commit = subprocess.run(["git", "-C", ref, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return networks, ShiftNetModel, TrainOptions, commit
