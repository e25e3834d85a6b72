"""The official ``densenet`` discriminator (``--which_model_netD densenet``).

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
import numpy as np

from shiftnet_jax.spectral import SpectralNorm


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


def from_torch_state_dict(state):
    """An official ``DenseNetDiscrimator`` state dict (``model.features.*``,
    ``model.conv_last.*``) -> (kwargs, variables) of :class:`DenseNetDiscriminator`."""
    from shiftnet_jax.convert import _spectral_v, _weight

    state = {k[len("model."):] if k.startswith("model.") else k: np.asarray(v)
             for k, v in state.items()}
    params, stats = {}, {}

    def put_conv(ours, prefix, bias=False):
        weight = _weight(state, prefix)
        w = state[weight]
        params[ours] = {"kernel": np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))}
        if bias:
            params[ours]["bias"] = state[prefix + "bias"]
        if weight.endswith("_orig") and prefix + "weight_u" in state:
            stats[f"{ours}_sn"] = {"u": state[prefix + "weight_u"],
                                   "v": _spectral_v(state[prefix + "weight_v"], w.shape, False)}
        return w

    def put_norm(ours, prefix):
        params[ours] = {"scale": state[prefix + "weight"], "bias": state[prefix + "bias"]}
        if prefix + "running_mean" in state:
            stats[ours] = {"mean": state[prefix + "running_mean"],
                           "var": state[prefix + "running_var"]}

    first = put_conv("conv0", "features.conv0.")
    put_norm("norm0", "features.norm0.")
    blocks = []
    b = 1
    while f"features.denseblock{b}.denselayer1.norm1.weight" in state:
        i = 1
        while f"features.denseblock{b}.denselayer{i}.norm1.weight" in state:
            p, name = f"features.denseblock{b}.denselayer{i}.", f"block{b}_layer{i}"
            put_norm(f"{name}_norm1", p + "norm1.")
            bottleneck = put_conv(f"{name}_conv1", p + "conv1.")
            put_norm(f"{name}_norm2", p + "norm2.")
            growth = put_conv(f"{name}_conv2", p + "conv2.").shape[0]
            i += 1
        blocks.append(i - 1)
        if f"features.transition{b}.norm.weight" in state:
            put_norm(f"transition{b}_norm", f"features.transition{b}.norm.")
            put_conv(f"transition{b}_conv", f"features.transition{b}.conv.")
        b += 1
    put_norm("norm5", "features.norm5.")
    put_conv("conv_last", "conv_last.", bias=True)
    spectral = any(k.endswith("weight_orig") for k in state)
    kwargs = dict(growth_rate=int(growth), block_config=tuple(blocks),
                  num_init_features=int(first.shape[0]),
                  bn_size=int(bottleneck.shape[0]) // int(growth), spectral_norm=spectral)
    return kwargs, {"params": params, "batch_stats": stats}
