"""Run the official code's training steps on official state dicts (no torch needed).

Example::

    from shiftnet_jax.official import train_steps
    g, d, losses = train_steps(g_state_dict, d_state_dict, images, masks,
                               {"gan_type": "lsgan", "mask_type": "random", "mask_sub_type": "rect"},
                               vgg16_state_dict=vgg, replay={"rand_tl": rand_tl})
    losses["G_L1"]        # (steps,), as the official get_current_losses() names them

Each step is ``ShiftNetModel.optimize_parameters`` (set_input's masking included)
as :class:`shiftnet_jax.train.official_step.OfficialStep` reproduces it; the state
dicts are mapped by :mod:`shiftnet_jax.torchfile.state_dicts` (G) and
:mod:`shiftnet_jax.torchfile.patchgan_state` (D). See docs/official-mode.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from shiftnet_jax.nets.discriminators import Discriminator
from shiftnet_jax.nets.generator import ShiftNetGenerator
from shiftnet_jax.nets.shift_level import SOFT
from shiftnet_jax.torchfile.patchgan_state import (patchgan_from_torch_state_dict,
                                                   patchgan_to_torch_state_dict)
from shiftnet_jax.torchfile.state_dicts import (from_torch_state_dict, to_torch_state_dict,
                                                vgg16_params)
from shiftnet_jax.train import official_options, official_schedule
from shiftnet_jax.train.official_step import EXTRA_LOSS_NAMES, LOSS_NAMES, OfficialStep

__all__ = ["models_from_state_dicts", "step_gradients", "train_steps"]


def models_from_state_dicts(g_state_dict, d_state_dict, opts):
    """(generator, G variables, discriminator, D variables) for resolved official ``opts``."""
    g_kwargs, g_vars = from_torch_state_dict(g_state_dict, norm=opts["norm"],
                                             variant=official_options.variant(opts))
    g_kwargs.update(triple_weight=float(opts["triple_weight"]), shift_sz=int(opts["shift_sz"]),
                    stride=int(opts["stride"]), mask_thred=int(opts["mask_thred"]),
                    fuse=bool(opts["fuse"]))
    if g_kwargs.get("variant") in SOFT:
        g_kwargs["patch_order"] = "reference"   # the official code's patch order
    if opts["norm"] == "batch" and "batch_stats" not in g_vars:
        raise ValueError("norm=batch needs the generator's running_mean / running_var")
    d_kwargs, d_vars = patchgan_from_torch_state_dict(d_state_dict)
    if d_kwargs["norm"] != opts["norm"]:
        raise ValueError(f"the discriminator state dict has {d_kwargs['norm']} norm layers "
                         f"(its convs {'lack' if d_kwargs['norm'] == 'batch' else 'have'} "
                         f"biases), but norm={opts['norm']!r}")
    if d_kwargs["spectral_norm"] != bool(opts["use_spectral_norm_D"]):
        raise ValueError(f"use_spectral_norm_D={opts['use_spectral_norm_D']} but the "
                         f"discriminator state dict {'has' if d_kwargs['spectral_norm'] else 'has no'} "
                         "weight_orig entries")
    return ShiftNetGenerator(**g_kwargs), g_vars, Discriminator(**d_kwargs), d_vars, g_kwargs, d_kwargs


def _check_widths(options_given, g_kwargs, d_kwargs):
    for key, found in (("ngf", g_kwargs["ngf"]), ("ndf", d_kwargs["ndf"])):
        if key in options_given and int(options_given[key]) != found:
            raise ValueError(f"option {key}={options_given[key]} but the state dict's is {found}")


def _top_left(opts, mask, replay_tl):
    """The hole crop's top left (rand_t, rand_l) of one step."""
    if opts["mask_type"] == "center":
        return (official_options.centre_top_left(opts),) * 2
    if replay_tl is not None:
        return tuple(int(v) for v in replay_tl)
    rows, cols = np.nonzero(mask[0, 0])   # the official rect mask is the crop itself
    if rows.size == 0:
        raise ValueError("a rect-hole step has an empty mask and no replay['rand_tl']")
    return int(rows.min()), int(cols.min())


def _counter(state_dict, suffix="num_batches_tracked"):
    """BatchNorm's call counter in a state dict (0 if absent)."""
    values = [int(np.asarray(v)) for k, v in state_dict.items() if k.endswith(suffix)]
    return values[0] if values else 0


