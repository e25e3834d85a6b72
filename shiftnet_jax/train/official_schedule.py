"""The official code's learning-rate policies (``networks.get_scheduler``) as optax schedules.

The official ``train.py`` steps its schedulers once per **epoch**
(``model.update_learning_rate()`` after each one), and a PyTorch scheduler sets
``lr * factor(0)`` when it is built. So during the official run's (j+1)-th epoch
(j = 0, 1, ...: the scheduler's ``last_epoch``) both Adams use ``lr * factor(j)``:

* ``lambda`` (LambdaLR): ``1 - max(0, j + 1 + epoch_count - niter) / (niter_decay + 1)``.
  As the official code writes it (one more than pix2pix's rule), the decay starts one
  epoch early and its last epoch (``j = niter + niter_decay - epoch_count``) trains
  at lr 0; with the defaults (niter 30, niter_decay 0) epochs 1-29 use ``lr`` and
  epoch 30 uses 0. Beyond the official last epoch the factor stays 0 (never negative).
* ``step`` (StepLR, gamma 0.1): ``0.1 ** (j // lr_decay_iters)``.
* ``cosine`` (CosineAnnealingLR, T_max ``niter``, eta_min 0): ``(1 + cos(pi j / niter)) / 2``
  (it rises again after ``niter`` epochs, as PyTorch's does).
* ``plateau`` (ReduceLROnPlateau): cannot be reproduced past the first epoch, see
  :data:`PLATEAU`; within it the factor is 1.

Our step ``k`` (0-based; the optimiser's count) lies in epoch ``j = floor(k / steps_per_epoch)``
of the loader (``Loader.steps_per_epoch``, images per epoch / batch size), computed
exactly in integers.
"""

from __future__ import annotations

import math
from fractions import Fraction

import jax.numpy as jnp

POLICIES = ("lambda", "step", "plateau", "cosine")
PLATEAU = ("official.lr_policy 'plateau' cannot be reproduced: the official update_learning_rate "
           "calls ReduceLROnPlateau.step() without the metric it needs, so the official run "
           "stops with a TypeError at the end of its first epoch")


def epochs_trained(opts) -> int:
    """How many epochs the official ``train.py`` runs: ``epoch_count .. niter + niter_decay``."""
    return int(opts["niter"]) + int(opts["niter_decay"]) + 1 - int(opts["epoch_count"])


def epoch_factor(opts, epoch):
    """The factor on ``lr`` in epoch index ``epoch`` (0-based; an int or an int array)."""
    policy, j = opts["lr_policy"], jnp.asarray(epoch)
    if policy == "lambda":
        decay = jnp.maximum(0, j + 1 + int(opts["epoch_count"]) - int(opts["niter"]))
        return jnp.maximum(0.0, 1.0 - decay / float(int(opts["niter_decay"]) + 1))
    if policy == "step":
        return 0.1 ** (j // int(opts["lr_decay_iters"])).astype(jnp.float32)
    if policy == "cosine":
        return (1.0 + jnp.cos(math.pi * j / float(opts["niter"]))) / 2.0
    if policy == "plateau":
        return jnp.ones_like(j, jnp.float32)
    raise ValueError(f"lr_policy {policy!r} is not one of {', '.join(POLICIES)}")


def epoch_of_step(count, steps_per_epoch):
    """``floor(count / steps_per_epoch)`` for an optimiser step count (int32 scalar) and a
    loader's ``steps_per_epoch`` (a float, the ratio of two integers), without rounding."""
    ratio = Fraction(steps_per_epoch).limit_denominator(1 << 16)
    num, den = ratio.numerator, ratio.denominator
    if num <= 0:
        raise ValueError(f"steps_per_epoch must be > 0, got {steps_per_epoch}")
    count = jnp.asarray(count, jnp.int32)
    return (count // num) * den + ((count % num) * den) // num


def schedule(opts, steps_per_epoch):
    """The optax schedule ``count -> lr * epoch_factor(epoch_of_step(count))`` of the
    official options ``opts`` (``lr``, ``lr_policy``, ``niter``, ``niter_decay``,
    ``lr_decay_iters``, ``epoch_count``)."""
    lr = float(opts["lr"])
    epoch_factor(opts, 0)   # an unknown policy fails here, not in the first traced step

    def learning_rate(count):
        return lr * epoch_factor(opts, epoch_of_step(count, steps_per_epoch))
    return learning_rate
