"""The same computation side by side: one official training iteration vs ours in official mode.

    python benchmarks/official_bench.py --ref /path/to/Shift-Net_pytorch --batch 1,4

Needs torch (CPU is enough) and the official checkout (imported at run time, never
copied). Both sides run ``ShiftNetModel.optimize_parameters`` with the official default
options (unet_shift_triple, ngf 64, 256x256, vanilla GAN, centre hole, L1 x100,
discounted hole L1 x400, GAN x0.2, VGG16 style x10 / content x1 with random weights of
the real VGG16 layout) from the same weights: the official code in torch (its
``set_input`` + ``optimize_parameters``), ours with :class:`OfficialStep` jitted (the
first call, which compiles, is not timed; the state donated, as ``train.py`` does), one
iteration of each in turn per repeat. Prints one JSON line per batch size with
the median seconds per iteration of each and the ratio (official / ours: > 1 means
ours is faster).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))   # tools/official.py loads the official code


def seconds(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ref", required=True)
    p.add_argument("--batch", default="1,4")
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import jax
    import torch
    from official import load_reference, random_vgg16

    from shiftnet_jax import official
    from shiftnet_jax.torchfile.state_dicts import vgg16_params
    from shiftnet_jax.train import official_options
    from shiftnet_jax.train.official_step import OfficialStep

    torch.set_num_threads(args.threads)
    _, ShiftNetModel, TrainOptions, _ = load_reference(args.ref)
    import util.util as rutil
    for batch in [int(b) for b in args.batch.split(",")]:
        opt = TrainOptions().initialize(argparse.ArgumentParser()).parse_args([])
        opt.isTrain, opt.gpu_ids, opt.continue_train = True, [], False
        opt.checkpoints_dir = tempfile.mkdtemp(prefix="official_bench_")
        opt.ngf, opt.batchSize = args.ngf, batch
        torch.manual_seed(0)
        vgg = random_vgg16()
        rutil.models = type("M", (), {"vgg16": staticmethod(lambda pretrained=False: vgg)})
        model = ShiftNetModel()
        with contextlib.redirect_stdout(io.StringIO()):
            model.initialize(opt)
        g0 = {k: v.detach().clone().numpy() for k, v in model.netG.state_dict().items()}
        d0 = {k: v.detach().clone().numpy() for k, v in model.netD.state_dict().items()}
        image = torch.rand(batch, 3, 256, 256) * 2 - 1

        def official_iteration():
            model.set_input({"A": image.clone(), "B": image.clone(), "A_paths": [""] * batch,
                             "M": torch.zeros(batch, 1, 256, 256)})
            model.optimize_parameters()

        official_iteration()   # warm-up

        opts = official_options.resolve({"ngf": args.ngf})
        generator, g_vars, discriminator, d_vars, _, _ = official.models_from_state_dicts(g0, d0, opts)
        trainer = OfficialStep(generator, discriminator, opts)
        state = trainer.init_state(g_vars, d_vars)
        vgg_params = vgg16_params({f"features.{k}": v.numpy()
                                   for k, v in vgg.features.state_dict().items()})
        hole = np.zeros((batch, 256, 256, 1), np.float32)
        hole[:, 68:188, 68:188] = 1
        data = {"image": np.moveaxis(image.numpy(), 1, -1), "hole": hole,
                "crop_tl": np.array([68, 68], np.int32), "gp_alpha": np.zeros(batch, np.float32)}
        # The state donated, as train.py's loop does (parallel.jit_train_step): Adam then
        # updates G's 54 M parameters in place (~100 ms less per iteration on CPU).
        step = jax.jit(trainer.step, donate_argnums=0)
        holder = [state]

        def our_iteration():
            holder[0], scalars = step(holder[0], data, vgg_params)
            jax.block_until_ready(scalars)

        t0 = time.perf_counter()
        our_iteration()   # compiles
        compile_s = time.perf_counter() - t0
        our_iteration()   # warm-up
        # Alternating, one iteration of each per repeat: both see the same state of the
        # machine (on a shared VM the speed drifts by 30 % within minutes).
        times = [(seconds(official_iteration), seconds(our_iteration))
                 for _ in range(args.repeats)]
        t_official = statistics.median(t for t, _ in times)
        t_ours = statistics.median(t for _, t in times)
        print(json.dumps({"batch": batch, "ngf": args.ngf, "threads": args.threads,
                          "official_s": round(t_official, 3), "ours_s": round(t_ours, 3),
                          "ours_first_call_s": round(compile_s, 1),
                          "ratio_official_over_ours": round(t_official / t_ours, 3),
                          "ratio_per_repeat": [round(t / o, 3) for t, o in times],
                          "uptime": os.popen("uptime").read().strip()}), flush=True)


if __name__ == "__main__":
    main()