def _to_state_dicts(state, g_kwargs, d_kwargs, norm, g_calls, d_calls):
    """Our variables -> official state dicts; BatchNorm counters set to the calls so far."""
    g_vars = jax.device_get(state.generator)
    g = to_torch_state_dict(g_kwargs, g_vars)
    if norm == "batch":
        for name in [k for k in g if k.endswith("running_mean")]:
            g[name[:-len("running_mean")] + "num_batches_tracked"] = np.asarray(g_calls, np.int64)
    d = patchgan_to_torch_state_dict(d_kwargs, jax.device_get(state.discriminator),
                                     d_calls if norm == "batch" else None)
    return {k: np.asarray(v) for k, v in g.items()}, {k: np.asarray(v) for k, v in d.items()}


class _Run(NamedTuple):
    """What :func:`train_steps` and :func:`step_gradients` share, prepared from their
    arguments."""
    opts: dict
    trainer: OfficialStep
    state: object
    vgg: object
    images: np.ndarray
    masks: np.ndarray
    alphas: np.ndarray
    rand_tl: object
    g_kwargs: dict
    d_kwargs: dict


def _prepare(g_state_dict, d_state_dict, images, masks, options, vgg16_state_dict, replay,
             steps_per_epoch=None, dtype=jnp.float32) -> _Run:
    options_given = dict(options or {})
    images = np.asarray(images, np.float32)
    masks = np.asarray(masks).astype(bool)
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"images must be (steps, N, 3, H, W), got {images.shape}")
    if masks.shape != images.shape[:2] + (1,) + images.shape[3:]:
        raise ValueError(f"masks must be (steps, N, 1, H, W) = {images.shape[:2] + (1,) + images.shape[3:]}, "
                         f"got {masks.shape}")
    steps, batch, _, height, width = images.shape
    if height != width:
        raise ValueError(f"the official code trains on squares (fineSize); got {height}x{width}")
    if "fineSize" in options_given and int(options_given["fineSize"]) != height:
        raise ValueError(f"option fineSize={options_given['fineSize']} but the images are {height}")
    opts = official_options.resolve({**options_given, "fineSize": height})
    generator, g_vars, discriminator, d_vars, g_kwargs, d_kwargs = models_from_state_dicts(
        g_state_dict, d_state_dict, opts)
    _check_widths(options_given, g_kwargs, d_kwargs)
    needs_vgg = bool(opts["style_weight"] or opts["content_weight"])
    if needs_vgg and vgg16_state_dict is None:
        raise ValueError(f"style_weight={opts['style_weight']} / content_weight="
                         f"{opts['content_weight']} need vgg16_state_dict (or set both to 0)")
    vgg = vgg16_params(vgg16_state_dict) if needs_vgg else None
    if np.dtype(dtype) != np.float32:   # every float variable and both modules' computations
        generator, discriminator = generator.clone(dtype=dtype), discriminator.clone(dtype=dtype)
        g_vars, d_vars, vgg = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype),
                                                     (g_vars, d_vars, vgg))

    replay = dict(replay or {})
    alphas = replay.get("gp_alpha")
    if alphas is None:
        alphas = np.random.default_rng(0).random((steps, batch, 1), dtype=np.float32)
    alphas = np.asarray(alphas, np.float32).reshape(steps, batch)

    if opts["lr_policy"] == "plateau" and steps_per_epoch is not None and steps > steps_per_epoch:
        raise ValueError(official_schedule.PLATEAU.replace("official.lr_policy", "lr_policy"))
    rate = official_schedule.schedule(opts, steps_per_epoch or steps)
    trainer = OfficialStep(generator, discriminator, opts, learning_rate=rate)
    return _Run(opts, trainer, trainer.init_state(g_vars, d_vars), vgg, images, masks, alphas,
                replay.get("rand_tl"), g_kwargs, d_kwargs)


def _batch(run: _Run, t: int, dtype=np.float32):
    """Step ``t``'s batch in our layout (NHWC)."""
    top_left = _top_left(run.opts, run.masks[t], None if run.rand_tl is None else run.rand_tl[t])
    return {"image": np.moveaxis(run.images[t], 1, -1).astype(dtype),
            "hole": np.moveaxis(run.masks[t], 1, -1).astype(dtype),
            "crop_tl": np.asarray(top_left, np.int32), "gp_alpha": run.alphas[t].astype(dtype)}


