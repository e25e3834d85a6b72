"""``compat = "official"``: the training loop runs the official step (``official_step.py``).

Our config fields map to the official options (docs/official-mode.md has the table):
loss weights are ours times ``lambda_A`` = 100 (``loss.l1`` 1 -> ``lambda_A`` 100,
``loss.adversarial`` 0.002 -> ``gan_weight`` 0.2, ``loss.hole_l1`` 4 -> ``mask_weight_G``
400, ``loss.style`` 0.1 -> ``style_weight`` 10, ``loss.content`` 0.01 ->
``content_weight`` 1, ``loss.tv`` -> ``tv_weight``, ``loss.guidance`` 0.01 -> ``strength``
1, 0 -> ``skip`` 1). The hole crop that D, the discounted L1 and VGG see is the centre
hole (``data.mask = "center:hole=N[,overlap=K]"``) or a fixed-size rect hole
(``rect:min_size=N,max_size=N``), found per batch at its first image's hole; other masks
are the official island case (no crop).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from shiftnet_jax.config import ConfigError
from shiftnet_jax.data import masks
from shiftnet_jax.data.loader import to_float
from shiftnet_jax.nets.discriminators import Discriminator
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.shift_level import SOFT, VARIANTS
from shiftnet_jax.train import official_init, official_schedule, official_step
from shiftnet_jax.train.step import _vgg16

COMPAT = ("", "official")


def _crop_and_masks(config):
    """(mask_type, mask_sub_type, hole crop side or None) of ``data.mask``."""
    spec = masks.parse_mask_spec(config.data.mask) if isinstance(config.data.mask, str) else None
    kind = (spec or {}).get("kind")
    size = config.data.crop_size
    if kind == "center":
        hole = spec.get("hole", size // 2)
        hole = hole if isinstance(hole, int) else int(hole[0])
        return "center", "island", hole - 2 * int(spec.get("overlap", 0))
    if kind == "rect" and spec.get("min_size") is not None and spec.get("min_size") == spec.get("max_size"):
        return "random", "rect", int(spec["min_size"])
    return "random", "island", None


def official_options(config) -> dict:
    """The official options a config stands for (ConfigError when it has none)."""
    m, d, loss, optim = config.model, config.discriminator, config.loss, config.optim
    if m.variant not in VARIANTS or m.variant == "face":
        raise ConfigError(f"compat 'official' does not reproduce the training of model.variant "
                          f"{m.variant!r} yet")
    if d.kind != "patchgan":
        raise ConfigError("compat 'official' needs discriminator.kind 'patchgan' (the official basic D)")
    if loss.gan not in official_step.options.GAN_TYPES:
        raise ConfigError(f"compat 'official': the official ShiftNetModel has no loss.gan {loss.gan!r}")
    mask_type, sub_type, crop = _crop_and_masks(config)
    size = config.data.crop_size
    overlap = 0
    if crop is not None:
        if (size // 2 - crop) % 2 or crop > size // 2 or crop < 24:
            raise ConfigError(f"compat 'official': the hole crop (what D sees) is data.crop_size "
                              f"// 2 - 2 overlap and at least 24 px for the PatchGAN; a {crop} px "
                              f"hole at crop_size {size} is not (use center:hole=N)")
        overlap = (size // 2 - crop) // 2
    return dict(
        which_model_netG=VARIANTS[m.variant], ngf=m.ngf, norm=m.norm,
        triple_weight=m.triple_weight, shift_sz=m.shift_sz, stride=m.stride,
        mask_thred=m.mask_thred, fuse=int(m.fuse), add_mask2input=int(m.add_mask2input),
        which_model_netD="basic" if d.n_layers == 3 else "n_layers", n_layers_D=d.n_layers,
        ndf=d.ndf, use_spectral_norm_D=int(d.spectral_norm), gan_type=loss.gan,
        lambda_A=100 * loss.l1, gan_weight=100 * loss.adversarial, mask_weight_G=100 * loss.hole_l1,
        discounting=int(loss.discounting), style_weight=100 * loss.style,
        content_weight=100 * loss.content, tv_weight=100 * loss.tv, gp_lambda=loss.gp_lambda,
        strength=100 * loss.guidance, skip=int(loss.guidance == 0), mask_type=mask_type,
        mask_sub_type=sub_type, overlap=overlap, fineSize=size, lr=optim.lr, beta1=optim.b1,
        beta2=optim.b2, batchSize=config.batch_size,
        **{k: v for k, v in config.official.items() if k != "lr_policy" or v})


def learning_rate(config, steps_per_epoch: float | None):
    """``optim.lr`` (no ``official.lr_policy``), or the official policy per epoch as an optax
    schedule over steps (:mod:`official_schedule`); ``steps_per_epoch``: the loader's."""
    policy = config.official.lr_policy
    if not policy:
        return config.optim.lr
    if policy == "plateau":
        raise ConfigError(official_schedule.PLATEAU)
    if steps_per_epoch is None:
        raise ValueError(f"official.lr_policy {policy!r} needs the loader's steps_per_epoch")
    return official_schedule.schedule(official_options(config), steps_per_epoch)


