"""Show that training learns: the learning run, the paper's ablation, RESULTS.md.

    python experiments/learning.py                       # everything, as RESULTS.md reports it
    python experiments/learning.py --steps 500 --ablation-steps 200 --seeds 0   # a quick look
    python experiments/learning.py --photos builtin,/data/paris/paris_train_original --steps 50000

1. The main run: ``configs/learning.py`` for ``--steps`` steps (held-out regions
   of the photos; see ``shiftnet_jax.data.sources.RegionSource``), evaluated every
   ``eval_every`` steps, then scored with ``eval.py``'s library against OpenCV
   Telea, Navier-Stokes, mean fill and PatchMatch (the paper's Content-Aware Fill) on the held-out tiles, with centre holes
   and with stroke holes.
2. The ablation at ``--ablation-steps`` per run and every seed of ``--seeds``:
   (a) Shift-Net, (b) the same U-Net without the shift (the official code's
   ``unet_256``, no guidance loss), (c) Shift-Net without the guidance loss.
3. Learning curves (PNG), sample grids, and ``RESULTS.md`` with the tables,
   the commands and the measured wall-clock time.
4. ``--bundle DIR``: the main run's generator as float16 (``checkpoint.export_compact``).

Checkpoints go to ``--workdir`` (default runs/learning); figures to ``--figures``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shiftnet_jax import checkpoint
from shiftnet_jax import config as configlib  # noqa: E402
from shiftnet_jax.inference import evaluate  # noqa: E402
from shiftnet_jax.train.loop import train_and_evaluate  # noqa: E402

ABLATIONS = {  # the paper's ablation, as config overrides
    "shift-net": [],
    "no shift (unet_256)": [("model.use_shift", "false"), ("loss.guidance", "0")],
    "no guidance loss": [("loss.guidance", "0")],
}
MASKS = {"centre": "center", "strokes": "strokes"}
METHOD_LABELS = {"shiftnet": "Shift-Net", "telea": "Telea", "navier_stokes": "Navier-Stokes",
                 "mean_fill": "mean fill", "patchmatch": "PatchMatch (Content-Aware Fill)"}


def train(config_path, workdir: Path, overrides) -> dict:
    """One training run; returns its summary with the wall-clock seconds."""
    config = configlib.apply_overrides(configlib.load_config(config_path), overrides)
    configlib.validate(config)
    start = time.perf_counter()
    summary = train_and_evaluate(config, workdir)
    summary["seconds"] = time.perf_counter() - start
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def score(workdir: Path, samples: int = 0) -> dict:
    """``{mask name: eval report}`` on the held-out tiles (the config's test split)."""
    return {name: evaluate.evaluate(workdir, masks=spec, out_dir=workdir / f"eval_{name}",
                                    batch_size=32, samples=samples, progress=False)
            for name, spec in MASKS.items()}


def curves(runs: dict[str, Path], path: Path):
    """Held-out hole PSNR and hole L1 over training steps, one line per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, workdir in runs.items():
        rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
        train_rows = [r for r in rows if "l1" in r]
        evals = [r for r in rows if "eval/psnr_hole" in r]
        axes[0].plot([r["step"] for r in train_rows], [r["l1"] for r in train_rows], label=label, lw=1)
        axes[1].plot([r["step"] for r in evals], [r["eval/psnr_hole"] for r in evals], "o-", label=label)
        axes[2].plot([r["step"] for r in evals], [r["eval/l1_hole"] for r in evals], "o-", label=label)
    if evals:
        axes[1].axhline(evals[0]["eval/input_psnr_hole"], color="grey", ls=":", label="empty hole")
    for ax, title in zip(axes, ("training L1 (whole image)", "held-out hole PSNR (dB)",
                                "held-out hole mean L1")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _hole(report, method, metric):
    return report["overall"][method]["hole"][metric]


def results_table(reports: dict) -> list[str]:
    """Markdown rows: hole PSNR / SSIM / L1 / L2 per mask kind and method."""
    lines = ["| holes | method | PSNR hole (dB) | SSIM hole | L1 hole | L2 hole |",
             "|---|---|---:|---:|---:|---:|"]
    for mask, report in reports.items():
        for method, label in METHOD_LABELS.items():
            if method not in report["overall"]:
                continue
            vals = [_hole(report, method, k) for k in ("psnr", "ssim", "l1", "l2")]
            lines.append(f"| {mask} ({report['num_images']} tiles) | {label} | {vals[0]:.2f} | "
                         f"{vals[1]:.4f} | {vals[2]:.4f} | {vals[3]:.5f} |")
    return lines


def ablation_table(scores: dict) -> list[str]:
    """Mean and half-range over seeds of hole PSNR and SSIM, per variant and mask kind."""
    def cell(values):
        mean = statistics.fmean(values)
        spread = (max(values) - min(values)) / 2
        return f"{mean:.2f} ± {spread:.2f}" if abs(mean) > 1 else f"{mean:.4f} ± {spread:.4f}"

    lines = ["| variant | seeds | " + " | ".join(f"{m} PSNR hole | {m} SSIM hole" for m in MASKS) + " |",
             "|---|---|" + "---:|" * (2 * len(MASKS))]
    for variant, runs in scores.items():
        cells = []
        for mask in MASKS:
            cells += [cell([_hole(r[mask], "shiftnet", "psnr") for r in runs]),
                      cell([_hole(r[mask], "shiftnet", "ssim") for r in runs])]
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "learning.py"))
    p.add_argument("--photos", default=None, help="data.dir: comma-separated folders, 'builtin' for scikit-image's")
    p.add_argument("--steps", type=int, default=None, help="main run steps (default: the config's)")
    p.add_argument("--ablation-steps", type=int, default=1500)
    p.add_argument("--seeds", default="0,1", help="ablation seeds ('' skips the ablation)")
    p.add_argument("--workdir", default="runs/learning")
    p.add_argument("--figures", default="docs/results")
    p.add_argument("--results", default="RESULTS.md")
    p.add_argument("--bundle", default=None, help="also export the main generator (float16) here")
    p.add_argument("--skip-main", action="store_true", help="reuse the main run already in --workdir")
    args = p.parse_args(argv)

    workdir, figures = Path(args.workdir), Path(args.figures)
    base = [("data.dir", args.photos)] if args.photos else []
    main_overrides = base + ([("num_steps", str(args.steps))] if args.steps else [])
    main_dir = workdir / "main"
    if not args.skip_main:
        if main_dir.exists():
            shutil.rmtree(main_dir)
        train(args.config, main_dir, main_overrides)
    summary = json.loads((main_dir / "summary.json").read_text())
    reports = score(main_dir, samples=6)
    figures.mkdir(parents=True, exist_ok=True)
    for name in MASKS:
        for k, png in enumerate(sorted((main_dir / f"eval_{name}").glob("sample_*.png"))[:3]):
            shutil.copy(png, figures / f"main_{name}_{k}.png")
    curves({"shift-net (main run)": main_dir}, figures / "main_curves.png")

    ablation, ablation_runs = {}, {}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    for variant, overrides in ABLATIONS.items():
        for seed in seeds:
            run_dir = workdir / "ablation" / f"{re.sub(r'[^a-z0-9]+', '-', variant).strip('-')}-seed{seed}"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            train(args.config, run_dir, base + overrides + [
                ("seed", str(seed)), ("num_steps", str(args.ablation_steps)),
                ("eval_every", str(max(1, args.ablation_steps // 5))), ("sample_every", "0"),
                ("checkpoint_every", str(args.ablation_steps))])
            ablation.setdefault(variant, []).append(score(run_dir))
            ablation_runs[f"{variant}, seed {seed}"] = run_dir
    if ablation_runs:
        curves(ablation_runs, figures / "ablation_curves.png")

    config = configlib.load_config(args.config)
    rel = Path(os.path.relpath(figures, Path(args.results).resolve().parent))
    command = "python experiments/learning.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = [
        "# Results: Shift-Net learns (held-out regions, 2-core CPU)", "",
        f"Command: `{command.strip()}`  ",
        f"Main run: {summary['step']} steps in {summary['seconds'] / 60:.1f} min "
        f"(`configs/learning.py`: ngf {config.model.ngf}, {config.data.crop_size}x{config.data.crop_size} "
        f"crops, batch {config.batch_size}); photos: `{args.photos or config.data.dir}`.", "",
        "Held-out tiles (the right 30 % of every photo, never seen in training), holes drawn "
        "with a fixed seed; composited 8-bit results, hole-only metrics (`eval.py`'s library).", "",
        *results_table(reports), "",
        f"![learning curves]({rel / 'main_curves.png'})", "",
        "Samples (input, Shift-Net, Telea, Navier-Stokes, mean fill, truth):", "",
        *[f"![{p.stem}]({rel / p.name})" for p in sorted(figures.glob("main_*_*.png"))], "",
    ]
    if ablation:
        text += [f"## Ablation ({args.ablation_steps} steps per run, seeds {args.seeds}; mean ± half-range)", "",
                 *ablation_table(ablation), "", f"![ablation curves]({rel / 'ablation_curves.png'})", ""]
    recipe = Path(__file__).with_name("recipe.md")  # the hand-run probes behind the config
    if recipe.is_file():
        text += ["", recipe.read_text()]
    Path(args.results).write_text("\n".join(text) + "\n")
    (figures / "results.json").write_text(json.dumps(
        {"main": {k: r["overall"] for k, r in reports.items()}, "summary": summary,
         "ablation": {v: [{k: r["overall"]["shiftnet"] for k, r in runs.items()} for runs in rs]
                      for v, rs in ablation.items()}}, indent=1))
    if args.bundle:
        model, variables, cfg = checkpoint.load_generator(main_dir)
        checkpoint.export_compact(args.bundle, cfg["model"], variables,
                                  config={"data": cfg["data"], "name": "demo", "trained_steps": summary["step"],
                                          "source": "experiments/learning.py main run"})
    print("\n".join(results_table(reports)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
