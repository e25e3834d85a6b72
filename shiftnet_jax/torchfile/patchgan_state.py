"""The official PatchGAN discriminator's state dict <-> our :class:`Discriminator` variables.

The official ``NLayerDiscriminator`` (``--which_model_netD basic``, or ``n_layers``
with ``--n_layers_D``) is one ``nn.Sequential`` named ``model``::

    model.0                  conv_0 (ndf, 4x4/2), LeakyReLU at .1
    model.{3i-1}, .{3i}      conv_i, norm_i for i = 1 .. n_layers (LeakyReLU at 3i+1)
    model.{3 n_layers + 2}   the last conv (1 channel); a Sigmoid after it for vanilla GANs

With spectral norm (``--use_spectral_norm_D 1``, the default) a conv stores
``weight_orig``, ``weight_u`` (O,) and ``weight_v`` (I kH kW,) instead of ``weight``;
here they map to ``params/conv_i/kernel`` and ``batch_stats/conv_i_sn/{u, v}`` of a
``Discriminator(torch_spectral_norm=True)``. Convs before a BatchNorm have no bias.
BatchNorm's ``running_mean`` / ``running_var`` map to ``batch_stats/norm_i/{mean, var}``
(``num_batches_tracked`` is dropped, and written back by :func:`patchgan_to_torch_state_dict`
when given).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from shiftnet_jax.torchfile.state_dicts import _conv, _float_dtype, _spectral_v, _weight


def _conv_index(i: int, n_layers: int) -> int:
    """Sequential index of conv_i (0 .. n_layers + 1)."""
    return 0 if i == 0 else 3 * i - 1 if i <= n_layers else 3 * n_layers + 2


def _strip(state):
    return {k[len("module."):] if k.startswith("module.") else k: np.asarray(v)
            for k, v in state.items()}


def _n_layers(state) -> int:
    """The number of strided/normalised levels: convs at 0, 2, 5, ... then the last one."""
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("model.")})
    convs = [i for i in indices if any(k.startswith(f"model.{i}.weight") for k in state)
             and state[_weight(state, f"model.{i}.")].ndim == 4]
    if not convs or convs[0] != 0:
        raise ValueError("not an official PatchGAN state dict: no conv at 'model.0'")
    n_layers = len(convs) - 2
    if n_layers < 1 or convs != [_conv_index(i, n_layers) for i in range(n_layers + 2)]:
        raise ValueError(f"not an official PatchGAN state dict: convs at {convs}")
    return n_layers


def patchgan_from_torch_state_dict(state: Mapping[str, np.ndarray]):
    """An official ``NLayerDiscriminator`` state dict -> ``(kwargs, variables)``.

    ``kwargs`` are :class:`~shiftnet_jax.nets.discriminators.Discriminator` arguments
    (ndf, n_layers, norm, spectral_norm, torch_spectral_norm=True); ``variables`` is
    ``{"params": ..., "batch_stats": ...}`` (spectral-norm vectors, BatchNorm statistics).
    A mapping of parameters only (e.g. their gradients) maps the same way.
    """
    state = _strip(state)
    for name, value in state.items():
        if not name.endswith("num_batches_tracked") and not _float_dtype(value.dtype):
            raise ValueError(f"{name!r} has dtype {value.dtype}; expected floating point")
    n_layers = _n_layers(state)
    batch = any(k.endswith("running_mean") for k in state) or \
        f"model.{_conv_index(1, n_layers)}.bias" not in state
    spectral = any(k.endswith("weight_orig") for k in state)
    params, stats, used = {}, {}, set()

    def take(name):
        used.add(name)
        return state[name].astype(np.float32)

    for i in range(n_layers + 2):
        prefix = f"model.{_conv_index(i, n_layers)}."
        weight = _weight(state, prefix)
        params[f"conv_{i}"] = {"kernel": _conv(take(weight))}
        if prefix + "bias" in state:
            params[f"conv_{i}"]["bias"] = take(prefix + "bias")
        if weight.endswith("_orig") and prefix + "weight_u" in state:
            stats[f"conv_{i}_sn"] = {"u": take(prefix + "weight_u"),
                                     "v": _spectral_v(take(prefix + "weight_v"),
                                                      state[weight].shape, transposed=False)}
        if 1 <= i <= n_layers:
            norm = f"model.{_conv_index(i, n_layers) + 1}."
            params[f"norm_{i}"] = {"scale": take(norm + "weight"), "bias": take(norm + "bias")}
            if norm + "running_mean" in state:
                stats[f"norm_{i}"] = {"mean": take(norm + "running_mean"),
                                      "var": take(norm + "running_var")}
    unknown = sorted(k for k in set(state) - used if not k.endswith("num_batches_tracked"))
    if unknown:
        raise ValueError(f"unexpected entries in the PatchGAN state dict: {', '.join(unknown[:5])}")
    kwargs = dict(ndf=int(params["conv_0"]["kernel"].shape[-1]), n_layers=n_layers,
                  norm="batch" if batch else "instance", spectral_norm=spectral,
                  torch_spectral_norm=True)
    return kwargs, {"params": params, "batch_stats": stats}


def _spectral_v_back(v, kernel_shape):
    """Our ``v`` (kH kW I) -> PyTorch's order (I kH kW) for a conv kernel (kH, kW, I, O)."""
    kh, kw, i, _ = kernel_shape
    return np.ascontiguousarray(np.asarray(v).reshape(kh, kw, i).transpose(2, 0, 1)).reshape(-1)


def patchgan_to_torch_state_dict(kwargs, variables, num_batches_tracked: int | None = None):
    """The inverse of :func:`patchgan_from_torch_state_dict`: official names and layouts.

    ``num_batches_tracked``: BatchNorm's call counter to write (int64), if any.
    """
    n_layers = kwargs["n_layers"]
    params, stats = variables["params"], variables.get("batch_stats", {})
    state = {}
    for i in range(n_layers + 2):
        prefix = f"model.{_conv_index(i, n_layers)}."
        conv = params[f"conv_{i}"]
        kernel = np.asarray(conv["kernel"])
        weight = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)))
        sn = stats.get(f"conv_{i}_sn")
        if kwargs.get("spectral_norm", True):
            state[prefix + "weight_orig"] = weight
            if sn is not None:
                state[prefix + "weight_u"] = np.asarray(sn["u"])
                state[prefix + "weight_v"] = _spectral_v_back(sn["v"], kernel.shape)
        else:
            state[prefix + "weight"] = weight
        if "bias" in conv:
            state[prefix + "bias"] = np.asarray(conv["bias"])
        if 1 <= i <= n_layers:
            norm = f"model.{_conv_index(i, n_layers) + 1}."
            state[norm + "weight"] = np.asarray(params[f"norm_{i}"]["scale"])
            state[norm + "bias"] = np.asarray(params[f"norm_{i}"]["bias"])
            if f"norm_{i}" in stats:
                state[norm + "running_mean"] = np.asarray(stats[f"norm_{i}"]["mean"])
                state[norm + "running_var"] = np.asarray(stats[f"norm_{i}"]["var"])
                if num_batches_tracked is not None:
                    state[norm + "num_batches_tracked"] = np.asarray(num_batches_tracked, np.int64)
    return state
