"""Layers the networks share, initialised and normalised as PyTorch does.

Norms: :func:`make_norm` builds InstanceNorm (affine) or BatchNorm with
PyTorch's epsilon and momentum; ``conv_init`` and ``batch_norm_scale_init``
are the reference's weight initialisation.

Spectral normalisation of a conv's kernel with PyTorch's semantics
(``torch.nn.utils.spectral_norm``, the official ``--use_spectral_norm_G``).

The kernel (kH, kW, I, O) is used as ``W / sigma`` with ``W`` the (O, kH kW I)
matrix and ``sigma`` its largest singular value, estimated from two stored
vectors ``u`` (O,) and ``v`` (kH kW I,) (collection ``batch_stats``):

* evaluation: ``sigma = u . W v`` with the stored vectors, as PyTorch in eval
  mode (Flax's ``nn.SpectralNorm`` runs a power iteration every call instead);
* training: one power iteration first, ``v = n(W^T u)``, ``u = n(W v)`` with
  ``n(x) = x / max(|x|, 1e-12)`` and no gradient, then the same ``sigma`` (whose
  gradient reaches ``W``), and the new ``u``, ``v`` are stored.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

NORMS = ("instance", "batch")
# The reference initialises conv weights with N(0, 0.02), BatchNorm scales with
# N(1, 0.02), InstanceNorm scales with 1, and all biases with 0.
conv_init = nn.initializers.normal(0.02)


def wide(dtype):
    """The dtype to accumulate and return results in: float32 for float32 and narrower
    computations (bfloat16, float16), float64 for float64 ones (a run under
    ``jax.enable_x64``, e.g. the official mode's float64 parity check)."""
    return jnp.promote_types(dtype, jnp.float32)


def batch_norm_scale_init(key, shape, dtype=jnp.float32):
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def make_norm(kind: str, train: bool, dtype, name: str):
    """InstanceNorm (affine, per-image statistics) or BatchNorm, as in PyTorch (eps 1e-5)."""
    if kind == "instance":
        return nn.InstanceNorm(epsilon=1e-5, use_fast_variance=False, dtype=dtype, name=name)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        use_fast_variance=False, dtype=dtype, scale_init=batch_norm_scale_init,
                        name=name)


EPS = 1e-12


def _normalise(x):
    return x / jnp.maximum(jnp.linalg.norm(x), EPS)


class SpectralNorm(nn.Module):
    """Wraps ``layer_instance`` (a module with a ``kernel`` parameter whose last axis is
    the output); call as ``SpectralNorm(conv)(x, update_stats=train)``."""

    layer_instance: nn.Module

    @nn.compact
    def __call__(self, x, update_stats: bool = False):
        def normalise(variables):
            kernel = variables["params"]["kernel"]
            w = kernel.reshape(-1, kernel.shape[-1]).T.astype(wide(kernel.dtype))   # (O, in)
            u = self.variable("batch_stats", "u", lambda: _normalise(
                jax.random.normal(self.make_rng("params"), (w.shape[0],))))
            v = self.variable("batch_stats", "v", lambda: _normalise(
                jax.random.normal(self.make_rng("params"), (w.shape[1],))))
            u_value, v_value = u.value, v.value
            if update_stats:
                wc = jax.lax.stop_gradient(w)
                v_value = _normalise(wc.T @ u_value)
                u_value = _normalise(wc @ v_value)
                if not self.is_initializing():
                    u.value, v.value = u_value, v_value
            sigma = u_value @ (w @ v_value)
            params = dict(variables["params"], kernel=(kernel / sigma).astype(kernel.dtype))
            return {**variables, "params": params}

        return nn.map_variables(lambda layer: layer(x), "params", trans_in_fn=normalise,
                                init=self.is_initializing(), mutable=True)(self.layer_instance)
