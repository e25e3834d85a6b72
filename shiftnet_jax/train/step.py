"""One training step of Shift-Net: the models, the optimiser, the state, D and G updates.

The step is a pure function of (state, batch); :mod:`shiftnet_jax.train.parallel`
jits it over the device mesh. The batch may be uint8 (pixels 0..255, hole 0/1, as
the loader ships it) or float (image in [-1, 1]).

One step (as the reference orders it, but with one generator forward):
  1. the guidance target: the encoder levels up to the shift layer on the
     ground truth, without gradient;
  2. the generator forward on the masked image, kept as a VJP;
  3. the discriminator update on real vs. the (detached) composite;
  4. the generator loss L1 + guidance + adversarial (with the *updated* D),
     pulled back through the saved VJP, and the generator update.

:func:`train_step` is :func:`generator_forward` (1, 2), :func:`discriminator_update` (3)
and :func:`generator_update` (4); the networks and the optimiser come in as the run's
:class:`Parts`, built once.
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from shiftnet_jax.data.loader import to_float
from shiftnet_jax.inference import metrics
from shiftnet_jax.nets import vgg
from shiftnet_jax.nets.discriminators import DenseNetDiscriminator, Discriminator
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.torchfile.state_dicts import load_vgg16
from shiftnet_jax.train import losses


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training (all arrays; saved in checkpoints)."""

    step: jax.Array
    generator: Any       # {"params": ..., ["batch_stats": ...]}
    discriminator: Any   # {"params": ..., "batch_stats": spectral-norm vectors, BatchNorm}
    g_opt: Any
    d_opt: Any


def make_models(config):
    """The generator and discriminator that ``config`` describes."""
    dtype = jnp.dtype(config.compute_dtype)
    generator = ShiftNetGenerator(**config.model.to_dict(), dtype=dtype)
    d_kwargs = config.discriminator.to_dict()
    if d_kwargs.pop("kind", "patchgan") == "densenet":   # official --which_model_netD densenet
        return generator, DenseNetDiscriminator(spectral_norm=d_kwargs["spectral_norm"], dtype=dtype)
    discriminator = Discriminator(**d_kwargs, dtype=dtype)
    return generator, discriminator


def learning_rate(config, num_steps: int | None = None):
    """The learning rate: constant, or cosine decay to 0 over ``num_steps``."""
    if config.optim.get("schedule", "constant") == "cosine":
        return optax.cosine_decay_schedule(config.optim.lr, max(1, num_steps or config.num_steps or 1))
    return config.optim.lr


def make_optimizer(config, num_steps: int | None = None):
    return optax.adam(learning_rate(config, num_steps), b1=config.optim.b1, b2=config.optim.b2)


class Parts(NamedTuple):
    """What a run builds once from its config and passes to every step: the two networks
    and the optimiser (one Adam for each, as the reference)."""

    generator: ShiftNetGenerator
    discriminator: Any
    tx: optax.GradientTransformation


def make_parts(config) -> Parts:
    """The :class:`Parts` of ``config``."""
    return Parts(*make_models(config), make_optimizer(config))


def create_state(config, image_size: int, parts: Parts | None = None) -> TrainState:
    """Fresh variables and optimiser states (on the host; see ``replicate``)."""
    generator, discriminator, tx = parts or make_parts(config)
    # 'rbg' keys: initialising a U-Net with threefry takes XLA ~10 s to compile on CPU.
    g_key, d_key = jax.random.split(jax.random.key(config.seed, impl="rbg"))
    image = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    hole = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    g_vars = jax.jit(generator.init)(g_key, image, hole)
    d_vars = jax.jit(discriminator.init)(d_key, image)
    d_vars = {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})}
    return TrainState(step=jnp.zeros((), jnp.int32), generator=g_vars, discriminator=d_vars,
                      g_opt=tx.init(g_vars["params"]), d_opt=tx.init(d_vars["params"]))


