"""The paper's analysis figures as commands: each writes its table and images into RESULTS.md.

    python experiments/paper.py fig7     # guidance loss on/off, U-Net and Shift-Net (4 trainings)
    python experiments/paper.py fig8     # lambda_g in {0, 0.001, 0.01, 0.1, 1} (5 trainings)
    python experiments/paper.py fig9     # shift at L-2 / L-3 / L-4: quality (3 trainings) and time at 256
    python experiments/paper.py fig10    # zero the decoded / encoded / shifted third at inference
    python experiments/paper.py fig11    # random shift vs nearest neighbour, at inference
    python experiments/paper.py fig3     # ground truth's encoder feature vs the decoded one (PCA to RGB)
    python experiments/paper.py fig7 --steps 5000 --ngf 32   # any size

Training figures (7, 8, 9) train ``configs/learning.py`` (held-out regions of real
photos) for ``--steps`` steps per variant at ``--ngf`` and ``--size``, and score each
run on the held-out tiles with centre holes (composited, hole-only metrics). The
inference figures (3, 10, 11) use ``--ckpt`` (default: the bundled model) on its
held-out tiles. Defaults fit a 2-core CPU (minutes per figure, not the paper's
30 epochs of Places: small models, so the numbers say how *these* runs behave).
``--tiny`` is the test suite's size (seconds). Each figure's section of
``--results`` (between ``<!-- paper:figN -->`` markers) is replaced, the rest kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from shiftnet_jax import checkpoint  # noqa: E402
from shiftnet_jax import config as configlib  # noqa: E402
from shiftnet_jax.data import loader as datalib  # noqa: E402
from shiftnet_jax.data import masks as masklib  # noqa: E402
from shiftnet_jax.data import sources  # noqa: E402
from shiftnet_jax.inference import evaluate  # noqa: E402
from shiftnet_jax.nets.generator import ShiftNetGenerator  # noqa: E402
from shiftnet_jax.train.loop import train_and_evaluate  # noqa: E402

TITLES = {
    "fig3": "Fig. 3: the decoded feature learns the ground truth's encoder feature inside the hole",
    "fig7": "Fig. 7: the guidance loss, on and off, for the U-Net and for Shift-Net",
    "fig8": "Fig. 8: the guidance weight lambda_g",
    "fig9": "Fig. 9: the shift at L-2, L-3, L-4: quality and time per image",
    "fig10": "Fig. 10: zeroing one third of the shift level's concatenation at inference",
    "fig11": "Fig. 11: random shift vs nearest-neighbour shift at inference",
}
LAMBDAS = ("0", "0.001", "0.01", "0.1", "1")


# ------------------------------------------------------------------ training figures
def _base_overrides(args) -> list[tuple[str, str]]:
    o = [("model.ngf", str(args.ngf)), ("model.num_downs", str(args.num_downs)),
         ("data.crop_size", str(args.size)), ("data.load_size", str(args.size)),
         ("batch_size", str(args.batch_size)), ("num_steps", str(args.steps)),
         ("eval_every", "0"), ("sample_every", "0"), ("checkpoint_every", str(args.steps)),
         # eval_batches 0: no scoring inside the run; the figure scores each with eval.py's library.
         ("log_every", str(max(1, args.steps // 10))), ("eval_batches", "0"), ("data.num_workers", "1")]
    return o + ([("data.dir", args.photos)] if args.photos else [])


def _train_and_score(args, name: str, overrides) -> dict:
    """Train one variant into --workdir/FIG/NAME and score it on the held-out tiles."""
    workdir = Path(args.workdir) / args.figure / name
    if workdir.exists():
        shutil.rmtree(workdir)
    config = configlib.apply_overrides(configlib.load_config(ROOT / "configs" / "learning.py"),
                                       _base_overrides(args) + list(overrides))
    configlib.validate(config)
    start = time.perf_counter()
    train_and_evaluate(config, workdir)
    seconds = time.perf_counter() - start
    report = evaluate.evaluate(workdir, masks="center", out_dir=workdir / "eval", samples=1,
                               limit=args.limit, baselines=(), progress=False)
    return {"name": name, "hole": report["overall"]["shiftnet"]["hole"], "n": report["num_images"],
            "train_s": seconds, "sample": workdir / "eval" / "sample_000.png"}


def _quality_table(rows, extra=()) -> list[str]:
    head = "| variant | PSNR hole (dB) | SSIM hole | L1 hole | training (s) |" + "".join(f" {e} |" for e, _ in extra)
    lines = [head, "|---|---:|---:|---:|---:|" + "---:|" * len(extra)]
    for r in rows:
        h = r["hole"]
        lines.append(f"| {r['name']} | {h['psnr']:.2f} | {h['ssim']:.4f} | {h['l1']:.4f} | {r['train_s']:.0f} |"
                     + "".join(f" {fn(r)} |" for _, fn in extra))
    return lines


def fig7(args):
    variants = {"U-Net, no guidance": [("model.use_shift", "false"), ("loss.guidance", "0")],
                "U-Net + guidance": [("model.use_shift", "false")],
                "Shift-Net, no guidance": [("loss.guidance", "0")],
                "Shift-Net (guidance 0.01)": []}
    rows = [_train_and_score(args, n, o) for n, o in variants.items()]
    return _quality_table(rows), [r["sample"] for r in rows], [r["name"] for r in rows]


def fig8(args):
    lambdas = [g.strip() for g in args.lambdas.split(",") if g.strip()]
    for g in lambdas:
        try:
            if not float(g) >= 0:
                raise ValueError
        except ValueError:
            raise ValueError(f"--lambdas: {g!r} is not a number >= 0") from None
    rows = [_train_and_score(args, f"lambda_g {g}", [("loss.guidance", g)]) for g in lambdas]
    return _quality_table(rows), [r["sample"] for r in rows], [r["name"] for r in rows]


def time_per_image(shift_layer: int, size: int, ngf: int, num_downs: int, repeats: int = 3) -> float:
    """Median seconds of one jitted eval forward at size x size (untrained weights: the
    time does not depend on them), centre hole."""
    model = ShiftNetGenerator(ngf=ngf, num_downs=num_downs, shift_layer=shift_layer)
    image = jnp.zeros((1, size, size, 3))
    hole = jnp.asarray(masklib.center_mask(size))[None]
    variables = jax.jit(model.init)(jax.random.key(0), image, hole)
    run = jax.jit(model.apply)
    run(variables, image, hole).block_until_ready()  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(variables, image, hole).block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def fig9(args):
    levels = {"L-2": 2, "L-3": 3, "L-4": 4}  # the shift at H/4, H/8 (the paper's), H/16
    rows = []
    for name, layer in levels.items():
        row = _train_and_score(args, f"shift at {name} (shift_layer {layer})", [("model.shift_layer", str(layer))])
        row["ms"] = 1000 * time_per_image(layer, args.time_size, args.time_ngf, args.time_num_downs)
        rows.append(row)
    lines = _quality_table(rows, [(f"ms / image at {args.time_size} (ngf {args.time_ngf})",
                                   lambda r: f"{r['ms']:.0f}")])
    return lines, [r["sample"] for r in rows], [r["name"] for r in rows]


# ------------------------------------------------------------------ inference figures
def _checkpoint(args):
    model, variables, config = checkpoint.load_generator(args.ckpt or checkpoint.BUNDLED_MODEL)
    if args.photos:
        config = {**config, "data": {**config["data"], "dir": args.photos}}
    return model, variables, config


def _inference_rows(args, options: dict) -> tuple[list[str], list[Path], list[str]]:
    model, variables, config = _checkpoint(args)
    lines = ["| model at inference | PSNR hole (dB) | SSIM hole | L1 hole |", "|---|---:|---:|---:|"]
    samples = []
    for name, opts in options.items():
        out = Path(args.workdir) / args.figure / name.replace(" ", "_").replace("/", "-")
        report = evaluate.evaluate(None, generator=(model.clone(**opts), variables, config), masks="center",
                                   out_dir=out, samples=1, limit=args.limit, baselines=(), progress=False)
        h = report["overall"]["shiftnet"]["hole"]
        lines.append(f"| {name} | {h['psnr']:.2f} | {h['ssim']:.4f} | {h['l1']:.4f} |")
        samples.append(out / "sample_000.png")
    lines += ["", f"Checkpoint: `{args.ckpt or 'the bundled model'}` on its held-out tiles "
                  f"({report['num_images']} images, {report['image_size']}px, centre holes)."]
    return lines, samples, list(options)


def fig10(args):
    return _inference_rows(args, {"full [decoded, encoded, shifted]": {}, "decoded zeroed": {"ablate": "decoded"},
                                  "encoded zeroed": {"ablate": "encoded"}, "shifted zeroed": {"ablate": "shifted"}})


def fig11(args):
    return _inference_rows(args, {"nearest-neighbour shift": {}, "random shift": {"shift_mode": "random"}})


def pca_rgb(*features: np.ndarray) -> list[np.ndarray]:
    """One PCA (3 components) fitted on all (h, w, C) features together, each mapped to
    uint8 (h, w, 3) with a shared scale: equal features get equal colours."""
    flat = np.concatenate([f.reshape(-1, f.shape[-1]) for f in features]).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    proj = (flat - mean) @ vt[:3].T
    lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
    rgb = np.clip((proj - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    out, k = [], 0
    for f in features:
        n = f.shape[0] * f.shape[1]
        out.append(np.rint(255 * rgb[k:k + n]).reshape(*f.shape[:2], 3).astype(np.uint8))
        k += n
    return out


def fig3(args):
    model, variables, config = _checkpoint(args)
    dcfg = config["data"]
    source = sources.make_source(dcfg, train=False)
    n = min(args.limit or 4, len(source))
    loader = datalib.make_loader(evaluate._Head(source, n), batch_size=n, crop_size=dcfg["crop_size"],
                                 load_size=dcfg["crop_size"], train=False,
                                 mask_fn=masklib.make_mask_fn("center"), seed=0)
    batch = next(iter(loader))
    image, hole = jnp.asarray(batch["image"]), jnp.asarray(batch["hole"])
    _, feats = model.apply(variables, image, hole, return_features=True)
    target = model.apply(variables, image, hole, method=type(model).guidance_target)
    decoded, encoded, fhole = (np.asarray(a) for a in (feats.decoded, target, feats.hole))
    figures, sims, sims_known = Path(args.figures), [], []
    panels = []
    scale = image.shape[1] // decoded.shape[1]
    for i in range(n):
        h = fhole[i]
        a, b = decoded[i][h], encoded[i][h]
        cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-8)
        sims.append(float(cos.mean()))
        # The baseline: the hole's target against the mean of the known targets.
        m = encoded[i][~h].mean(0)
        sims_known.append(float(((b @ m) / np.maximum(np.linalg.norm(b, axis=-1) * np.linalg.norm(m), 1e-8)).mean()))
        gt_rgb, dec_rgb = pca_rgb(encoded[i], decoded[i])
        up = [cv2.resize(x, (image.shape[2], image.shape[1]), interpolation=cv2.INTER_NEAREST) for x in (gt_rgb, dec_rgb)]
        gt8 = np.rint((np.asarray(image[i]) + 1) * 127.5).astype(np.uint8)
        masked = np.where(np.asarray(hole[i]) > 0.5, 255, gt8).astype(np.uint8)
        panels.append(evaluate.panel([masked, up[0], up[1], gt8],
                                     ["input", "truth's encoder feature", "decoded feature", "truth"]))
    figures.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, p in enumerate(panels):
        paths.append(figures / f"fig3_{i}.png")
        cv2.imwrite(str(paths[-1]), p[..., ::-1])
    lines = ["| quantity (inside the hole, at the shift layer) | mean over images |", "|---|---:|",
             f"| cosine(decoded feature, truth's encoder feature) | {np.mean(sims):.4f} |",
             f"| cosine(mean known encoder feature, truth's encoder feature) | {np.mean(sims_known):.4f} |",
             "", f"{n} held-out tiles, centre holes, shift grid {decoded.shape[1]}x{decoded.shape[2]} "
                 f"(1 cell = {scale} px); one PCA per tile over both features, shared colours.",
             "Columns: input, PCA of the truth's encoder feature, PCA of the decoded feature, truth."]
    return lines, paths, None


FIGURES = {"fig3": fig3, "fig7": fig7, "fig8": fig8, "fig9": fig9, "fig10": fig10, "fig11": fig11}


# ------------------------------------------------------------------ RESULTS.md
def write_section(results: Path, figure: str, body: list[str]):
    """Replace (or append) the ``figure`` section of ``results``, between its markers."""
    start, end = f"<!-- paper:{figure} -->", f"<!-- /paper:{figure} -->"
    section = "\n".join([start, f"## {TITLES[figure]}", "", *body, end])
    text = results.read_text() if results.is_file() else ""
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section + "\n"
    results.write_text(text)


def _collect(paths, names, figures: Path, figure: str) -> list[Path]:
    """Copy the sample panels into --figures as FIG_<k>.png (fig3 writes its own)."""
    if names is None:
        return list(paths)
    figures.mkdir(parents=True, exist_ok=True)
    out = []
    for k, p in enumerate(paths):
        if Path(p).is_file():
            out.append(figures / f"{figure}_{k}.png")
            shutil.copy(p, out[-1])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("figure", choices=sorted(FIGURES))
    p.add_argument("--steps", type=int, default=600, help="training steps per variant (figs 7-9)")
    p.add_argument("--ngf", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="training crop size")
    p.add_argument("--num-downs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="held-out images scored (default all)")
    p.add_argument("--photos", default=None, help="data.dir (default: the config's / checkpoint's)")
    p.add_argument("--ckpt", default=None, help="figs 3, 10, 11: checkpoint (default: the bundled model)")
    p.add_argument("--time-size", type=int, default=256, help="fig 9: image side of the timing")
    p.add_argument("--time-ngf", type=int, default=64, help="fig 9: generator width of the timing")
    p.add_argument("--time-num-downs", type=int, default=8)
    p.add_argument("--workdir", default="runs/paper")
    p.add_argument("--figures", default="docs/results/paper")
    p.add_argument("--results", default="RESULTS.md")
    p.add_argument("--lambdas", default=",".join(LAMBDAS),
                   help="fig 8: the guidance weights to train, comma-separated (default %(default)s)")
    p.add_argument("--tiny", action="store_true", help="the test suite's size: seconds")
    args = p.parse_args(argv)
    if args.tiny:
        args.steps, args.ngf, args.size, args.num_downs, args.batch_size = 2, 4, 32, 5, 2
        args.limit, args.time_size, args.time_ngf, args.time_num_downs = args.limit or 2, 64, 4, 5
    start = time.perf_counter()
    try:
        lines, samples, names = FIGURES[args.figure](args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    results, figures = Path(args.results), Path(args.figures)
    images = _collect(samples, names, figures, args.figure)
    rel = Path(os.path.relpath(figures.resolve(), results.resolve().parent))
    command = "python experiments/paper.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = [f"Command: `{command}` ({time.perf_counter() - start:.0f} s on this machine).", "", *lines, ""]
    if names:
        body += ["Samples (input, the variant's result, truth), in the table's order:", ""]
    body += [f"![{img.stem}]({(rel / img.name).as_posix()})" for img in images]
    write_section(results, args.figure, body)
    print("\n".join(lines))
    print(f"wrote the {args.figure} section of {results}"
          + (f" and {len(images)} image(s) into {figures}" if images else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
