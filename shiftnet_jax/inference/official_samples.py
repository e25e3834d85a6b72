"""The released models' published results as a yardstick: the official ``imgs/`` folder.

The official repository (github.com/Zhaoyi-Yan/Shift-Net_pytorch) publishes, in
``imgs/<group>/`` (``paris_center``, ``paris_random``, ``face_center``,
``face_random``, ...), test images of its released models: ``<name>_real_A.png``
the input (the hole filled with grey 127), ``<name>_fake_B.png`` the released
model's output and ``<name>_real_B.png`` the ground truth, 256x256. The hole is
where input and ground truth differ (plus the grey input pixels whose
neighbours are mostly hole: a truth pixel that happens to be grey 127).

:func:`score` inpaints exactly those inputs and holes with a checkpoint, under
each framing strategy, runs the baselines on them, and scores everything
(composited 8-bit results: known pixels from the ground truth, also for the
published output, which is the network's raw output) against the ground truth:
hole PSNR / SSIM / L1 and whole-image PSNR, per image and mean per group. It
writes ``report.json``, ``report.md`` and one side-by-side PNG per image.
These are test images: never train on them (nothing here copies them anywhere
but the side-by-sides in the output folder).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import jax
import numpy as np

from shiftnet_jax.data import image_io
from shiftnet_jax.errors import UserError
from shiftnet_jax.inference import baselines as baselib
from shiftnet_jax.inference import evaluate, framing, inpaint

SUFFIXES = {"input": "_real_A", "released": "_fake_B", "truth": "_real_B"}
GREY = 127
COLUMNS = (("hole", "psnr"), ("hole", "ssim"), ("hole", "l1"), ("whole", "psnr"))


def find(root) -> dict[str, list[dict]]:
    """``{group: [{"name", "input", "released", "truth"}]}`` of every complete triple
    in the subfolders of ``root`` (a group per subfolder, sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such directory (give the imgs/ folder of a checkout "
                        "of github.com/Zhaoyi-Yan/Shift-Net_pytorch)")
    groups = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        triples = []
        for path in sorted(folder.glob(f"*{SUFFIXES['input']}.png")):
            name = path.name[:-len(SUFFIXES["input"] + ".png")]
            files = {k: folder / f"{name}{s}.png" for k, s in SUFFIXES.items()}
            if all(f.is_file() for f in files.values()):
                triples.append({"name": name, **files})
        if triples:
            groups[folder.name] = triples
    if not groups:
        raise UserError(f"{root}: no <group>/<name>_real_A.png with _fake_B.png and _real_B.png beside it")
    return groups


def hole_of(given: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """bool (H, W): where the uint8 input differs from the ground truth, closed over
    the grey input pixels that equal the truth by chance (5 of 8 neighbours in the hole)."""
    differs = (given != truth).any(-1)
    grey = (given == GREY).all(-1)
    neighbours = cv2.filter2D(differs.astype(np.float32), -1, np.ones((3, 3), np.float32),
                              borderType=cv2.BORDER_CONSTANT) - differs
    return differs | (grey & (neighbours >= 5))


def _scores(preds: dict[str, np.ndarray], truth: np.ndarray, hole: np.ndarray) -> dict:
    """{method: {region: {metric: float}}} of uint8 (H, W, 3) predictions."""
    names = list(preds)
    image = truth[None].astype(np.float32) / 127.5 - 1.0
    s = jax.device_get(evaluate.score_predictions(np.stack([preds[m][None] for m in names]),
                                                  image, hole[None, ..., None].astype(np.float32)))
    return {m: {r: {k: float(np.minimum(s[r][k][j, 0], evaluate.PSNR_CAP) if k == "psnr" else s[r][k][j, 0])
                    for k in evaluate.METRICS} for r in evaluate.REGIONS} for j, m in enumerate(names)}


def method_label(method: str) -> str:
    if method == "released":
        return "released Shift-Net (published)"
    if method.startswith("shiftnet_"):
        return f"ours, {method.removeprefix('shiftnet_')}"
    return evaluate.label(method)


def score(generator, root, out_dir, *, strategies=("crop", "resize"), size: int | None = None,
          baselines=baselib.DEFAULT, progress: bool = True,
          max_pixels: int = image_io.CLI_MAX_PIXELS) -> dict:
    """Score ``generator`` = ``(model, variables, config)`` on the official samples in
    ``root``; write the reports and side-by-sides into ``out_dir``; return the report.

    Args:
      strategies: framing strategies to run ours under (``framing.STRATEGIES``).
      size: working size (default: the checkpoint's training crop size).
      baselines: names from ``inference.baselines``.
      max_pixels: an image over this many pixels is a one-line error, before it is decoded.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    model, variables, config = generator
    size = size or (config.get("data") or {}).get("crop_size") or inpaint.DEFAULT_SIZE
    for strategy in strategies:
        framing.check_strategy(strategy)
    baselib.check_available(baselines)
    groups = find(root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = ["released", *(f"shiftnet_{s}" for s in strategies), *baselines]
    per_image, total = {}, sum(len(v) for v in groups.values())
    bar = tqdm(total=total, desc="official samples", disable=not progress)
    for group, triples in groups.items():
        per_image[group] = []
        for t in triples:
            given = image_io.read_image(t["input"], max_pixels)
            truth = image_io.read_image(t["truth"], max_pixels)
            released = image_io.read_image(t["released"], max_pixels)
            if not given.shape == truth.shape == released.shape:
                raise UserError(f"{t['input']}: input, output and truth differ in size")
            hole = hole_of(given, truth)
            preds = {"released": np.where(hole[..., None], released, truth)}
            for strategy in strategies:
                preds[f"shiftnet_{strategy}"] = inpaint.inpaint_image(model, variables, given, hole,
                                                                      size=size, strategy=strategy)
            for name in baselines:
                preds[name] = baselib.fill(name, given, hole)
            masked = np.where(hole[..., None], 255, truth).astype(np.uint8)
            grid = evaluate.panel([masked, *(preds[m] for m in methods), truth],
                                  ["input", *map(method_label, methods), "truth"])
            png = out_dir / f"{group}_{t['name']}.png"
            cv2.imwrite(str(png), grid[..., ::-1])
            per_image[group].append({"name": t["name"], "hole_ratio": float(hole.mean()),
                                     "scores": _scores(preds, truth, hole), "panel": png.name})
            bar.update(1)
    bar.close()
    means = {group: {m: {f"{r}_{k}": float(np.nanmean([i["scores"][m][r][k] for i in images]))
                         for r, k in COLUMNS} for m in methods}
             for group, images in per_image.items()}
    report = {"samples": str(root), "checkpoint": config.get("name") or config.get("source"),
              "step": config.get("step") or config.get("trained_steps"), "working_size": size,
              "strategies": list(strategies), "methods": methods, "groups": means,
              "counts": {g: len(v) for g, v in per_image.items()}, "images": per_image,
              "metrics": "composited 8-bit results (the published output too) vs the ground truth on "
                         "the [0, 1] scale; PSNR in dB (max 100); hole = where input and truth differ",
              "seconds": round(time.perf_counter() - start, 2)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (out_dir / "report.md").write_text(markdown(report))
    return report


def table_lines(report) -> list[str]:
    """Markdown table: one row per group, hole PSNR of every method (then hole SSIM)."""
    methods = report["methods"]
    head = "| group (images) | " + " | ".join(method_label(m) for m in methods) + " |"
    lines = [head, "|---|" + "---:|" * len(methods)]
    for key, fmt in (("hole_psnr", "{:.2f}"), ("hole_ssim", "{:.4f}")):
        for group, means in report["groups"].items():
            cells = [fmt.format(means[m][key]) for m in methods]
            lines.append(f"| {group} ({report['counts'][group]}), {key.replace('_', ' ')} | "
                         + " | ".join(cells) + " |")
    return lines


def markdown(report) -> str:
    lines = [f"# The official samples ({report['samples']})", "",
             f"- checkpoint: {report['checkpoint']} (step {report['step']}), working size "
             f"{report['working_size']}, strategies {', '.join(report['strategies'])}",
             f"- metrics: {report['metrics']}", "", *table_lines(report), "",
             "Per image (hole PSNR, dB):", "",
             "| image | hole | " + " | ".join(method_label(m) for m in report["methods"]) + " |",
             "|---|---:|" + "---:|" * len(report["methods"])]
    for group, images in report["images"].items():
        for i in images:
            lines.append(f"| {group}/{i['name']} | {100 * i['hole_ratio']:.1f} % | "
                         + " | ".join(f"{i['scores'][m]['hole']['psnr']:.2f}" for m in report["methods"]) + " |")
    lines += ["", "Columns of the images: input, " + ", ".join(map(method_label, report["methods"]))
              + ", ground truth.", ""]
    lines += [f"![{i['panel']}]({i['panel']})" for images in report["images"].values() for i in images]
    return "\n".join(lines) + "\n"
