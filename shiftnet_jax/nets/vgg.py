"""The official code's VGG16 style and content losses (``util.VGG16FeatureExtractor``).

Features are taken after the first three pooling layers of torchvision's VGG16
(``features[:5]``, ``[5:10]``, ``[10:17]``: pool1, pool2, pool3), from the image
as the generator outputs it, in [-1, 1] (the official code does not apply
ImageNet's normalisation). Then, summed over the three levels:

* style: mean squared error of the Gram matrices ``F F^T / (C H W)``;
* content: mean squared error of the features.

The weights are a torchvision ``vgg16`` state dict the user supplies
(``features.N.weight`` / ``.bias``), read without torch by
:func:`shiftnet_jax.torchfile.state_dicts.load_vgg16`: nothing is downloaded.
Any channel widths load (the tests use a narrow VGG16 of the same layout).
NHWC throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from shiftnet_jax.nets.layers import wide


def features(params, x):
    """(B, H, W, 3) -> [pool1, pool2, pool3] maps (B, H/2**k, W/2**k, C_k)."""
    out = []
    x = x.astype(wide(x.dtype))
    for block in params:
        for kernel, bias in block:
            x = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                             precision=jax.lax.Precision.HIGHEST)
            x = jax.nn.relu(x + bias)
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        out.append(x)
    return out


def gram(f):
    """(B, H, W, C) -> (B, C, C) Gram matrix divided by C * H * W."""
    b, h, w, c = f.shape
    f = f.reshape(b, h * w, c)
    return jnp.einsum("bnc,bnd->bcd", f, f, precision=jax.lax.Precision.HIGHEST) / (c * h * w)


def style_and_content(params, output, target):
    """(style, content) losses of ``output`` against ``target`` (B, H, W, 3), scalars.
    No gradient flows into ``target``."""
    fake = features(params, output)
    real = features(params, jax.lax.stop_gradient(target))
    style = sum(jnp.mean(jnp.square(gram(f) - gram(r))) for f, r in zip(fake, real))
    content = sum(jnp.mean(jnp.square(f - r)) for f, r in zip(fake, real))
    return style, content