@functools.lru_cache(maxsize=2)
def _vgg16(path):
    """The VGG16 weights of the style/content losses, read once per file."""
    return load_vgg16(path)


def _apply_generator(generator, g_vars, params, image, hole):
    """Train-mode forward; returns (output, features, new BatchNorm statistics)."""
    variables = {**g_vars, "params": params}
    if "batch_stats" in g_vars:
        (output, features), updates = generator.apply(
            variables, image, hole, train=True, return_features=True, mutable=["batch_stats"])
        return output, features, updates["batch_stats"]
    output, features = generator.apply(variables, image, hole, train=True, return_features=True)
    return output, features, None


class GeneratorForward(NamedTuple):
    """The generator's train-mode forward, kept for its update (step 4)."""

    output: jax.Array         # (B, H, W, 3) raw output
    decoded: jax.Array        # (B, h, w, C) decoder features at the shift layer
    feature_hole: jax.Array   # (B, h, w) bool
    target: jax.Array         # (B, h, w, C) guidance target (no gradient)
    stats: Any                # new BatchNorm statistics, or None
    pullback: Any             # VJP of (output, decoded) with respect to the parameters


def generator_forward(generator, g_vars, image, hole) -> GeneratorForward:
    """Steps 1 and 2: the guidance target, then the forward on the masked image as a VJP."""
    # 1. Guidance target: only the encoder levels it needs, on the ground truth.
    target = generator.apply(g_vars, image, hole, method=generator.guidance_target)
    target = jax.lax.stop_gradient(target)

    # 2. Generator forward, kept for the backward pass of step 4.
    def forward(params):
        output, features, new_stats = _apply_generator(generator, g_vars, params, image, hole)
        return (output, features.decoded), (features.hole, new_stats)

    (output, decoded), pullback, (feature_hole, g_stats) = jax.vjp(
        forward, g_vars["params"], has_aux=True)
    return GeneratorForward(output, decoded, feature_hole, target, g_stats, pullback)


def _adversarial(config) -> bool:
    """False for a reconstruction-only config: no discriminator compute at all."""
    return config.loss.adversarial > 0


def discriminator_update(state: TrainState, image, fake, *, config, parts: Parts):
    """Step 3: the discriminator update on real vs. the detached composite ``fake``.

    Returns (new discriminator variables, its optimiser state, d_loss).
    """
    discriminator, tx, weights, gan = parts.discriminator, parts.tx, config.loss, config.loss.gan
    d_vars = state.discriminator
    if not _adversarial(config):
        return d_vars, state.d_opt, jnp.zeros(())

    def d_loss_fn(params):
        variables = {**d_vars, "params": params}
        real_logits, upd = discriminator.apply(variables, image, train=True,
                                               mutable=["batch_stats"])
        variables = {"params": params, **upd}
        fake_logits, upd = discriminator.apply(variables, jax.lax.stop_gradient(fake),
                                               train=True, mutable=["batch_stats"])
        loss = losses.discriminator_loss(real_logits, fake_logits, gan)
        if gan == "wgan_gp":   # one mixing weight per image, new every step
            alpha = jax.random.uniform(jax.random.fold_in(jax.random.key(config.seed), state.step),
                                       (image.shape[0],))
            critic = lambda x: discriminator.apply({"params": params, **upd}, x, train=True,
                                                   mutable=["batch_stats"])[0]
            loss = loss + weights.gp_lambda * losses.gradient_penalty(critic, image, fake, alpha)
        return loss, upd

    (d_loss, d_upd), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_vars["params"])
    d_updates, d_opt = tx.update(d_grads, state.d_opt, d_vars["params"])
    return {"params": optax.apply_updates(d_vars["params"], d_updates), **d_upd}, d_opt, d_loss


