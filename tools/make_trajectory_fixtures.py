"""Trajectory parity fixtures: the official training loop, replayed step by step.

    python tools/make_trajectory_fixtures.py --ref /tmp/official --out tests/fixtures

(torch in the venv: ``pip install torch`` (a CPU wheel is enough); the official
checkout from github.com/Zhaoyi-Yan/Shift-Net_pytorch, a353431, outside this repository.)
Nothing of the official code is copied: its ``ShiftNetModel`` is imported from
``--ref`` at run time and driven as its ``train.py`` drives it (``set_input`` then
``optimize_parameters``; ``tools/official_loop.py``), on CPU (``gpu_ids=[]``), for ``--steps`` steps of a batch
of ``--batch`` images at 256x256 (``define_G`` builds 8 levels: the official
generator needs 256x256) with ``--ngf`` / ``--ndf`` 4.

What differs from an official run, and why:

* The initial weights are ours, the same for every setting: conv weights N(0, 0.02),
  biases N(0, 0.05), norm scales 1 + N(0, 0.1) (every tensor of the official
  ``init_net`` plus perturbations that make a wrong mapping show), all rounded to
  bfloat16 values so that they are stored in 2 bytes; spectral norm's ``u``, ``v``
  are those the official code drew (torch seed ``--seed``).
* VGG16 (the style and content losses) has torchvision's layer layout with 8/16/16
  channels and seeded random weights: the ImageNet weights are a download.
* The images are 4 seeded uint8 noise images, cycled (step t's batch is images
  ``(N t + i) % 4``), small to store. (Noise upsampled from 64x64 was tried first: its
  piecewise-constant blocks make XLA's jitted gradient differ from the op-by-op one
  by 1e-3 while the forward agrees to 2e-7; we have not found why.)

Each setting runs with 1 torch thread (the reference run, whose losses and state dicts
are recorded), and then again only to measure how far the official code drifts from
itself in float32, recorded per step:

* with 2 threads (the "spread" of issue 16);
* with oneDNN (mkldnn) off, so that torch convolves by another float32 path;
* from G and D parameters moved by one float32 ulp each (random signs, 3 draws);

the largest distance of these to the reference run is the "float32 spread". On the
paper, wgan_gp and batch_norm settings some of them already move G after step 1 by
4e-4 .. 2e-3 (relative): one ReLU input within float32 rounding of 0 flips, and Adam's
first step, ``lr * g / |g|``, turns the small change of the gradient into a full step
on every small gradient element. Then the whole loop once more in float64 (the model, the
inputs, the losses and Adam's state in double), recording step 1's G and D gradients,
every loss and the parameters at the snapshots: free of float32 rounding, the reference
our float64 run is held to (``--float64-only`` adds just these keys to existing
fixtures).

A seed whose run gives a non-finite loss (the official cosine divides by zero for zero
feature vectors) is rejected and the next one tried.

Writes ``trajectory_common.npz`` (images, initial weights, VGG16), one
``trajectory_<setting>.npz`` per setting (keys in ``tests/fixtures/README.md``) and
``vgg16_narrow.pth``, that VGG16 as a torchvision state dict file.

``--settings res --reuse-common`` adds a setting to existing fixtures: the initial G
weights already in ``--out``'s ``trajectory_common.npz`` are kept (its images and VGG16
must be the ones this seed draws), only the new setting's new tensors are drawn, and
the common file is rewritten with them added.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import types

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from official import load_reference  # noqa: E402  (tools/official.py: this script's folder)
from official_loop import SNAPSHOTS, build_model, finite, float32_variants, run  # noqa: E402
from trajectory import from_bf16_bits, load  # noqa: E402  (the fixtures as the tests read them)

from shiftnet_jax.official import parameter_names, state_dict_errors  # noqa: E402

SETTINGS = {
    "paper": dict(),   # unet_shift_triple, vanilla GAN, centre holes, instance norm
    "rect_lsgan": dict(gan_type="lsgan", mask_type="random", mask_sub_type="rect", tv_weight=0.1),
    "wgan_gp": dict(gan_type="wgan_gp"),
    "batch_norm": dict(norm="batch"),
    # The official res_unet_shift_triple cannot be built as it is (a353431:
    # InnerResShiftTriple.__init__() got an unexpected keyword argument 'device'), nor
    # given a mask: the least patches that let it run, P1 and P3 of
    # make_variant_fixtures.py, are made at run time (no file of the checkout changes).
    "res": dict(which_model_netG="res_unet_shift_triple"),
}
SUBSET = 16          # after step 1, G is stored at every 16th element of each tensor
# The float64 gradients are stored at every 17th element: a stride that is a multiple of
# 16 (kH kW) would pick only the (0, 0) tap of every 4x4 kernel, whose gradient is 0
# at the innermost level (1x1 and 2x2 maps: that tap only ever sees padding).
GRAD_SUBSET = 17
# The float64 run's parameters at the snapshots: every 67th element (a prime, for the same
# reason), small enough to store in float64 for every snapshot.
TRAJ_SUBSET = 67
VGG_WIDTHS = [8, 8, "M", 16, 16, "M", 16, 16, 16, "M"]
IMAGES = 4           # distinct images, cycled: step t's batch is images (N t + i) % 4


def batches(images_u8, steps, batch):
    """(steps, batch, 3, H, W): step t takes images (batch * t + i) % len(images_u8)."""
    index = (np.arange(steps)[:, None] * batch + np.arange(batch)[None]) % len(images_u8)
    return images_u8[index]


def bf16_round(x: np.ndarray) -> np.ndarray:
    """Round float32 to the nearest bfloat16 value (ties to even), kept as float32."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def to_bf16_bits(x):
    return (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype(np.uint16)


def make_opt(TrainOptions, args, setting):
    opt = TrainOptions().initialize(argparse.ArgumentParser()).parse_args([])
    opt.isTrain, opt.gpu_ids, opt.continue_train = True, [], False
    opt.checkpoints_dir = tempfile.mkdtemp(prefix="official_ckpt_")
    opt.ngf, opt.ndf, opt.batchSize, opt.fineSize = args.ngf, args.ndf, args.batch, 256
    for key, value in SETTINGS[setting].items():
        setattr(opt, key, value)
    return opt


def narrow_vgg16(rng):
    """torchvision's vgg16.features layout up to pool3 with VGG_WIDTHS channels."""
    layers, c_in = [], 3
    for v in VGG_WIDTHS:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
            continue
        conv = torch.nn.Conv2d(c_in, v, 3, padding=1)
        with torch.no_grad():
            w = rng.normal(0, np.sqrt(2.0 / (9 * c_in)), conv.weight.shape)
            conv.weight.copy_(torch.from_numpy(bf16_round(w.astype(np.float32))))
            conv.bias.copy_(torch.from_numpy(bf16_round(rng.normal(0, 0.01, v).astype(np.float32))))
        layers += [conv, torch.nn.ReLU(inplace=True)]
        c_in = v
    return types.SimpleNamespace(features=torch.nn.Sequential(*layers))


def initial_value(name, shape, rng):
    if name.endswith(("weight", "weight_orig")) and len(shape) == 4:
        return bf16_round(rng.normal(0, 0.02, shape).astype(np.float32))
    if name.endswith("weight"):
        return bf16_round((1 + rng.normal(0, 0.1, shape)).astype(np.float32))
    return bf16_round(rng.normal(0, 0.05, shape).astype(np.float32))


def initial_state(net, shared, rng, own=None):
    """``net``'s state dict with every parameter from ``shared`` (drawn on first use); a
    parameter whose name is shared with another shape (the res generator's up conv after
    the shift reads 2C channels, not 3C) is drawn for this net alone, into ``own``."""
    state = {k: v.detach().clone().numpy() for k, v in net.state_dict().items()}
    for name, _ in net.named_parameters():
        if name not in shared:
            shared[name] = initial_value(name, state[name].shape, rng)
        if shared[name].shape != state[name].shape:
            own[name] = initial_value(name, state[name].shape, rng)
            state[name] = own[name]
            continue
        state[name] = shared[name]
    return state


def spreads(snaps1, snaps2, g0, d0, prefix="spread"):
    """The official code against itself: errors of run 2 against run 1 per snapshot."""
    out = {}
    for s in SNAPSHOTS:
        (g1, d1), (g2, d2) = snaps1[s], snaps2[s]
        for net, a, b, init in (("g", g1, g2, g0), ("d", d1, d2, d0)):
            err = state_dict_errors(b, a, init, parameter_names(a))
            for key, value in err.items():
                out[f"{prefix}/{net}_{key}/{s}"] = np.float64(value)
    return out


def float32_spreads(result1, variants, g0, d0):
    """The largest distance of the variant runs to the reference run: per snapshot
    (``spread_f32/...``, as :func:`spreads`) and per step and loss (``losses_spread/...``)."""
    out = {}
    for result in variants:
        for key, value in spreads(result1[1], result[1], g0, d0, "spread_f32").items():
            out[key] = max(out.get(key, np.float64(0)), value)
        for name, ref in result1[0].items():
            key = f"losses_spread/{name}"
            out[key] = np.maximum(out.get(key, np.zeros_like(ref)), np.abs(result[0][name] - ref))
    return out


def subset(grads, stride=GRAD_SUBSET):
    """Every ``stride``-th element of each flattened tensor, float64."""
    return {n: np.asarray(g, np.float64).ravel()[::stride] for n, g in grads.items()}


def float64_arrays(grads, losses, snaps):
    """The float64 run's keys: step 1's gradients (``grad64_*``), every loss per step and
    the trained parameters at SNAPSHOTS (``traj64/*``, every TRAJ_SUBSET-th element)."""
    arrays = {f"grad64_g/{n}": v for n, v in subset(grads[0]).items()}
    arrays.update({f"grad64_d/{n}": v for n, v in subset(grads[1]).items()})
    for name, values in losses.items():
        arrays[f"traj64/losses/{name}"] = np.asarray(values, np.float64)
    for s in SNAPSHOTS:
        for net, state in zip("gd", snaps[s]):
            names = parameter_names(state)
            arrays.update({f"traj64/{net}_step{s}/{n}": v
                           for n, v in subset({n: state[n] for n in names}, TRAJ_SUBSET).items()})
    return arrays


def exact_spreads(float64_run, float32_runs, g0, d0):
    """How far the official float32 runs lie from the float64 one (the exact trajectory,
    to float64 rounding): the largest distance over the runs, per snapshot on the stored
    float64 elements (``exact_f32/{g,d}_{max_rel,rel_change}/<step>``) and per step and
    loss (``losses_exact_f32/<name>``)."""
    _, losses64, snaps64 = float64_run
    out = {}
    for result in float32_runs:
        losses, snaps = result[0], result[1]
        for s in SNAPSHOTS:
            for net, state, exact, init in (("g", snaps[s][0], snaps64[s][0], g0),
                                            ("d", snaps[s][1], snaps64[s][1], d0)):
                names = parameter_names(exact)
                pick = [subset({n: st[n] for n in names}, TRAJ_SUBSET) for st in (state, exact, init)]
                for key, value in state_dict_errors(*pick, names).items():
                    k = f"exact_f32/{net}_{key}/{s}"
                    out[k] = max(out.get(k, np.float64(0)), np.float64(value))
        for name, exact in losses64.items():
            k = f"losses_exact_f32/{name}"
            err = np.abs(np.asarray(losses[name], np.float64) - np.asarray(exact, np.float64))
            out[k] = np.maximum(out.get(k, np.zeros_like(err)), err)
    return out


def add_float64(args, ShiftNetModel, TrainOptions, vgg, images, setting):
    """Re-run ``setting``'s existing fixture in float64 for every step and add its
    ``grad64_*`` and ``traj64/*`` keys (every other key is kept as it was)."""
    arrays, g0, d0 = load(setting, args.out)
    arrays = dict(arrays)
    opt, seed = make_opt(TrainOptions, args, setting), int(arrays["meta_seed"])
    float64_run = run(ShiftNetModel, opt, vgg, g0, d0, images, seed, 1, args.steps, double=True)
    float32_runs = [run(ShiftNetModel, opt, vgg, g0, d0, images, seed, threads, args.steps)
                    for threads in (1, 2)]
    float32_runs += float32_variants(ShiftNetModel, opt, vgg, g0, d0, images, seed, args.steps)
    if not np.array_equal(float32_runs[0][0]["G_L1"], arrays["losses/G_L1"]):
        sys.exit(f"{setting}: the official float32 run no longer gives the fixture's losses")
    arrays = {k: v for k, v in arrays.items()
              if not k.startswith(("grad64_", "traj64/", "exact_f32/", "losses_exact_f32/"))}
    arrays.update(float64_arrays(*float64_run))
    arrays.update(exact_spreads(float64_run, float32_runs, g0, d0))
    losses = float64_run[1]
    arrays["meta_traj_subset"] = np.int64(TRAJ_SUBSET)
    path = os.path.join(args.out, f"trajectory_{setting}.npz")
    np.savez_compressed(path, **arrays)
    print(f"{setting}: float64 run added to {path} ({os.path.getsize(path)} bytes); "
          + ", ".join(f"{k} {v[0]:.6g}->{v[-1]:.6g}" for k, v in losses.items()))


def setting_arrays(setting, opt, losses1, losses2, snaps1, rand_tl, alphas, g0, d0, spread):
    arrays = {"meta_options": np.str_(json.dumps(SETTINGS[setting], sort_keys=True)),
              "rand_tl": rand_tl, "gp_alpha": alphas, **spread}
    for name in losses1:
        arrays[f"losses/{name}"] = losses1[name]
        arrays[f"losses_2threads/{name}"] = losses2[name]
    for s in SNAPSHOTS:
        g, d = snaps1[s]
        for name, value in g.items():
            if value.dtype.kind != "f":
                arrays[f"g_step{s}/{name}"] = value
                continue
            delta = (value - g0[name]).ravel()
            arrays[f"g_step{s}/{name}"] = (delta if s == 1 else delta[::SUBSET]).astype(np.float16)
        for name, value in d.items():
            arrays[f"d_step{s}/{name}"] = value
    return arrays


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", required=True, help="checkout of Shift-Net_pytorch (a353431)")
    p.add_argument("--out", required=True)
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--ngf", type=int, default=4)
    p.add_argument("--ndf", type=int, default=4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--commit", default=None,
                   help="the official commit, recorded when --ref is not a git checkout")
    p.add_argument("--reuse-common", action="store_true",
                   help="keep the initial G of --out's trajectory_common.npz (adding a setting)")
    p.add_argument("--float64-only", action="store_true",
                   help="only (re)run the float64 trajectory of --out's existing fixtures")
    args = p.parse_args()
    _, ShiftNetModel, TrainOptions, commit = load_reference(args.ref)
    from make_variant_fixtures import patch_reference   # P1, P3: the res generator runs
    patch_reference()
    commit = commit or args.commit
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    images_u8 = rng.integers(0, 256, (IMAGES, 3, 256, 256), dtype=np.uint8)
    images = (batches(images_u8, args.steps, args.batch) / 127.5 - 1).astype(np.float32)
    vgg = narrow_vgg16(rng)
    if args.float64_only:
        old = np.load(os.path.join(args.out, "trajectory_common.npz"))
        if not np.array_equal(old["images_u8"], images_u8):
            sys.exit(f"{args.out}: its fixtures' images are not seed {args.seed}'s")
        for setting in [s.strip() for s in args.settings.split(",")]:
            add_float64(args, ShiftNetModel, TrainOptions, vgg, images, setting)
        return
    shared_g, shared_d = {}, {}
    common_path = os.path.join(args.out, "trajectory_common.npz")
    if args.reuse_common:
        old = np.load(common_path)
        same = np.array_equal(old["images_u8"], images_u8) and all(
            np.array_equal(old[f"vgg/features.{k}"], v.numpy())
            for k, v in vgg.features.state_dict().items())
        if not same:
            sys.exit(f"{common_path}: its images or VGG16 are not this seed's")
        shared_g = {k[len("g_init/"):]: from_bf16_bits(old[k])
                    for k in old.files if k.startswith("g_init/")}
    common = {"images_u8": images_u8,
              "meta_commit": np.str_(commit or "unknown"), "meta_torch": np.str_(torch.__version__),
              "meta_ngf": np.int64(args.ngf), "meta_ndf": np.int64(args.ndf),
              "meta_snapshots": np.asarray(SNAPSHOTS), "meta_subset": np.int64(SUBSET)}
    for name, value in vgg.features.state_dict().items():
        common[f"vgg/features.{name}"] = value.numpy()
    # The same VGG16 as a torchvision state dict file, for configs with style/content losses.
    torch.save({f"features.{k}": v for k, v in vgg.features.state_dict().items()},
               os.path.join(args.out, "vgg16_narrow.pth"))
    for setting in [s.strip() for s in args.settings.split(",")]:
        opt = make_opt(TrainOptions, args, setting)
        for attempt in range(10):
            seed = args.seed + attempt
            torch.manual_seed(seed)
            model = build_model(ShiftNetModel, opt, vgg)
            own_g = {}
            g0 = initial_state(model.netG, shared_g, rng, own_g)
            d0 = initial_state(model.netD, shared_d, rng)
            result1 = run(ShiftNetModel, opt, vgg, g0, d0, images, seed, 1, args.steps)
            if finite(result1[0], result1[1]):
                break
            print(f"{setting}: seed {seed} rejected (non-finite loss or weight)")
        else:
            sys.exit(f"{setting}: no usable seed")
        result2 = run(ShiftNetModel, opt, vgg, g0, d0, images, seed, 2, args.steps)
        variants = [result2] + float32_variants(ShiftNetModel, opt, vgg, g0, d0, images, seed,
                                                args.steps)
        float64_run = run(ShiftNetModel, opt, vgg, g0, d0, images, seed, 1, args.steps,
                          double=True)
        losses1, snaps1, rand_tl, alphas, _ = result1
        arrays = setting_arrays(setting, opt, losses1, result2[0], snaps1, rand_tl, alphas,
                                g0, d0, spreads(snaps1, result2[1], g0, d0))
        arrays.update(float32_spreads(result1, variants, g0, d0))
        arrays.update(float64_arrays(*float64_run))
        arrays.update(exact_spreads(float64_run, [result1] + variants, g0, d0))
        arrays["meta_seed"] = np.int64(seed)
        arrays["meta_grad_subset"] = np.int64(GRAD_SUBSET)
        arrays["meta_traj_subset"] = np.int64(TRAJ_SUBSET)
        for name, value in d0.items():
            arrays[f"d_init/{name}"] = value
        for name in g0:   # buffers of the initial G (BatchNorm's running statistics)
            if name not in shared_g:
                arrays[f"g_init_buffers/{name}"] = g0[name]
        for name, value in own_g.items():   # this setting's own shapes (bfloat16 values)
            arrays[f"g_init_own/{name}"] = to_bf16_bits(value)
        path = os.path.join(args.out, f"trajectory_{setting}.npz")
        np.savez_compressed(path, **arrays)
        print(f"{setting}: seed {seed}, wrote {path} ({os.path.getsize(path)} bytes); "
              + ", ".join(f"{k} {v[0]:.4g}->{v[-1]:.4g}" for k, v in losses1.items())
              + "; float32 spread of G after step 1 " + f"{arrays['spread_f32/g_max_rel/1']:.3g}")
    for name, value in shared_g.items():
        common[f"g_init/{name}"] = to_bf16_bits(value)
    path = common_path
    np.savez_compressed(path, **common)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); commit {commit}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