def train_steps(g_state_dict: Mapping, d_state_dict: Mapping, images, masks,
                options: Mapping | None = None, vgg16_state_dict: Mapping | None = None,
                replay: Mapping | None = None, snapshots: Iterable[int] = (),
                steps_per_epoch: int | None = None, dtype="float32"):
    """Run ``len(images)`` official training steps from official state dicts.

    Args:
      g_state_dict, d_state_dict: the official ``netG`` / ``netD`` state dicts (arrays).
      images: float32 (steps, N, 3, H, W) in [-1, 1], one batch per step (NCHW).
      masks: bool (steps, N, 1, H, W), True = hole (the official ``mask_global``).
      options: official option names and values (``train_options`` / ``base_options``);
        missing ones take the official defaults (:data:`official_options.DEFAULTS`).
      vgg16_state_dict: torchvision ``vgg16`` names (``features.N.weight``); needed
        unless ``style_weight`` and ``content_weight`` are 0.
      replay: the random draws of the official step that are not in the batch:
        ``gp_alpha`` (steps, N, 1), the gradient penalty's factors (wgan_gp; default:
        uniform from numpy seed 0); ``rand_tl`` (steps, 2), the rect hole crop's top left
        (default: the top left of the first image's hole).
      snapshots: steps (1-based) after which to return the state dicts.
      steps_per_epoch: the official iterations per epoch (``ceil(dataset size / batchSize)``),
        over which ``lr_policy`` changes the learning rate once per epoch
        (:mod:`shiftnet_jax.train.official_schedule`); default: every step in the first
        epoch, at ``lr`` times the policy's first factor (1 with the defaults).
      dtype: ``"float64"`` runs every step in float64 (under ``jax.enable_x64``: the
        models, the losses, Adam's state; as :func:`step_gradients`), to compare with the
        official code run in double precision, free of float32 rounding.

    Returns:
      (g, d, losses): the state dicts after the last step (official names, numpy), or
      ``{step: state_dict}`` for each step of ``snapshots``; ``losses``: name -> (steps,)
      float array for ``G_GAN, G_L1, D, style, content, tv`` (the official loss_names)
      and ``G_L1_m`` (the discounted hole L1) and ``guidance`` (InnerCos), unlogged there.
    """
    _check_dtype(dtype)
    with jax.enable_x64(dtype == "float64"):
        return _train_steps(g_state_dict, d_state_dict, images, masks, options,
                            vgg16_state_dict, replay, snapshots, steps_per_epoch, dtype)


def _compiled(fn, dtype, *args):
    """``fn`` jitted (float32), or compiled for ``args`` at XLA optimisation level >= 1
    (float64): XLA:CPU has no library kernels for float64 convolutions, so its emitted
    loops need LLVM's optimisation; at level 0 (as the test suite compiles) a float64
    step runs 15x slower (4.7 s against 0.3 s at ngf 4, 256x256)."""
    if dtype != "float64":
        return jax.jit(fn)
    return jax.jit(fn).lower(*args).compile(
        compiler_options={"xla_backend_optimization_level": 1})


def _check_dtype(dtype):
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def _train_steps(g_state_dict, d_state_dict, images, masks, options, vgg16_state_dict,
                 replay, snapshots, steps_per_epoch, dtype):
    run = _prepare(g_state_dict, d_state_dict, images, masks, options, vgg16_state_dict,
                   replay, steps_per_epoch, dtype=jnp.dtype(dtype))
    opts, steps = run.opts, run.images.shape[0]
    state = run.state
    step_fn = _compiled(run.trainer.step, dtype, state, _batch(run, 0, dtype), run.vgg)
    wanted = sorted({int(s) for s in snapshots})
    if any(not 1 <= s <= steps for s in wanted):
        raise ValueError(f"snapshots must lie in 1 .. {steps}, got {wanted}")
    # BatchNorm counters: G runs twice a step (once with skip), D 3 times (4 with wgan_gp
    # or re_s_gan).
    g_per_step = 1 if opts["skip"] else 2
    d_per_step = 4 if opts["gan_type"] in ("wgan_gp", "re_s_gan") else 3
    g0, d0 = _counter(g_state_dict), _counter(d_state_dict)

    def counters(done):
        return g0 + g_per_step * done, d0 + d_per_step * done

    g_out, d_out, history = {}, {}, []
    for t in range(steps):
        state, scalars = step_fn(state, _batch(run, t, dtype), run.vgg)
        history.append(jax.device_get(scalars))
        if t + 1 in wanted:
            g_out[t + 1], d_out[t + 1] = _to_state_dicts(state, run.g_kwargs, run.d_kwargs,
                                                         opts["norm"], *counters(t + 1))
    losses = {name: np.asarray([float(h[name]) for h in history])
              for name in LOSS_NAMES + EXTRA_LOSS_NAMES}
    if wanted:
        return g_out, d_out, losses
    g, d = _to_state_dicts(state, run.g_kwargs, run.d_kwargs, opts["norm"], *counters(steps))
    return g, d, losses