def generator_update(state: TrainState, d_vars, image, hole, fwd: GeneratorForward, *, config,
                     parts: Parts):
    """Step 4: the generator loss against the updated discriminator ``d_vars``, pulled back
    through the saved VJP, and the generator update.

    Returns (new generator variables, its optimiser state, g_loss, {loss name: value}).
    """
    discriminator, tx, weights, gan = parts.discriminator, parts.tx, config.loss, config.loss.gan
    adversarial = _adversarial(config)
    # The GAN term joins after ``adversarial_start`` steps of reconstruction only.
    adversarial_weight = weights.adversarial * (state.step >= weights.get("adversarial_start", 0))

    def g_loss_fn(output, decoded):
        terms = {"l1": losses.l1(output, image),
                 "guidance": losses.guidance(decoded, fwd.target, fwd.feature_hole,
                                             weights.guidance_kind),
                 "g_adversarial": jnp.zeros(())}
        if adversarial:
            fake = metrics.composite(output, image, hole)
            fake_logits, _ = discriminator.apply(d_vars, fake, train=True, mutable=["batch_stats"])
            # Relativistic losses compare with the (updated) discriminator's real logits.
            real_logits = (discriminator.apply(d_vars, image, train=True,
                                               mutable=["batch_stats"])[0]
                           if gan in losses.RELATIVISTIC else None)
            terms["g_adversarial"] = losses.generator_adversarial_loss(fake_logits, gan,
                                                                       real_logits)
        total = (weights.l1 * terms["l1"] + weights.guidance * terms["guidance"]
                 + adversarial_weight * terms["g_adversarial"])
        # The official code's optional terms, computed (and logged) only when weighted.
        if weights.hole_l1:
            terms["hole_l1"] = losses.discounted_hole_l1(output, image, hole,
                                                         discounting=weights.discounting)
            total = total + weights.hole_l1 * terms["hole_l1"]
        if weights.tv:
            terms["tv"] = losses.total_variation(output * hole)
            total = total + weights.tv * terms["tv"]
        if weights.style or weights.content:   # on the raw output, as the official code
            terms["style"], terms["content"] = vgg.style_and_content(
                _vgg16(os.path.expanduser(weights.vgg16)), output, image)
            total = total + weights.style * terms["style"] + weights.content * terms["content"]
        return total, terms

    (g_loss, loss_parts), cotangents = jax.value_and_grad(g_loss_fn, argnums=(0, 1), has_aux=True)(
        fwd.output, fwd.decoded)
    (g_grads,) = fwd.pullback(cotangents)
    g_params = state.generator["params"]
    g_updates, g_opt = tx.update(g_grads, state.g_opt, g_params)
    new_g = {"params": optax.apply_updates(g_params, g_updates)}
    if fwd.stats is not None:
        new_g["batch_stats"] = fwd.stats
    return new_g, g_opt, g_loss, loss_parts


def train_step(state: TrainState, batch, *, config, parts: Parts | None = None):
    """One discriminator and one generator update. Returns (state, scalar metrics).

    ``parts``: the run's :class:`Parts` (built from ``config`` when not given).
    """
    parts = parts or make_parts(config)
    batch = to_float(batch)  # the loader ships uint8: converted here, on the device
    image, hole = batch["image"], batch["hole"]
    fwd = generator_forward(parts.generator, state.generator, image, hole)
    fake = metrics.composite(fwd.output, image, hole)
    d_vars, d_opt, d_loss = discriminator_update(state, image, fake, config=config, parts=parts)
    new_g, g_opt, g_loss, loss_parts = generator_update(state, d_vars, image, hole, fwd,
                                                        config=config, parts=parts)
    scalars = {"g_loss": g_loss, "d_loss": d_loss, **loss_parts,
               "psnr_hole": jnp.nanmean(metrics.psnr(fake, image, hole))}
    new_state = state.replace(step=state.step + 1, generator=new_g, discriminator=d_vars,
                              g_opt=g_opt, d_opt=d_opt)
    return new_state, scalars
