"""What the benchmark cases run: the generator, its inputs, the training config.

Every case builds its model here, from the same flags (``--ngf``, ``--num-downs``,
``--shift-layer``, ``--variant``, ``--conv-impl``), so that the figures of one run
describe one model. Inputs: uniform images in [-1, 1] with the reference's centre
hole (side/2 minus an overlap of 4 per side).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from shiftnet_jax.config import default_config
from shiftnet_jax.data import masks
from shiftnet_jax.nets.conv import IMPLS
from shiftnet_jax.nets.generator import ShiftNetGenerator


def add_model_arguments(p):
    p.add_argument("--ngf", type=int, default=64, help="generator width (D uses ndf = ngf)")
    p.add_argument("--num-downs", type=int, default=8, help="U-Net depth (8 for 256 and 512)")
    p.add_argument("--shift-layer", type=int, default=3)
    p.add_argument("--variant", default="shift",
                   help="the generator variant (shiftnet_jax.nets.shift_level.VARIANTS)")
    p.add_argument("--conv-impl", default=None,
                   choices=IMPLS,
                   help="the generator's conv_impl (shiftnet_jax.nets.conv; default: the "
                        "model's default, 'auto'); 'lax' = plain lax convolutions everywhere")


def conv_impl(args) -> str:
    """The conv_impl the generator runs with."""
    return args.conv_impl or ShiftNetGenerator.conv_impl


def make_generator(args, dtype_name: str, impl: str | None = None) -> ShiftNetGenerator:
    return ShiftNetGenerator(ngf=args.ngf, num_downs=args.num_downs,
                             shift_layer=args.shift_layer, variant=args.variant,
                             dtype=jnp.dtype(dtype_name), conv_impl=impl or conv_impl(args))


def init_generator(model, size: int):
    """The model's variables for (size, size) images (a jitted init: fast to compile)."""
    image = jnp.zeros((1, size, size, 3), jnp.float32)
    hole = jnp.zeros((1, size, size, 1), jnp.float32)
    return jax.jit(model.init)(jax.random.key(0, impl="rbg"), image, hole)


def centre_holes(batch: int, size: int) -> np.ndarray:
    """(batch, size, size, 1) float32: the reference's centre hole (overlap 4 from 32 up)."""
    hole = masks.center_mask(size, overlap=4 if size >= 32 else 0)
    return np.broadcast_to(hole[None], (batch, size, size, 1)).astype(np.float32)


def random_images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """(batch, size, size, 3) float32 uniform in [-1, 1]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)


def train_config(args, size: int, dtype_name: str, batch: int):
    """``default_config()`` (the paper's recipe) with the benchmark's model, batch and
    dtype; the ``sample`` source with crops of ``size`` and the centre hole."""
    c = default_config()
    c.model.ngf = args.ngf
    c.model.num_downs = args.num_downs
    c.model.shift_layer = args.shift_layer
    c.model.variant = args.variant
    c.discriminator.ndf = args.ngf
    c.model.conv_impl = conv_impl(args)
    c.batch_size = batch
    c.compute_dtype = dtype_name
    c.data.source = "sample"
    c.data.crop_size = size
    c.data.load_size = max(size, round(size * 350 / 256))
    c.data.mask = "center:overlap=4" if size >= 32 else "center"
    return c
