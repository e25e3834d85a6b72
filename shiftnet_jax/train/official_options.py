"""The official code's training options (``options/*_options.py``), by their official names.

:data:`DEFAULTS` holds the defaults of every option the official training step reads
(github.com/Zhaoyi-Yan/Shift-Net_pytorch, a353431); :func:`resolve` fills a partial dict
with them and checks it. ``beta2`` is not an official option: the official code
hard-codes Adam's β2 (0.9 for wgan_gp, else 0.999) and forces β1 = 0 for wgan_gp;
``None`` here means exactly that. ``constrain`` is accepted and, as in the official
code, never read: the guidance loss is always MSE.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from shiftnet_jax.nets.shift_level import OFFICIAL_TO_VARIANT

DEFAULTS = MappingProxyType(dict(
    # networks
    which_model_netG="unet_shift_triple", which_model_netD="basic", n_layers_D=3,
    ngf=64, ndf=64, norm="instance", use_spectral_norm_D=1, use_spectral_norm_G=0,
    add_mask2input=1, input_nc=3, output_nc=3, fineSize=256,
    triple_weight=1.0, shift_sz=1, stride=1, mask_thred=1, fuse=0,
    init_type="normal", init_gain=0.02,
    # masks
    mask_type="center", mask_sub_type="island", overlap=4, offline_loading_mask=0,
    # losses
    gan_type="vanilla", lambda_A=100, gan_weight=0.2, mask_weight_G=400.0, discounting=1,
    style_weight=10.0, content_weight=1.0, tv_weight=0.0, gp_lambda=10.0,
    strength=1.0, skip=0, constrain="MSE",
    # optimiser and learning-rate policy
    lr=0.0002, beta1=0.5, beta2=None, lr_policy="lambda", niter=30, niter_decay=0,
    lr_decay_iters=50, epoch_count=1, batchSize=1,
))

# GAN losses whose D and G sides the official ShiftNetModel defines (its re_avg_gan
# has no discriminator loss: backward_D leaves loss_D unset and crashes).
GAN_TYPES = ("vanilla", "lsgan", "wgan_gp", "re_s_gan")
NETG = ("unet_shift_triple", "res_unet_shift_triple", "patch_soft_unet_shift_triple",
        "res_patch_soft_unet_shift_triple")
NETD = ("basic", "n_layers")
LR_POLICIES = ("lambda", "step", "plateau", "cosine")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def _choice(opts, key, choices, why=""):
    if opts[key] not in choices:
        raise ValueError(f"option {key}={opts[key]!r} is not supported{why}; "
                         f"one of {', '.join(map(str, choices))}")


def resolve(options: Mapping | None = None) -> dict:
    """``options`` (official names) over :data:`DEFAULTS`; ValueError naming the first bad one."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown official option(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(DEFAULTS))})")
    opts = {**DEFAULTS, **options}
    _choice(opts, "which_model_netG", NETG,
            " here (face_unet_shift_triple: its training step, with the flipped pass, is not "
            "reproduced yet; its forward is: convert --compat official)")
    _choice(opts, "which_model_netD", NETD, " here (densenet: not reproduced yet)")
    _choice(opts, "gan_type", GAN_TYPES, " by the official ShiftNetModel")
    _choice(opts, "norm", ("instance", "batch"))
    _choice(opts, "mask_type", ("center", "random"))
    _choice(opts, "mask_sub_type", ("island", "rect", "fractal"))
    _choice(opts, "lr_policy", LR_POLICIES)
    _choice(opts, "init_type", INIT_TYPES)
    if opts["use_spectral_norm_G"]:
        raise ValueError("option use_spectral_norm_G=1 is not supported here yet")
    if opts["offline_loading_mask"]:   # the official set_input then switches to island masks
        opts["mask_type"], opts["mask_sub_type"] = "random", "island"
    if opts["overlap"] < 0 or opts["fineSize"] // 2 - 2 * opts["overlap"] < 1:
        raise ValueError(f"option overlap={opts['overlap']} leaves no hole crop at "
                         f"fineSize {opts['fineSize']}")
    return opts


def variant(opts) -> str:
    """Our ``ShiftNetGenerator.variant`` for ``which_model_netG``."""
    return OFFICIAL_TO_VARIANT[opts["which_model_netG"]]


def adam_betas(opts) -> tuple[float, float]:
    """(β1, β2) as ``ShiftNetModel.initialize`` sets them."""
    if opts["gan_type"] == "wgan_gp":
        return 0.0, 0.9 if opts["beta2"] is None else float(opts["beta2"])
    return float(opts["beta1"]), 0.999 if opts["beta2"] is None else float(opts["beta2"])


def square_crop(opts) -> bool:
    """Whether D, the discounted L1 and VGG see only the hole crop (centre or rect holes)."""
    return opts["mask_type"] == "center" or opts["mask_sub_type"] == "rect"


def crop_size(opts) -> int:
    """The side of the hole crop: ``fineSize // 2 - 2 * overlap`` (120 at 256)."""
    return opts["fineSize"] // 2 - 2 * opts["overlap"]


def centre_top_left(opts) -> int:
    """Row (= column) of the centre hole's top left: ``fineSize / 4 + overlap``."""
    return opts["fineSize"] // 4 + opts["overlap"]


def discount_template(opts):
    """The official ``spatial_discounting_mask`` (crop x crop, float32), off by one as
    it is: ``max(0.9**min(i, n - i), 0.9**min(j, n - j))`` for i, j in 0 .. n-1 (1 on
    the top and left edges, 0.9 on the bottom and right ones); ones without discounting."""
    n = crop_size(opts)
    if not opts["discounting"]:
        return np.ones((n, n), np.float32)
    i = np.arange(n)
    edge = np.minimum(i, n - i).astype(np.float64)
    return np.maximum(0.9 ** edge[:, None], 0.9 ** edge[None, :]).astype(np.float32)
