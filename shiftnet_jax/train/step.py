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
"""

from __future__ import annotations

import functools
import os
from typing import Any

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


def create_state(config, image_size: int) -> TrainState:
    """Fresh variables and optimiser states (on the host; see ``replicate``)."""
    generator, discriminator = make_models(config)
    # 'rbg' keys: initialising a U-Net with threefry takes XLA ~10 s to compile on CPU.
    g_key, d_key = jax.random.split(jax.random.key(config.seed, impl="rbg"))
    image = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    hole = jnp.zeros((1, image_size, image_size, 1), jnp.float32)
    g_vars = jax.jit(generator.init)(g_key, image, hole)
    d_vars = jax.jit(discriminator.init)(d_key, image)
    d_vars = {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})}
    tx = make_optimizer(config)
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


def train_step(state: TrainState, batch, *, config):
    """One discriminator and one generator update. Returns (state, scalar metrics)."""
    generator, discriminator = make_models(config)
    tx = make_optimizer(config)
    weights, gan = config.loss, config.loss.gan
    batch = to_float(batch)  # the loader ships uint8: converted here, on the device
    image, hole = batch["image"], batch["hole"]
    g_vars, d_vars = state.generator, state.discriminator

    # 1. Guidance target: only the encoder levels it needs, on the ground truth.
    target = generator.apply(g_vars, image, hole, method=generator.guidance_target)
    target = jax.lax.stop_gradient(target)

    # 2. Generator forward, kept for the backward pass of step 4.
    def forward(params):
        output, features, new_stats = _apply_generator(generator, g_vars, params, image, hole)
        return (output, features.decoded), (features.hole, new_stats)

    (output, decoded), pullback, (feature_hole, g_stats) = jax.vjp(
        forward, g_vars["params"], has_aux=True)
    fake = metrics.composite(output, image, hole)

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

    # 3. Discriminator update on real vs. detached fake; skipped altogether (no
    # compute) by a reconstruction-only config.
    adversarial = weights.adversarial > 0
    if adversarial:
        (d_loss, d_upd), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_vars["params"])
        d_updates, d_opt = tx.update(d_grads, state.d_opt, d_vars["params"])
        d_vars = {"params": optax.apply_updates(d_vars["params"], d_updates), **d_upd}
    else:
        d_loss, d_opt = jnp.zeros(()), state.d_opt
    # The GAN term joins after ``adversarial_start`` steps of reconstruction only.
    adversarial_weight = weights.adversarial * (state.step >= weights.get("adversarial_start", 0))

    # 4. Generator loss against the updated discriminator, pulled back through G.
    def g_loss_fn(output, decoded):
        parts = {"l1": losses.l1(output, image),
                 "guidance": losses.guidance(decoded, target, feature_hole, weights.guidance_kind),
                 "g_adversarial": jnp.zeros(())}
        if adversarial:
            fake = metrics.composite(output, image, hole)
            fake_logits, _ = discriminator.apply(d_vars, fake, train=True, mutable=["batch_stats"])
            # Relativistic losses compare with the (updated) discriminator's real logits.
            real_logits = (discriminator.apply(d_vars, image, train=True,
                                               mutable=["batch_stats"])[0]
                           if gan in losses.RELATIVISTIC else None)
            parts["g_adversarial"] = losses.generator_adversarial_loss(fake_logits, gan,
                                                                       real_logits)
        total = (weights.l1 * parts["l1"] + weights.guidance * parts["guidance"]
                 + adversarial_weight * parts["g_adversarial"])
        # The official code's optional terms, computed (and logged) only when weighted.
        if weights.hole_l1:
            parts["hole_l1"] = losses.discounted_hole_l1(output, image, hole,
                                                         discounting=weights.discounting)
            total = total + weights.hole_l1 * parts["hole_l1"]
        if weights.tv:
            parts["tv"] = losses.total_variation(output * hole)
            total = total + weights.tv * parts["tv"]
        if weights.style or weights.content:   # on the raw output, as the official code
            parts["style"], parts["content"] = vgg.style_and_content(
                _vgg16(os.path.expanduser(weights.vgg16)), output, image)
            total = total + weights.style * parts["style"] + weights.content * parts["content"]
        return total, parts

    (g_loss, parts), cotangents = jax.value_and_grad(g_loss_fn, argnums=(0, 1),
                                                     has_aux=True)(output, decoded)
    (g_grads,) = pullback(cotangents)
    g_updates, g_opt = tx.update(g_grads, state.g_opt, g_vars["params"])
    new_g = {"params": optax.apply_updates(g_vars["params"], g_updates)}
    if g_stats is not None:
        new_g["batch_stats"] = g_stats

    scalars = {"g_loss": g_loss, "d_loss": d_loss, **parts,
               "psnr_hole": jnp.nanmean(metrics.psnr(fake, image, hole))}
    new_state = state.replace(step=state.step + 1, generator=new_g, discriminator=d_vars,
                              g_opt=g_opt, d_opt=d_opt)
    return new_state, scalars
