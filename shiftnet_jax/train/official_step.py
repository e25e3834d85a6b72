"""The official code's training step (``ShiftNetModel.optimize_parameters``), as it runs.

What it does that our default step (:mod:`shiftnet_jax.train.step`) does not:

1. G runs **twice**: first on the ground truth (unmasked image plus the known-pixel
   channel), only to record the InnerCos target, the encoder feature at the shift
   layer after ReLU (its output is discarded; BatchNorm statistics and, with
   ``skip`` 0, nothing else moves); then on the masked input, kept for the backward.
   Without BatchNorm only the encoder levels up to the shift run for the target.
2. The guidance gradient ``strength * 2 (decoded * mask - target) / numel`` is added
   to the decoder feature's gradient at the shift layer over **all** positions
   (``InnerCosFunction.backward``: the target is not masked, the gradient is not
   multiplied by the mask); ``constrain`` is never read.
3. D, the discounted L1 and the VGG losses see only the **raw** output's hole crop
   (``fineSize // 2 - 2 overlap`` square at ``rand_t, rand_l``) for centre and rect
   holes, in [-1, 1]; the whole image otherwise. D is called on fake, real, [the
   gradient penalty's mix], then (updated) on fake [and real for re_s_gan]; each
   call runs one power iteration of spectral norm and moves BatchNorm statistics.
4. Losses with the official weights: ``lambda_A * L1(whole image)``, ``mask_weight_G
   * L1(template * crop)`` (the off-by-one discount template), ``gan_weight * GAN``
   (wgan_gp: ``-mean D(fake)`` without ``gan_weight``), ``style_weight * style +
   content_weight * content`` (VGG16 pools 1-3), ``tv_weight * TV(output * hole)``.
5. Adam with the official betas (wgan_gp: β1 0, β2 0.9), D first, then G.

All arrays NHWC here; :mod:`shiftnet_jax.official` takes the official NCHW layout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from shiftnet_jax.nets import vgg
from shiftnet_jax.nets.layers import wide
from shiftnet_jax.train import losses
from shiftnet_jax.train import official_options as options
from shiftnet_jax.train.step import TrainState

# The names of ShiftNetModel.loss_names, then two terms it computes but does not log.
LOSS_NAMES = ("G_GAN", "G_L1", "D", "style", "content", "tv")
EXTRA_LOSS_NAMES = ("G_L1_m", "guidance")


def _ground_truth_pass(module, image, hole):
    """The whole generator on the ground truth in train mode; returns the InnerCos target
    (the encoder feature at the shift layer after ReLU), (B, h, w, C)."""
    skips = module.encode(image, hole, zero_fill=False, train=True)
    _, features = module.decode(skips, hole, train=True)
    return features.encoded


def _with_stats(variables, updates):
    return {**variables, **updates} if updates else variables


class OfficialStep:
    """One official training iteration for a generator and a discriminator module.

    ``step(state, batch, vgg_params)`` -> (state, losses) is pure (jit it); ``batch`` holds
    ``image`` (B, H, W, 3) in [-1, 1], ``hole`` (B, H, W, 1) with 1 = missing, ``crop_tl``
    (2,) int32, the hole crop's top left (``rand_t, rand_l``), and ``gp_alpha`` (B,),
    the gradient penalty's mixing factors (wgan_gp only). ``vgg_params``: the VGG16
    blocks of :func:`shiftnet_jax.torchfile.state_dicts.vgg16_params`, or None when
    ``style_weight`` and ``content_weight`` are 0.
    """

    def __init__(self, generator, discriminator, opts, learning_rate=None):
        self.generator, self.discriminator = generator, discriminator
        self.opts = options.resolve(opts)
        b1, b2 = options.adam_betas(self.opts)
        lr = self.opts["lr"] if learning_rate is None else learning_rate
        self.tx = optax.adam(lr, b1=b1, b2=b2)
        self.template = options.discount_template(self.opts)

    def init_state(self, g_vars, d_vars) -> TrainState:
        d_vars = {"params": d_vars["params"], "batch_stats": d_vars.get("batch_stats", {})}
        return TrainState(step=jnp.zeros((), jnp.int32), generator=g_vars, discriminator=d_vars,
                          g_opt=self.tx.init(g_vars["params"]),
                          d_opt=self.tx.init(d_vars["params"]))

    # ------------------------------------------------------------------ pieces
    def _crop(self, x, top_left):
        """The hole crop (centre and rect holes), else the whole image."""
        if not options.square_crop(self.opts):
            return x
        n = options.crop_size(self.opts)
        zero = jnp.zeros((), top_left.dtype)   # indices of one integer type (also under x64)
        return jax.lax.dynamic_slice(x, (zero, top_left[0], top_left[1], zero),
                                     (x.shape[0], n, n, x.shape[3]))

    def _d(self, params, stats, x):
        """One train-mode D call: (logits, statistics after it)."""
        logits, updates = self.discriminator.apply({"params": params, "batch_stats": stats}, x,
                                                   train=True, mutable=["batch_stats"])
        return logits, updates.get("batch_stats", stats)

    def _generator(self, g_vars, params, image, hole):
        variables = {**g_vars, "params": params}
        if "batch_stats" in g_vars:
            (output, features), updates = self.generator.apply(
                variables, image, hole, train=True, return_features=True, mutable=["batch_stats"])
            return (output, features.decoded), (features.hole, updates)
        output, features = self.generator.apply(variables, image, hole, train=True,
                                                return_features=True)
        return (output, features.decoded), (features.hole, {})

    def _guidance_target(self, g_vars, image, hole):
        """(target, G variables after the ground-truth pass)."""
        if "batch_stats" in g_vars:   # the whole pass: every BatchNorm's statistics move
            target, updates = self.generator.apply(g_vars, image, hole, method=_ground_truth_pass,
                                                   mutable=["batch_stats"])
            return target, _with_stats(g_vars, updates)
        target = self.generator.apply(g_vars, image, hole, train=True,
                                      method=self.generator.guidance_target)
        return target, g_vars

    def _d_loss(self, params, stats, fake, real, alpha):
        opts = self.opts
        pred_fake, stats = self._d(params, stats, fake)
        pred_real, stats = self._d(params, stats, real)
        if opts["gan_type"] != "wgan_gp":
            return losses.discriminator_loss(pred_real, pred_fake, opts["gan_type"]), stats
        penalty, stats = losses.gradient_penalty(
            lambda x: self._d(params, stats, x), real, fake, alpha, has_aux=True)
        loss = jnp.mean(pred_fake) - jnp.mean(pred_real) + opts["gp_lambda"] * penalty
        return loss, stats

    def _g_loss(self, output, image, hole, top_left, d_params, d_stats, vgg_params):
        opts, gan = self.opts, self.opts["gan_type"]
        fake, real = self._crop(output, top_left), self._crop(image, top_left)
        pred_fake, d_stats = self._d(d_params, d_stats, fake)
        if gan == "wgan_gp":
            g_gan = -jnp.mean(pred_fake)
        else:
            pred_real = None
            if gan in losses.RELATIVISTIC:
                pred_real, d_stats = self._d(d_params, d_stats, real)
            g_gan = losses.generator_adversarial_loss(pred_fake, gan, pred_real) * opts["gan_weight"]
        parts = {"G_GAN": g_gan,
                 "G_L1": jnp.mean(jnp.abs(output - image)) * opts["lambda_A"],
                 "G_L1_m": jnp.zeros(()), "style": jnp.zeros(()), "content": jnp.zeros(()),
                 "tv": jnp.zeros(())}
        if options.square_crop(opts):
            t = jnp.asarray(self.template)[None, :, :, None]
            parts["G_L1_m"] = jnp.mean(jnp.abs(fake * t - real * t)) * opts["mask_weight_G"]
        if opts["tv_weight"]:
            parts["tv"] = opts["tv_weight"] * losses.total_variation(output * hole)
        if opts["style_weight"] or opts["content_weight"]:
            style, content = vgg.style_and_content(vgg_params, fake, real)
            parts["style"] = style * opts["style_weight"]
            parts["content"] = content * opts["content_weight"]
        total = (parts["G_L1"] + parts["G_L1_m"] + parts["G_GAN"]
                 + (parts["style"] + parts["content"] + parts["tv"]))
        return total, (parts, d_stats)

    # -------------------------------------------------------------------- step
    def _backward(self, state: TrainState, batch, vgg_params):
        """Everything of one step but G's Adam update: (G's gradient, D's gradient, the
        new D variables, D's optimiser state, G's variables after the passes, losses)."""
        opts = self.opts
        if (opts["style_weight"] or opts["content_weight"]) and vgg_params is None:
            raise ValueError("style_weight / content_weight need the VGG16 weights")
        image = batch["image"].astype(wide(batch["image"].dtype))
        hole = batch["hole"].astype(image.dtype)
        top_left = batch["crop_tl"]
        g_vars, d_vars = state.generator, state.discriminator

        # 1. The ground-truth pass (set_gt_latent), unless the guidance is skipped.
        target = None
        if not opts["skip"]:
            target, g_vars = self._guidance_target(g_vars, image, hole)
            target = jax.lax.stop_gradient(target)

        # 2. The masked pass, kept as a VJP for G's backward.
        (output, decoded), pullback, (feature_hole, g_updates) = jax.vjp(
            lambda p: self._generator(g_vars, p, image, hole), g_vars["params"], has_aux=True)

        # 3. D: fake (detached) and real crops [and the gradient penalty], Adam.
        fake = jax.lax.stop_gradient(self._crop(output, top_left))
        real = self._crop(image, top_left)
        (d_loss, d_stats), d_grads = jax.value_and_grad(self._d_loss, has_aux=True)(
            d_vars["params"], d_vars["batch_stats"], fake, real, batch.get("gp_alpha"))
        d_step, d_opt = self.tx.update(d_grads, state.d_opt, d_vars["params"])
        d_params = optax.apply_updates(d_vars["params"], d_step)

        # 4. G against the updated D, plus the InnerCos gradient over all positions.
        (_, (parts, d_stats)), d_output = jax.value_and_grad(self._g_loss, has_aux=True)(
            output, image, hole, top_left, d_params, d_stats, vgg_params)
        d_decoded = jnp.zeros_like(decoded)
        guidance = jnp.zeros(())
        if target is not None:
            former = decoded * feature_hole.astype(decoded.dtype)[..., None]
            guidance = opts["strength"] * jnp.mean(jnp.square(former - target))
            d_decoded = opts["strength"] * 2.0 * (former - target) / decoded.size
        (g_grads,) = pullback((d_output, d_decoded))
        new_d = {"params": d_params, "batch_stats": d_stats}
        return g_grads, d_grads, new_d, d_opt, _with_stats(g_vars, g_updates), \
            {**parts, "D": d_loss, "guidance": guidance}

    def gradients(self, state: TrainState, batch, vgg_params=None):
        """(G's gradient, D's gradient) of one step, as parameter trees: what the official
        ``netG`` / ``netD`` parameters' ``.grad`` hold after ``optimize_parameters`` (G's
        against the D that this step updated). Pure; float64 under ``jax.enable_x64`` with
        float64 variables and batch."""
        g_grads, d_grads, *_ = self._backward(state, batch, vgg_params)
        return g_grads, d_grads

    def step(self, state: TrainState, batch, vgg_params=None):
        g_grads, _, new_d, d_opt, g_vars, scalars = self._backward(state, batch, vgg_params)
        g_step, g_opt = self.tx.update(g_grads, state.g_opt, g_vars["params"])
        new_g = {**g_vars, "params": optax.apply_updates(g_vars["params"], g_step)}
        new_state = state.replace(step=state.step + 1, generator=new_g, discriminator=new_d,
                                  g_opt=g_opt, d_opt=d_opt)
        return new_state, scalars
