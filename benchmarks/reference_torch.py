"""Time the official PyTorch Shift-Net (reference side of the side-by-side benchmark).

Nothing of the reference is vendored here: the script imports it at run time from a
checkout given by ``--ref``.  Setup (``ref/`` and ``.venv-ref/`` are git-ignored):

    # checkout of github.com/Zhaoyi-Yan/Shift-Net_pytorch (fixtures used a353431)
    git clone https://github.com/Zhaoyi-Yan/Shift-Net_pytorch ref/Shift-Net_pytorch
    # separate venv, CPU torch (or a CUDA build of the same version on a GPU box)
    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.13.0 numpy

    .venv-ref/bin/python benchmarks/reference_torch.py --ref ref/Shift-Net_pytorch \
        --device cpu --threads 2 --batch 1,8 --json bench_out/reference_cpu.json

What is timed (random weights, the reference's own ``normal(0, 0.02)`` init, centre
hole 120x120 = fineSize/2 minus overlap 4 per side, as the reference's default):
  * inference: one ``netG(input)`` call of ``unet_shift_triple`` built by the
    reference's ``networks.define_G``, eval mode, ``torch.no_grad()``.  (The
    reference's ``test()`` would run G twice: once on the ground truth for the
    guidance target, then on the masked input; only the second pass is timed.)
  * training: one iteration of the reference's ``ShiftNetModel`` exactly as
    ``train.py`` drives it: ``set_input`` + ``optimize_parameters`` (G forward on the
    ground truth for the InnerCos target, G forward on the masked input, D update,
    G update with L1x100 + discounted hole L1x400 + GANx0.2 + VGG16 style x10 and
    content x1 + TV x0 + guidance via InnerCos x1), with its default options.
    The data loader is replaced by tensors already on the device.

The reference needs torchvision (VGG16 for the style/content losses, ImageNet
weights downloaded on first use), scikit-image and Pillow only for code we do not
run.  No network is assumed: missing packages are replaced by small stand-ins, and
VGG16 is always built here with the standard VGG16 layer layout and *random*
weights (timing is unaffected; loss values are not those of the real recipe).
"""
import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):   # run as a file: the repository root holds `tools`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.official import load_reference  # noqa: E402


def make_opt(TrainOptions, args, batch):
    """The reference's own training defaults, then our size/ngf/device/batch."""
    opt = TrainOptions().initialize(argparse.ArgumentParser()).parse_args([])
    opt.isTrain = True
    opt.gpu_ids = [0] if args.device == "cuda" else []
    opt.ngf, opt.fineSize, opt.batchSize = args.ngf, args.size, batch
    return opt


def centre_mask(opt, batch, device):
    """bool B x 1 x S x S, True in the hole: rows/cols [S/4+overlap, 3S/4-overlap)."""
    s, o = opt.fineSize, opt.overlap
    m = torch.zeros(batch, 1, s, s, dtype=torch.bool)
    m[:, :, s // 4 + o: s // 2 + s // 4 - o, s // 4 + o: s // 2 + s // 4 - o] = True
    return m.to(device)


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device, warmup, repeats):
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def bench_inference(networks, TrainOptions, args, batch, quiet):
    opt = make_opt(TrainOptions, args, batch)
    mask = centre_mask(opt, batch, args.device)
    with quiet():
        net, cos_list, shift_list = networks.define_G(
            opt.input_nc + 1, opt.output_nc, opt.ngf, opt.which_model_netG, opt, mask,
            opt.norm, opt.use_spectral_norm_G, opt.init_type, opt.gpu_ids, opt.init_gain)
    for layer in shift_list + cos_list:  # the model's set_latent_mask
        layer.set_mask(mask)
    net.to(args.device).eval()
    img = torch.rand(batch, 3, opt.fineSize, opt.fineSize, device=args.device) * 2 - 1
    img = img.masked_fill(mask, 0.0)  # hole set to 0, then the "known" channel (1 = known)
    x = torch.cat([img, (~mask).float()], dim=1)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (batch, 3, opt.fineSize, opt.fineSize)
        assert torch.isfinite(out).all(), "NaN in the reference output (zero-feature cosine)"
        med, times = median_time(lambda: net(x), args.device, args.warmup, args.repeats)
    nparams = sum(p.numel() for p in net.parameters())
    return {"median_s": med, "images_per_s": batch / med, "min_s": min(times),
            "runs_s": times, "g_params": nparams}


