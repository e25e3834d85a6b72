"""Fresh weights as the official ``networks.init_weights`` draws them (``--init_type``, ``--init_gain``).

The official ``init_net`` visits every module of G and D: the weight of each conv,
transposed conv or linear layer (for a spectral-normed conv ``weight_orig``, whose
storage ``weight`` shares) is drawn by ``init_type``, its bias set to 0;
each BatchNorm's weight is drawn from N(1, gain), its bias set to 0. InstanceNorm (affine in
the official code) keeps PyTorch's own 1 and 0, as do spectral norm's ``u`` and ``v``
and BatchNorm's running statistics. The rules, for a weight of PyTorch shape
``(d0, d1, kh, kw)`` (d0, d1 = out, in for a conv; in, out for a transposed conv) with
``fan_in = d1 kh kw`` and ``fan_out = d0 kh kw`` as PyTorch counts them:

* ``normal``: N(0, gain)
* ``xavier``: N(0, gain * sqrt(2 / (fan_in + fan_out)))
* ``kaiming``: N(0, sqrt(2 / fan_in)) (a = 0, mode fan_in; the gain is not used)
* ``orthogonal``: ``gain`` times a random (semi-)orthogonal ``(d0, d1 kh kw)`` matrix: its
  rows orthonormal when ``d0 <= d1 kh kw``, else its columns (QR of a Gaussian matrix,
  signs fixed by R's diagonal).

To get PyTorch's layouts and fan conventions right, our variables go through the
official state dicts (:mod:`shiftnet_jax.torchfile.state_dicts`,
:mod:`shiftnet_jax.torchfile.patchgan_state`), are redrawn there, and come back.
The draws are NumPy's (seeded), not torch's: the same distribution, not the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from shiftnet_jax.torchfile.patchgan_state import (patchgan_from_torch_state_dict,
                                                   patchgan_to_torch_state_dict)
from shiftnet_jax.torchfile.state_dicts import from_torch_state_dict, to_torch_state_dict
from shiftnet_jax.train.official_options import INIT_TYPES


def _fans(shape) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _orthonormal_columns(a):
    """Q of ``a = QR`` with R's diagonal positive (the sign fix that makes Q a uniform draw).
    A conv's Gaussian matrix is tall (>= 2:1, well conditioned): Q = a R^-1 with R from
    Cholesky of a^T a, the same Q and, on busy cores, far faster than LAPACK's QR."""
    if a.shape[0] >= 2 * a.shape[1]:
        r = np.linalg.cholesky(a.T @ a).T
        return a @ np.linalg.inv(r)
    q, r = np.linalg.qr(a)
    return q * np.sign(np.diag(r))


def _orthogonal(rng, shape, gain):
    rows, cols = shape[0], int(np.prod(shape[1:]))
    q = _orthonormal_columns(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q.T if rows < cols else q
    return gain * q.reshape(shape)


def draw_weight(rng, shape, init_type: str, gain: float) -> np.ndarray:
    """One conv / linear weight of PyTorch ``shape``, float32."""
    fan_in, fan_out = _fans(shape)
    if init_type == "normal":
        w = rng.normal(0.0, gain, shape)
    elif init_type == "xavier":
        w = rng.normal(0.0, gain * np.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif init_type == "kaiming":
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif init_type == "orthogonal":
        w = _orthogonal(rng, shape, gain)
    else:
        raise ValueError(f"init_type {init_type!r} is not one of {', '.join(INIT_TYPES)}")
    return w.astype(np.float32)


def init_state_dict(state: Mapping, init_type: str, gain: float, seed: int) -> dict:
    """An official state dict with the weights ``init_weights`` draws (a new dict; buffers kept).

    A conv or linear weight (``X.weight`` / ``X.weight_orig`` with two or more axes) is
    drawn, ``X.bias`` beside it set to 0; a 1-D ``X.weight`` with ``X.running_mean``
    beside it is a BatchNorm: N(1, gain) and bias 0; other entries are kept.
    """
    out = {k: np.asarray(v) for k, v in state.items()}
    for index, name in enumerate(sorted(out)):
        prefix, _, leaf = name.rpartition(".")
        if leaf not in ("weight", "weight_orig"):
            continue
        rng = np.random.default_rng((seed, index))
        weight = out[name]
        bias = f"{prefix}.bias"
        if weight.ndim >= 2:
            out[name] = draw_weight(rng, weight.shape, init_type, gain)
        elif f"{prefix}.running_mean" in out:
            out[name] = rng.normal(1.0, gain, weight.shape).astype(np.float32)
        else:
            continue
        if bias in out:
            out[bias] = np.zeros_like(out[bias])
    return out


def initialise(g_kwargs: Mapping, g_vars, d_kwargs: Mapping, d_vars, init_type: str,
               gain: float, seed: int):
    """(G variables, D variables) redrawn as the official ``init_net`` with ``init_type`` and
    ``gain``. ``g_kwargs``: the generator's (``num_downs``, ``shift_layer``, ``norm``,
    ``variant``); ``d_kwargs``: the PatchGAN's (``n_layers``, ``spectral_norm``)."""
    g_state = init_state_dict(to_torch_state_dict(g_kwargs, jax.device_get(g_vars)),
                              init_type, gain, seed)
    _, new_g = from_torch_state_dict(g_state, norm=g_kwargs["norm"],
                                     variant=g_kwargs.get("variant", "shift"))
    d_state = init_state_dict(patchgan_to_torch_state_dict(d_kwargs, jax.device_get(d_vars)),
                              init_type, gain, seed + 1)
    _, new_d = patchgan_from_torch_state_dict(d_state)
    return new_g, new_d
