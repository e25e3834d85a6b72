"""The discriminators: PatchGAN (the official ``basic``) and ``densenet``.

:class:`Discriminator` is pix2pix's PatchGAN with ``n_layers=3`` (the official
``--which_model_netD basic``), spectral norm on every conv by default.

:class:`DenseNetDiscriminator` is the official ``--which_model_netD densenet``.

The official ``DenseNetDiscrimator`` is DenseNet-121's feature extractor
(torchvision's layout: a 7x7/2 conv, BatchNorm, ReLU, 3x3/2 max pool; dense
blocks of BN-ReLU-conv1x1-BN-ReLU-conv3x3 layers whose outputs are concatenated;
BN-ReLU-conv1x1-avgpool transitions; a final BatchNorm) followed by a 3x3 conv
to 256 channels (no padding), spectral norm on every conv, BatchNorm whatever
``--norm`` says. Its output, (B, H/32 - 2, W/32 - 2, 256) logits, goes to the
same GAN losses as the PatchGAN's. It asks torchvision for ImageNet weights
(a download); here it starts from random weights, or from a state dict of the
official class (:func:`from_torch_state_dict`). NHWC.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from shiftnet_jax.nets.layers import SpectralNorm, conv_init, make_norm, wide


class Discriminator(nn.Module):
    """PatchGAN discriminator (pix2pix ``n_layers=3``): (B, H, W, 3) -> (B, H/8-2, W/8-2, 1) logits."""

    ndf: int = 64
    n_layers: int = 3
    norm: str = "instance"
    spectral_norm: bool = True
    dtype: Any = jnp.float32
    # PyTorch's spectral norm (layers.SpectralNorm: stored u and v, no power iteration in
    # eval mode) instead of Flax's; the official mode uses it, so that its state dicts map.
    torch_spectral_norm: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        bias = self.norm == "instance"

        def conv(features, stride, use_bias, name):
            layer = nn.Conv(features, (4, 4), strides=(stride, stride),
                            padding=((1, 1), (1, 1)), use_bias=use_bias, dtype=self.dtype,
                            kernel_init=conv_init, name=name)
            if self.spectral_norm and self.torch_spectral_norm:
                return lambda h: SpectralNorm(layer, name=f"{name}_sn")(h, train)
            if self.spectral_norm:
                sn = nn.SpectralNorm(layer, name=f"{name}_sn")
                return lambda h: sn(h, update_stats=train)
            return layer

        x = nn.leaky_relu(conv(self.ndf, 2, True, "conv_0")(x.astype(self.dtype)), 0.2)
        for i in range(1, self.n_layers + 1):
            stride = 2 if i < self.n_layers else 1
            x = conv(self.ndf * min(2 ** i, 8), stride, bias, f"conv_{i}")(x)
            x = make_norm(self.norm, train, self.dtype, f"norm_{i}")(x)
            x = nn.leaky_relu(x, 0.2)
        x = conv(1, 1, True, f"conv_{self.n_layers + 1}")(x)
        return x.astype(wide(self.dtype))


class DenseNetDiscriminator(nn.Module):
    """(B, H, W, 3) -> (B, H/32 - 2, W/32 - 2, 256) logits (H, W >= 96)."""

    growth_rate: int = 32
    block_config: tuple = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    spectral_norm: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        def conv(features, size, stride, pad, name, bias=False):
            layer = nn.Conv(features, (size, size), strides=(stride, stride),
                            padding=((pad, pad), (pad, pad)), use_bias=bias, dtype=self.dtype,
                            kernel_init=nn.initializers.kaiming_normal(), name=name)
            if self.spectral_norm:
                return lambda h: SpectralNorm(layer, name=f"{name}_sn")(h, train)
            return layer

        def norm(name):   # PyTorch's BatchNorm2d (momentum 0.1, eps 1e-5)
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                use_fast_variance=False, dtype=self.dtype, name=name)

        x = conv(self.num_init_features, 7, 2, 3, "conv0")(x.astype(self.dtype))
        x = nn.relu(norm("norm0")(x))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        features = self.num_init_features
        for b, layers in enumerate(self.block_config, start=1):
            for i in range(1, layers + 1):
                name = f"block{b}_layer{i}"
                y = conv(self.bn_size * self.growth_rate, 1, 1, 0, f"{name}_conv1")(
                    nn.relu(norm(f"{name}_norm1")(x)))
                y = conv(self.growth_rate, 3, 1, 1, f"{name}_conv2")(
                    nn.relu(norm(f"{name}_norm2")(y)))
                x = jnp.concatenate([x, y], axis=-1)
            features += layers * self.growth_rate
            if b < len(self.block_config):
                features //= 2
                x = conv(features, 1, 1, 0, f"transition{b}_conv")(
                    nn.relu(norm(f"transition{b}_norm")(x)))
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = norm("norm5")(x)            # no ReLU after it, as the official features end
        x = conv(256, 3, 1, 0, "conv_last", bias=True)(x)
        return x.astype(jnp.float32)