def step_gradients(g_state_dict: Mapping, d_state_dict: Mapping, image, mask,
                   options: Mapping | None = None, vgg16_state_dict: Mapping | None = None,
                   replay: Mapping | None = None, dtype="float32"):
    """The gradients of one official training step, keyed as the official parameters.

    What ``netG`` / ``netD``'s parameters' ``.grad`` hold after one ``set_input`` +
    ``optimize_parameters`` (G's gradient is taken against the D that the step has just
    updated, as officially). Arguments as :func:`train_steps` for one step: ``image``
    (N, 3, H, W), ``mask`` (N, 1, H, W), ``replay`` values for that step (``gp_alpha``
    (N, 1), ``rand_tl`` (2,)).

    ``dtype="float64"`` computes everything in float64 (under ``jax.enable_x64``): free of
    float32 rounding, so comparable to the official code run in double precision to
    ~1e-12 where float32 runs of either code may differ by 1e-3 (a ReLU input within
    rounding of 0 decides which way; docs/official-mode.md).

    Returns:
      (g_grad, d_grad): dicts of numpy arrays in the official layouts (``dtype``).
    """
    _check_dtype(dtype)
    replay = {k: np.asarray(v)[None] for k, v in dict(replay or {}).items()}
    with jax.enable_x64(dtype == "float64"):
        jdtype = jnp.dtype(dtype)
        run = _prepare(g_state_dict, d_state_dict, np.asarray(image)[None],
                       np.asarray(mask)[None], options, vgg16_state_dict, replay, dtype=jdtype)
        batch = _batch(run, 0, dtype)
        g_grads, d_grads = _compiled(run.trainer.gradients, dtype, run.state, batch,
                                     run.vgg)(run.state, batch, run.vgg)
        g_vars = jax.device_get(run.state.generator)
        g = to_torch_state_dict(run.g_kwargs, {**g_vars, "params": jax.device_get(g_grads)})
        d = patchgan_to_torch_state_dict(run.d_kwargs, {"params": jax.device_get(d_grads)})
    names = set(parameter_names(g_state_dict)) | inert_biases(g_state_dict)
    return ({k: np.asarray(v) for k, v in g.items() if k in names},
            {k: np.asarray(v) for k, v in d.items()})


# ------------------------------------------------------------- comparing runs
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "weight_u", "weight_v")


def inert_biases(state_dict: Mapping) -> set[str]:
    """Conv biases that feed a norm layer (in exact arithmetic their gradient is 0, so
    their Adam update is rounding noise): ``P{i}.bias`` when ``P{i+1}`` is a norm with
    parameters, and the res block's convs (``res_net.0`` / ``.3``, before InstanceNorm)."""
    inert = set()
    for name in state_dict:
        if not name.endswith(".bias"):
            continue
        prefix, _, index = name[:-len(".bias")].rpartition(".")
        if not index.isdigit():
            continue
        after = f"{prefix}.{int(index) + 1}.weight"
        if (after in state_dict and np.ndim(state_dict[after]) == 1) or ".res_net." in name:
            inert.add(name)
    return inert


def parameter_names(state_dict: Mapping) -> list[str]:
    """The trained parameters of a state dict: no buffers, no inert biases."""
    inert = inert_biases(state_dict)
    return sorted(k for k in state_dict if not k.endswith(BUFFER_SUFFIXES) and k not in inert)


def state_dict_errors(ours: Mapping, reference: Mapping, initial: Mapping, names) -> dict:
    """How far ``ours`` is from ``reference`` over ``names`` (flat arrays of equal shapes):
    ``max_rel``: the largest per-tensor ``|ours - ref| / |ref|``; ``rel_change``: ``|ours -
    ref| / |ref - initial|`` over all of them together (relative to how far training moved)."""
    worst, diff2, moved2 = 0.0, 0.0, 0.0
    for name in names:
        o = np.asarray(ours[name], np.float64).ravel()
        r = np.asarray(reference[name], np.float64).ravel()
        i = np.asarray(initial[name], np.float64).ravel()
        worst = max(worst, float(np.linalg.norm(o - r) / max(np.linalg.norm(r), 1e-30)))
        diff2 += float(np.sum((o - r) ** 2))
        moved2 += float(np.sum((r - i) ** 2))
    return {"max_rel": worst, "rel_change": float(np.sqrt(diff2 / max(moved2, 1e-300)))}