def bench_train(ShiftNetModel, TrainOptions, args, quiet):
    batch = args.train_batch
    opt = make_opt(TrainOptions, args, batch)
    with quiet():
        model = ShiftNetModel()
        model.initialize(opt)
    img = torch.rand(batch, 3, opt.fineSize, opt.fineSize, device=args.device) * 2 - 1
    hole = torch.zeros_like(img)  # 'M' from the data loader; centre mask is made in set_input

    def step():
        # the dataset gives A and B = A.clone(); set_input masks A in place, so re-clone
        model.set_input({"A": img.clone(), "B": img.clone(), "M": hole, "A_paths": ["x"]})
        model.optimize_parameters()

    with quiet():
        med, times = median_time(step, args.device, args.train_warmup, args.train_repeats)
    losses = {k: float(v) for k, v in model.get_current_losses().items()}
    return {
        "batch": batch, "median_s": med, "images_per_s": batch / med, "min_s": min(times),
        "runs_s": times,
        "losses_last_step": losses,
        "d_params": sum(p.numel() for p in model.netD.parameters()),
        "includes": (
            "reference ShiftNetModel.set_input + optimize_parameters, default options: "
            "G fwd on ground truth (InnerCos target) + G fwd on masked input; "
            "D (PatchGAN 3 layers, spectral norm, instance norm, sigmoid) on the 120x120 "
            "hole crop, vanilla BCE, Adam(2e-4, 0.5, 0.999) step; G step on "
            "L1x100 (whole image) + discounted L1x400 (hole crop) + GANx0.2 + "
            "VGG16 style x10 + content x1 (pool1-3 of the hole crop) + TV x0 + "
            "InnerCos guidance MSE x1 and shift Pt gradient; VGG16 has RANDOM weights "
            "(no download); no data loading, no LR scheduler step"),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", required=True, help="path of a Shift-Net_pytorch checkout")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", default="1,8", help="comma-separated inference batch sizes")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--train-batch", type=int, default=1)
    p.add_argument("--train-warmup", type=int, default=1)
    p.add_argument("--train-repeats", type=int, default=5, help="0 skips the training step")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--verbose", action="store_true", help="show the reference's prints")
    args = p.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda but torch.cuda.is_available() is False")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    quiet = contextlib.nullcontext if args.verbose else (
        lambda: contextlib.redirect_stdout(io.StringIO()))

    networks, ShiftNetModel, TrainOptions, commit = load_reference(args.ref)
    torch.backends.cudnn.benchmark = True  # as the reference's BaseModel sets it

    result = {
        "impl": "reference-pytorch", "commit": commit, "device": args.device,
        "device_name": (torch.cuda.get_device_name(0) if args.device == "cuda"
                        else "cpu"),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "ngf": args.ngf, "size": args.size, "warmup": args.warmup,
        "repeats": args.repeats, "batches": {}, "train": None,
        "loadavg_start": list(os.getloadavg()),  # the host may be shared
    }
    for b in [int(s) for s in args.batch.split(",") if s.strip()]:
        result["batches"][str(b)] = bench_inference(networks, TrainOptions, args, b, quiet)
    if args.train_repeats > 0:
        result["train"] = bench_train(ShiftNetModel, TrainOptions, args, quiet)

    print(f"reference Shift-Net_pytorch {str(commit)[:7]}  torch {result['torch']}  "
          f"{result['device_name']}  threads={result['threads']}  ngf={args.ngf}  "
          f"size={args.size}")
    print(f"{'what':<20}{'batch':>6}{'median s':>11}{'min s':>9}{'images/s':>10}")
    rows = [("G inference", b, r) for b, r in result["batches"].items()]
    if result["train"]:
        rows.append(("train step (G+D)", result["train"]["batch"], result["train"]))
    for what, b, r in rows:
        print(f"{what:<20}{b:>6}{r['median_s']:>11.4f}{r['min_s']:>9.4f}"
              f"{r['images_per_s']:>10.2f}")
    result["loadavg_end"] = list(os.getloadavg())
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
