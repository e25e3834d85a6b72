"""Regenerate the reference parity fixtures from the official PyTorch Shift-Net.

Runs the generator of github.com/Zhaoyi-Yan/Shift-Net_pytorch (commit a353431)
on CPU with fixed random weights and writes what ``tests/test_parity.py`` compares
against: one ``shiftnet_ref_<case>.npz`` per hole (keys and layouts as in
``tests/fixtures/README.md``) and ``reference_ngf<N>_center.pth`` (zip-format
``torch.save(state_dict)`` of the centre case's weights).

Nothing of the reference is copied here: it is imported at run time from the
checkout given by ``--ref``, which must stay outside this repository. Needs a
separate venv with torch and numpy (torchvision, scikit-image and Pillow are
replaced by stand-ins, see ``tools/official.py``)::

    python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy
    /work/venv-torch/bin/python tools/make_reference_fixture.py \
        --ref /work/ref/Shift-Net_pytorch --out tests/fixtures

What runs, and the few places where we deviate from the reference's own driver:

* ``which_model_netG=unet_shift_triple``, ``add_mask2input=1``, ``shift_sz=1``,
  ``stride=1``, ``mask_thred=1``, ``triple_weight=1``, ``norm=instance``,
  ``gpu_ids=[]`` (so the shift and InnerCos layers take their ``device='cpu'``
  path and never call ``torch.cuda``), ``skip=1`` (guidance loss off: InnerCos is
  the identity, so the gradient is that of ``sum(output * R)`` alone).
* ``define_G`` hard-codes ``num_downs=8`` (a 1x1 bottleneck for 256x256). To
  shrink the image we call the constructor it calls,
  ``UnetGeneratorShiftTriple``, with ``num_downs = log2(size)`` (the same 1x1
  bottleneck), then the reference's own ``init_net`` (weights N(0, 0.02)).
  At 256 this is exactly what ``define_G`` builds. The shift layer stays where
  the reference puts it (``layer_to_last=3``: features at size / 8).
* Every bias and every 1-D parameter is then perturbed (biases + N(0, 0.05),
  norm scales + N(0, 0.1)) so that a wrong mapping of any tensor shows; with
  ``--round-params`` every parameter is also rounded to the nearest bfloat16
  value (stored as float32): same distribution, but the state compresses ~2x.
* The input is built as ``ShiftNetModel.set_input`` builds it (hole set to 0,
  4th channel 1 on known pixels); the model class itself is not instantiated
  (it would build VGG16 and the discriminator).
* Holes: ``center`` is the reference's centre hole (``overlap=4``); ``irregular``
  is the reference's own 'island' mask (``util.wrapper_gmask``), redrawn until it
  covers 15-30 % of the image (its own 20-30 % check gives up after two tries;
  at 256x256 its masks cover ~10 % on average). Both images of a batch get the same hole: the
  reference's batched shift needs equal hole counts.
* A draw is rejected, and the seed advanced (``meta_seed`` records the one used),
  where float32 rounding could flip a discrete choice and so make two correct
  implementations disagree: a hole decoder vector or known encoder vector at the
  shift layer that is zero (the reference's cosine is then 0/0 = NaN), two
  candidate similarities within ``--min-gap`` (argmax near-tie), or an input of a
  (Leaky)ReLU within ``--min-kink`` of 0 relative to the largest value of its
  channel (the slope flips between 1 and 0.2 or 0: one element of the 256x256
  shared centre fixture lies 8e-8 of its layer's scale below 0, and our float32
  run puts it above, so its gradients differ by 5e-3 while float64 agrees to 1e-5).
  At 64x64/ngf=2 about half the draws are rejected, mostly for zero vectors (the
  shift layer has only 8 channels there).

Patches to the reference: none. No file of it is modified and none of its
functions is replaced; the only run-time changes are those of
``tools/official.load_reference``: stand-in modules for its unused
top-level imports (torchvision, scikit-image, Pillow, when missing) and a
random-weight VGG16 in ``util.util`` (never called here). On CPU nothing calls
``torch.cuda``: with ``gpu_ids=[]`` every layer takes its CPU path.

The larger fixtures in ../shared (256x256, ngf=8) correspond to
``--size 256 --ngf 8 --no-round-params --min-kink 0`` (not bit-identical: they
were drawn with other random numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import random
import sys

import numpy as np
import torch

from official import load_reference  # tools/official.py: stand-ins + imports the reference

CASES = ("center", "irregular")


def make_opt(TrainOptions, args):
    opt = TrainOptions().initialize(argparse.ArgumentParser()).parse_args([])
    opt.isTrain = False
    opt.gpu_ids = []
    opt.ngf, opt.fineSize, opt.batchSize = args.ngf, args.size, args.batch
    opt.which_model_netG, opt.norm, opt.skip = "unet_shift_triple", "instance", 1
    opt.add_mask2input, opt.shift_sz, opt.stride = 1, 1, 1
    opt.mask_thred, opt.triple_weight, opt.overlap = 1, 1, 4
    return opt


def make_hole(case, opt, rutil):
    """(B, 1, S, S) bool, True in the hole, the same for every image."""
    s, o = opt.fineSize, opt.overlap
    if case == "center":
        m = torch.zeros(1, 1, s, s, dtype=torch.bool)
        m[:, :, s // 4 + o: s // 2 + s // 4 - o, s // 4 + o: s // 2 + s // 4 - o] = True
    else:
        for _ in range(1000):
            m = rutil.wrapper_gmask(opt).bool()
            if 0.15 < m.float().mean() < 0.3:
                break
        else:
            raise RuntimeError("no island mask with 15-30 % coverage in 1000 draws")
    return m.expand(opt.batchSize, 1, s, s).clone()


def build_generator(networks, opt, mask, num_downs, round_params):
    cos_list, shift_list = [], []
    with contextlib.redirect_stdout(io.StringIO()):
        net = networks.UnetGeneratorShiftTriple(
            opt.input_nc + 1, opt.output_nc, num_downs, opt, cos_list, shift_list, mask,
            opt.ngf, norm_layer=networks.get_norm_layer(opt.norm), use_spectral_norm=False)
        net = networks.init_net(net, "normal", opt.init_gain, opt.gpu_ids)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * (0.1 if name.endswith("weight") else 0.05))
            if round_params:
                p.copy_(p.to(torch.bfloat16).float())
    for layer in shift_list + cos_list:  # what ShiftNetModel.set_latent_mask does
        layer.set_mask(mask)
    assert len(shift_list) == 1
    return net.eval(), shift_list[0]


def shift_is_well_posed(shift_in, feature_mask, min_gap):
    """No zero vector among hole queries / known keys, no near-tie in the argmax."""
    c = shift_in.shape[1] // 2
    for b in range(shift_in.shape[0]):
        hole = feature_mask[b].reshape(-1).astype(bool)
        feats = shift_in[b].reshape(2 * c, -1).T.astype(np.float64)
        q, k = feats[hole, :c], feats[~hole, c:]
        qn, kn = np.linalg.norm(q, axis=1), np.linalg.norm(k, axis=1)
        if (qn == 0).any() or (kn == 0).any():
            return False, "zero feature vector"
        cos = (q / qn[:, None]) @ (k / kn[:, None]).T
        top2 = np.sort(cos, axis=1)[:, -2:]
        if (top2[:, 1] - top2[:, 0]).min() < min_gap:
            return False, f"argmax gap {(top2[:, 1] - top2[:, 0]).min():.2e}"
    return True, ""


def closest_to_kink(x):
    """min |x| / max |x| per channel, smallest over channels (NCHW). Per channel, as
    rounding errors scale with a channel's magnitude, and concatenated skips mix
    channels of very different scales."""
    a = x.abs().transpose(0, 1).reshape(x.shape[1], -1)
    return float((a.min(dim=1).values / a.max(dim=1).values.clamp_min(1e-30)).min())


def run_case(case, networks, rutil, opt, args, seed):
    size, batch = opt.fineSize, opt.batchSize
    torch.manual_seed(seed)
    random.seed(seed)  # wrapper_gmask draws its crop with python's random
    mask = make_hole(case, opt, rutil)
    net, shift_layer = build_generator(networks, opt, mask, args.num_downs, args.round_params)

    rng = np.random.default_rng(seed)
    # Images as a loader gives them: uint8 pixels mapped to [-1, 1].
    gt = torch.from_numpy((rng.integers(0, 256, (batch, 3, size, size)) / 127.5 - 1)
                          .astype(np.float32))
    real_a = gt.clone().masked_fill(mask, 0.0)  # set_input, add_mask2input=1
    x = torch.cat([real_a, (~mask).expand(batch, 1, size, size).type_as(real_a)], dim=1)
    # R: random signs (compress to ~1 bit each; any fixed R will do).
    weights = torch.from_numpy(rng.choice(np.float32([-1, 1]), (batch, 3, size, size)))

    seen, kinks = {}, []
    hooks = [shift_layer.register_forward_hook(
        lambda m, i, o: seen.update(shift_in=i[0].detach().clone(), shift_out=o.detach().clone()))]
    for module in net.modules():  # pre-hooks see the input before the in-place ReLUs
        if isinstance(module, (torch.nn.ReLU, torch.nn.LeakyReLU)):
            hooks.append(module.register_forward_pre_hook(
                lambda m, i: kinks.append(closest_to_kink(i[0].detach()))))
    out = net(x)
    for hook in hooks:
        hook.remove()
    (out * weights).sum().backward()

    feature_mask = shift_layer.mask_all[:, 0].numpy().astype(np.uint8)
    shift_in = seen["shift_in"].numpy()
    ok, why = shift_is_well_posed(shift_in, feature_mask, args.min_gap)
    finite = torch.isfinite(out).all() and all(torch.isfinite(p.grad).all()
                                                for p in net.parameters())
    if ok and min(kinks) < args.min_kink:
        ok, why = False, f"(Leaky)ReLU input {min(kinks):.1e} of its max from 0"
    if not (ok and finite):
        return None, why or "non-finite output or gradient"

    arrays = {
        "meta_ngf": np.int64(opt.ngf), "meta_size": np.int64(size),
        "meta_norm": np.str_(opt.norm), "meta_num_downs": np.int64(args.num_downs),
        "meta_seed": np.int64(seed), "meta_commit": np.str_(args.commit or "unknown"),
        "meta_torch": np.str_(torch.__version__),
        "input_gt": gt.numpy(), "mask": mask.numpy(), "input_masked": x.numpy(),
        "feature_mask": feature_mask, "shift_in": shift_in,
        "shift_out": seen["shift_out"].numpy(), "output": out.detach().numpy(),
        "loss_weights": weights.numpy(),
    }
    state = net.state_dict()
    grads = dict(net.named_parameters())
    for name, value in state.items():
        arrays[f"state/{name}"] = value.numpy()
        arrays[f"grad/{name}"] = grads[name].grad.numpy()
    return (arrays, state), ""


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", required=True, help="checkout of Shift-Net_pytorch (a353431)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--ngf", type=int, default=2)
    p.add_argument("--size", type=int, default=64, help="image size, a power of two >= 32")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-gap", type=float, default=1e-4,
                   help="smallest allowed gap between the best and second-best cosine")
    p.add_argument("--min-kink", type=float, default=3e-6,
                   help="smallest allowed |ReLU input| / max |ReLU input| of its channel "
                        "(0: no check; at 256x256 some element nearly always lies closer)")
    p.add_argument("--round-params", action=argparse.BooleanOptionalAction, default=True,
                   help="round parameters to bfloat16 values (smaller files)")
    p.add_argument("--no-pth", action="store_true", help="skip the .pth of the centre case")
    args = p.parse_args()

    args.num_downs = int(round(math.log2(args.size)))
    if 2 ** args.num_downs != args.size or args.num_downs < 5:
        sys.exit("--size must be a power of two >= 32 (the U-Net halves it down to 1x1)")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    networks, _, TrainOptions, args.commit = load_reference(args.ref)
    if not str(args.commit).startswith("a353431"):
        print(f"warning: {args.ref} is at {args.commit}, the fixtures were made at a353431")
    import util.util as rutil  # the reference's, imported by load_reference

    opt = make_opt(TrainOptions, args)
    os.makedirs(args.out, exist_ok=True)
    for index, case in enumerate(c.strip() for c in args.cases.split(",")):
        if case not in CASES:
            sys.exit(f"unknown case {case!r}; known: {', '.join(CASES)}")
        for attempt in range(50):
            seed = args.seed + 1000 * index + attempt
            result, why = run_case(case, networks, rutil, opt, args, seed)
            if result is not None:
                break
            print(f"{case}: seed {seed} rejected ({why})")
        else:
            sys.exit(f"{case}: no usable seed in 50 attempts")
        arrays, state = result
        path = os.path.join(args.out, f"shiftnet_ref_{case}.npz")
        np.savez_compressed(path, **arrays)
        print(f"{case}: seed {seed}, hole {arrays['mask'].mean():.3f}, "
              f"feature hole {int(arrays['feature_mask'][0].sum())}/"
              f"{arrays['feature_mask'][0].size}, wrote {path} ({os.path.getsize(path)} bytes)")
        if case == "center" and not args.no_pth:
            pth = os.path.join(args.out, f"reference_ngf{args.ngf}_center.pth")
            torch.save(state, pth)
            print(f"wrote {pth} ({os.path.getsize(pth)} bytes)")
    print(f"reference commit {args.commit}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
