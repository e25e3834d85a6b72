"""The official learning-rate policies (shiftnet_jax/train/official_schedule.py) against
lists worked out by hand from the official ``networks.get_scheduler`` and its per-epoch
``update_learning_rate``, and the official mode's optimiser applying them."""

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from shiftnet_jax import config as configlib
from shiftnet_jax.train import official_config, official_schedule

LR = 2e-4


def _opts(policy, **kw):
    return {"lr": LR, "lr_policy": policy, "niter": 30, "niter_decay": 0, "lr_decay_iters": 50,
            "epoch_count": 1, **kw}


# factor(j) = lr in the (j+1)-th epoch / lr, by hand from the official rules:
#   lambda: 1 - max(0, j + 1 + epoch_count - niter) / (niter_decay + 1)
#   step:   0.1 ** (j // lr_decay_iters);  cosine: (1 + cos(pi j / niter)) / 2
HAND = [
    (_opts("lambda", niter=3, niter_decay=2), [1, 1, 2 / 3, 1 / 3, 0]),
    # the defaults: 29 epochs at lr, the 30th (the official last) at 0
    (_opts("lambda"), [1] * 29 + [0]),
    # resumed with --epoch_count 3 (niter 4, niter_decay 1): 1 - max(0, j + 4 - 4) / 2
    (_opts("lambda", niter=4, niter_decay=1, epoch_count=3), [1, 0.5, 0]),
    (_opts("step", lr_decay_iters=2), [1, 1, 0.1, 0.1, 0.01]),
    (_opts("cosine", niter=4), [1, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2, 0,
                                (1 - math.sqrt(0.5)) / 2]),
]


@pytest.mark.parametrize("opts, factors", HAND, ids=[o["lr_policy"] for o, _ in HAND])
def test_the_lr_of_each_epoch_is_the_official_one(opts, factors):
    epochs = np.arange(len(factors))
    got = np.asarray(official_schedule.epoch_factor(opts, epochs)) * LR
    np.testing.assert_allclose(got, LR * np.asarray(factors, np.float64), rtol=1e-6, atol=1e-12)
    if opts["lr_policy"] == "lambda":   # the official loop runs exactly these epochs
        assert official_schedule.epochs_trained(opts) == len(factors)


def test_steps_map_to_epochs_exactly_for_fractional_epochs():
    # 5 images, batch 2: 2.5 steps per epoch; step k lies in epoch floor(k / 2.5)
    schedule = official_schedule.schedule(_opts("step", lr_decay_iters=1), 2.5)
    got = [float(schedule(k)) for k in range(8)]
    epochs = [0, 0, 0, 1, 1, 2, 2, 2]
    np.testing.assert_allclose(got, [LR * 0.1 ** e for e in epochs], rtol=1e-6)
    # 10 / 3 steps per epoch: no float rounding at the boundary 10 (epoch 3)
    assert [int(official_schedule.epoch_of_step(k, 10 / 3)) for k in (3, 4, 6, 7, 9, 10)] == \
        [0, 1, 1, 2, 2, 3]


def _official_config(**official):
    c = configlib.load_config(Path(__file__).parents[1] / "configs" / "official.py")
    c.num_steps = 6
    c.model.update(dict(ngf=4, num_downs=6))
    c.data.update(dict(crop_size=64, mask="center:hole=32"))
    c.discriminator.ndf = 4
    c.loss.update(dict(style=0.0, content=0.0))
    c.official.update(official)
    return configlib.validate(c, check_paths=False)


def test_the_official_modes_adam_applies_the_policy_per_epoch():
    # lambda, niter 2, niter_decay 1 (3 epochs of 2 steps): factors 1, 0.5, 0
    config = _official_config(lr_policy="lambda", niter=2, niter_decay=1)
    tx = official_config.make_trainer(config, steps_per_epoch=2.0).tx
    params = {"w": jnp.zeros((3,))}
    grads = {"w": jnp.asarray([1.0, -2.0, 0.5])}   # constant: Adam's step is lr * sign(g)
    state, steps = tx.init(params), []
    for _ in range(6):
        updates, state = tx.update(grads, state, params)
        steps.append(float(jnp.abs(updates["w"][0])))
    np.testing.assert_allclose(steps, [LR, LR, LR / 2, LR / 2, 0, 0], rtol=1e-5, atol=0)


def test_the_official_fields_are_checked_in_one_line():
    ours = configlib.default_config()
    ours.official.lr_policy = "lambda"
    with pytest.raises(configlib.ConfigError, match="compat 'official' only"):
        configlib.validate(ours, check_paths=False)
    with pytest.raises(configlib.ConfigError, match="TypeError at the end of its first epoch"):
        _official_config(lr_policy="plateau")
    config = _official_config(lr_policy="lambda", niter_decay=10)
    config.num_steps = 0
    with pytest.raises(configlib.ConfigError, match="= 40 epochs; set num_epochs to 40"):
        configlib.validate(config, check_paths=False)
    config = _official_config(lr_policy="cosine")
    config.optim.schedule = "cosine"
    with pytest.raises(configlib.ConfigError, match="two schedules"):
        configlib.validate(config, check_paths=False)
    # no lr_policy: the constant lr, as before
    assert official_config.learning_rate(_official_config(lr_policy=""), None) == LR
