"""The official training loop, run on given weights: for the trajectory fixtures.

``ShiftNetModel`` (imported from the official checkout by ``tools/official.py``) is
driven as its ``train.py`` drives it, ``set_input`` then ``optimize_parameters``, on CPU,
from state dicts we give it: in float32 (any number of torch threads, oneDNN on or
off, parameters moved by one ulp) or wholly in float64. Nothing of the official code is
copied or changed; the only run-time shims are for torch versions (Adam's betas) and
float64 (``torch.rand`` drawing float32 numbers). Used by
``tools/make_trajectory_fixtures.py``. Needs torch.
"""

from __future__ import annotations

import contextlib
import io
import types

import numpy as np
import torch

from shiftnet_jax.official import BUFFER_SUFFIXES

SNAPSHOTS = (1, 2, 5, 10)   # the steps after which the state dicts are kept
ULP_SEEDS = (1, 2, 3)       # the float32 spread's runs from parameters moved by one ulp


def _float_betas():
    """The official wgan_gp path sets ``opt.beta1 = 0`` (an int) and passes betas (0, 0.9),
    which torch >= 2.x rejects ("betas must be either both floats or both Tensors"): a
    torch-version shim that casts them to float, nothing of the official code changes."""
    adam_init = torch.optim.Adam.__init__
    if getattr(adam_init, "_float_betas", False):
        return

    def init(self, params, lr=1e-3, betas=(0.9, 0.999), *a, **kw):
        adam_init(self, params, lr, tuple(float(b) for b in betas), *a, **kw)
    init._float_betas = True
    torch.optim.Adam.__init__ = init


def build_model(ShiftNetModel, opt, vgg):
    import util.util as rutil
    _float_betas()
    rutil.models = types.SimpleNamespace(vgg16=lambda pretrained=False: vgg)
    model = ShiftNetModel()
    with contextlib.redirect_stdout(io.StringIO()):
        model.initialize(opt)
    return model


def ulp_moved(state, names, seed):
    """``state`` with each float32 parameter of ``names`` one ulp up or down (random signs)."""
    rng = np.random.default_rng(seed)
    out = dict(state)
    for name in names:
        towards = np.where(rng.random(state[name].shape) < 0.5, -np.inf, np.inf)
        out[name] = np.nextafter(state[name], towards.astype(np.float32))
    return out


@contextlib.contextmanager
def float64_step(model):
    """The model, its losses, Adam's state and the gradient penalty's draws in float64
    (the draws are the same float32 numbers), no official code changed."""
    rand, default = torch.rand, torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    for module in (model.netG, model.netD, model.vgg16_extractor, model.criterionL1_mask,
                   model.criterionGAN):
        module.double()
    for optimizer in (model.optimizer_G, model.optimizer_D):
        optimizer.state.clear()
    torch.rand = lambda *size, **kw: rand(*size, dtype=torch.float32).double()
    try:
        yield
    finally:
        torch.rand = rand
        torch.set_default_dtype(default)
        model.vgg16_extractor.float()   # its modules are the shared VGG16's (float32 values)


def run(ShiftNetModel, opt, vgg, g0, d0, images, seed, threads, steps, mkldnn=True,
        double=False):
    """The official loop; returns losses per step, snapshots, rand_tl and gp_alpha draws
    (with ``double``, the whole loop in float64: step 1's gradients, losses, snapshots)."""
    draws = ("rand_t", "rand_l", "gp_alpha")   # recorded per step beside the losses
    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mkldnn
    torch.manual_seed(seed)
    np.random.seed(seed)   # create_rand_mask draws with numpy
    model = build_model(ShiftNetModel, opt, vgg)
    model.netG.load_state_dict({k: torch.from_numpy(v) for k, v in g0.items()})
    model.netD.load_state_dict({k: torch.from_numpy(v) for k, v in d0.items()})
    if double:
        with float64_step(model):
            losses, snaps, grads = loop(model, images, steps, torch.float64)
        torch.backends.mkldnn.enabled = True
        return grads, {k: v for k, v in losses.items() if k not in draws}, snaps
    losses, snaps, _ = loop(model, images, steps, torch.float32)
    rand_tl = [(t, l) for t, l in zip(losses.pop("rand_t"), losses.pop("rand_l"))]
    alphas = losses.pop("gp_alpha")
    masks = model.mask_global.numpy()   # the last one (rect masks are rebuilt from rand_tl)
    torch.backends.mkldnn.enabled = True
    return ({k: np.asarray(v, np.float64) for k, v in losses.items()}, snaps,
            np.asarray(rand_tl, np.int16), np.asarray(alphas, np.float32), masks)


def loop(model, images, steps, dtype):
    """``steps`` official iterations: (losses and draws per step, {step: (G, D) state
    dicts} at SNAPSHOTS, step 1's parameter gradients (G, D))."""
    losses, snaps, grads = {}, {}, None
    for t in range(steps):
        image = torch.from_numpy(images[t]).to(dtype)
        data = {"A": image.clone(), "B": image.clone(), "A_paths": [""] * len(image),
                "M": torch.zeros(image.shape[0], 1, *image.shape[2:])}
        model.set_input(data)
        top_left = (model.rand_t, model.rand_l)
        rng_state = torch.get_rng_state()   # what cal_gradient_penalty draws next
        alpha = torch.rand(image.shape[0], 1, dtype=torch.float32).numpy()
        torch.set_rng_state(rng_state)
        model.optimize_parameters()
        if t == 0:
            grads = ({n: p.grad.numpy().copy() for n, p in model.netG.named_parameters()},
                     {n: p.grad.numpy().copy() for n, p in model.netD.named_parameters()})
        current = model.get_current_losses()
        current.update(G_L1_m=float(model.loss_G_L1_m), rand_t=top_left[0], rand_l=top_left[1],
                       gp_alpha=alpha)
        for name, value in current.items():
            losses.setdefault(name, []).append(value)
        if t + 1 in SNAPSHOTS:
            snaps[t + 1] = ({k: v.detach().clone().numpy() for k, v in model.netG.state_dict().items()},
                            {k: v.detach().clone().numpy() for k, v in model.netD.state_dict().items()})
    return losses, snaps, grads


def finite(losses, snaps):
    return all(np.isfinite(v).all() for v in losses.values()) and all(
        np.isfinite(a).all() for g, d in snaps.values() for a in [*g.values(), *d.values()]
        if a.dtype.kind == "f")


def float32_variants(ShiftNetModel, opt, vgg, g0, d0, images, seed, steps):
    """The official float32 runs beside the reference and 2-thread ones: without oneDNN,
    and from G and D parameters moved by one ulp (ULP_SEEDS)."""
    # The parameters: the state dicts' entries that are not buffers, in their order.
    g_params = [n for n in g0 if not n.endswith(BUFFER_SUFFIXES)]
    d_params = [n for n in d0 if not n.endswith(BUFFER_SUFFIXES)]
    out = [run(ShiftNetModel, opt, vgg, g0, d0, images, seed, 1, steps, mkldnn=False)]
    for ulp_seed in ULP_SEEDS:
        out.append(run(ShiftNetModel, opt, vgg, ulp_moved(g0, g_params, ulp_seed),
                       ulp_moved(d0, d_params, 100 + ulp_seed), images, seed, 1, steps))
    return out