def make_trainer(config, steps_per_epoch: float | None = None) -> official_step.OfficialStep:
    opts = official_options(config)
    m = config.model
    generator = ShiftNetGenerator(
        ngf=m.ngf, num_downs=m.num_downs, norm=m.norm, shift_layer=m.shift_layer,
        feature_hole="nearest", triple_weight=m.triple_weight, output_channels=m.output_channels,
        conv_impl=m.conv_impl, variant=m.variant, shift_sz=m.shift_sz, mask_thred=m.mask_thred,
        fuse=m.fuse, stride=m.stride, add_mask2input=m.add_mask2input,
        patch_order="reference" if m.variant in SOFT else "spatial")
    d = config.discriminator
    discriminator = Discriminator(ndf=d.ndf, n_layers=d.n_layers, norm=m.norm,
                                  spectral_norm=d.spectral_norm, torch_spectral_norm=True)
    return official_step.OfficialStep(generator, discriminator, opts,
                                      learning_rate=learning_rate(config, steps_per_epoch))


def create_state(config, image_size: int, parts=None):
    """Fresh variables, drawn as the official ``init_net`` (``init_type``, ``init_gain``), and
    Adam states. Our modules draw its default (normal, 0.02) themselves; other choices are
    redrawn by :func:`official_init.initialise`."""
    # Only the Adam states' structure is built here: any steps_per_epoch does.
    trainer = make_trainer(config, steps_per_epoch=1.0)
    g_key, d_key = jax.random.split(jax.random.key(config.seed, impl="rbg"))
    image = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    hole = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    g_vars = jax.jit(trainer.generator.init)(g_key, image, hole)
    d_vars = jax.jit(trainer.discriminator.init)(d_key, image)
    init = config.official
    if (init.init_type, init.init_gain) != ("normal", 0.02):
        m, d = config.model, config.discriminator
        g_vars, d_vars = official_init.initialise(
            dict(num_downs=m.num_downs, shift_layer=m.shift_layer, norm=m.norm, variant=m.variant),
            g_vars, dict(n_layers=d.n_layers, spectral_norm=d.spectral_norm), d_vars,
            init.init_type, init.init_gain, config.seed)
    return trainer.init_state(g_vars, d_vars)


def _top_left(hole):
    """Top left (row, col) of the first image's hole, (2,) int32 (0, 0 without a hole)."""
    h = hole[0, ..., 0] > 0.5
    return jnp.stack([jnp.argmax(jnp.any(h, axis=1)), jnp.argmax(jnp.any(h, axis=0))]).astype(jnp.int32)


def train_step(state, batch, *, config, parts=None, steps_per_epoch: float | None = None):
    """The loop's step in official mode: (state, scalars) with the official loss names,
    the loop's ``g_loss``, ``d_loss`` and ``l1`` (the unweighted whole-image L1) and ``lr``
    (this step's learning rate; ``steps_per_epoch``: the loader's, for ``official.lr_policy``)."""
    trainer = make_trainer(config, steps_per_epoch)
    rate = learning_rate(config, steps_per_epoch)
    opts = trainer.opts
    batch = to_float(batch)   # the loader ships uint8
    image, hole = batch["image"], batch["hole"]
    alpha = jax.random.uniform(jax.random.fold_in(jax.random.key(config.seed), state.step),
                               (image.shape[0],))
    vgg = None
    if opts["style_weight"] or opts["content_weight"]:
        vgg = _vgg16(os.path.expanduser(config.loss.vgg16))
    new_state, scalars = trainer.step(state, {"image": image, "hole": hole,
                                              "crop_tl": _top_left(hole), "gp_alpha": alpha}, vgg)
    g_loss = sum(scalars[k] for k in ("G_GAN", "G_L1", "G_L1_m", "style", "content", "tv"))
    return new_state, {**scalars, "g_loss": g_loss, "d_loss": scalars["D"],
                       "l1": scalars["G_L1"] / max(opts["lambda_A"], 1e-12),
                       "lr": rate(state.step) if callable(rate) else jnp.asarray(rate, jnp.float32)}
