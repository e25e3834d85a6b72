"""Evaluate a generator against classical baselines: the paper's Table 1 metrics.

For every test image (resized and centre-cropped as in training) and a hole
drawn with a fixed seed, these results are scored:

* ``shiftnet``      -- the generator, composited (known pixels from the input);
* the baselines of :mod:`shiftnet_jax.inference.baselines`, by default
  ``telea``, ``navier_stokes`` (``cv2.inpaint``, radius 3), ``mean_fill`` and
  ``patchmatch`` (the paper's "Content-Aware Fill" row); OpenCV contrib's
  ``xphoto_*`` on request.

All results are 8-bit images (the generator's output is rounded to 8 bits, as
it would be saved), scored with :mod:`shiftnet_jax.inference.metrics` on the [0, 1]
scale: PSNR (dB), SSIM, mean L1 and mean l2, over the whole image and over the
hole only, overall and per hole-ratio band (0-10 %, 10-20 %, ...). Images whose
hole is empty are skipped (every method is exact there). Means ignore NaN (a
hole SSIM is NaN when the hole lies within 5 px of the border); an exact match
counts as 100 dB PSNR instead of +inf. :class:`ScoreTable` is this scorer; the
training loop's evaluations use it too, so their ``eval/*`` numbers are these.

``evaluate`` writes ``report.json``, ``report.md`` and ``sample_*.png`` (input,
ours, baselines, ground truth side by side) and returns the report dict.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import time
import warnings
from pathlib import Path

import cv2
import jax
import numpy as np

from shiftnet_jax import checkpoint
from shiftnet_jax.data import image_io, sources
from shiftnet_jax.data import loader as datalib
from shiftnet_jax.data import masks as masklib
from shiftnet_jax.data.image_io import from_uint8, to_uint8
from shiftnet_jax.inference import baselines as baselib
from shiftnet_jax.inference import metrics
from shiftnet_jax.inference.predict import default_size, forward, pad_batch
from shiftnet_jax.nets.generator import check_image_size

BASELINES = baselib.DEFAULT            # the default baselines
COMPARED = ("shiftnet",) + BASELINES   # what eval.py scores by default, in its table's order
METRICS = ("psnr", "ssim", "l1", "l2")
REGIONS = ("whole", "hole")
INPAINT_RADIUS = baselib.INPAINT_RADIUS
PSNR_CAP = 100.0  # dB for an exact match (PSNR is +inf there; a mean with inf says nothing)


def _scores_one(pred, image, hole):
    out = {}
    for region, mask in (("whole", None), ("hole", hole)):
        out[region] = {"psnr": metrics.psnr(pred, image, mask), "ssim": metrics.ssim(pred, image, mask),
                       "l1": metrics.mean_l1(pred, image, mask), "l2": metrics.mean_l2(pred, image, mask)}
    return out


@jax.jit
def score_predictions(preds, image, hole):
    """{region: {metric: (M, B)}} of uint8 ``preds`` (M, B, H, W, 3) against ``image``
    (B, H, W, 3) in [-1, 1]: all methods in one call."""
    return jax.vmap(_scores_one, in_axes=(0, None, None))(from_uint8(preds), image, hole)


class ScoreTable:
    """Per-image scores of each method, added batch by batch; means over the images with a
    hole, NaN dropped. The one scorer of ``eval.py`` and of training's ``eval/*`` metrics.

    ``methods`` name the results :meth:`add` is given (e.g. :data:`COMPARED`).
    """

    def __init__(self, methods):
        self.methods = tuple(methods)
        self._rows = {m: {r: {k: [] for k in METRICS} for r in REGIONS} for m in self.methods}
        self._ratio, self._band = [], []

    def add(self, results: dict, image, hole, keep=None):
        """Score uint8 ``results`` ({method: (B, H, W, 3)}) against ``image`` (B, H, W, 3) in
        [-1, 1] with ``hole`` (B, H, W, 1); rows where ``keep`` (B,) is False are padding.
        (A fixed B compiles once.)"""
        keep = np.ones(len(image), bool) if keep is None else np.asarray(keep, bool)
        s = jax.device_get(score_predictions(np.stack([results[m] for m in self.methods]), image, hole))
        for j, m in enumerate(self.methods):
            for r in REGIONS:
                for k in METRICS:
                    v = np.asarray(s[r][k][j])[keep]
                    self._rows[m][r][k].append(np.minimum(v, PSNR_CAP) if k == "psnr" else v)
        self._ratio.append(np.asarray(masklib.hole_ratio(np.asarray(hole)), np.float64)[keep])
        self._band.append(np.asarray(metrics.hole_ratio_band(hole))[keep])

    @property
    def hole_ratio(self) -> np.ndarray:
        """(N,) hole fraction of every image added."""
        return np.concatenate(self._ratio) if self._ratio else np.zeros(0)

    @property
    def band(self) -> np.ndarray:
        """(N,) hole-ratio band (:func:`metrics.hole_ratio_band`) of every image added."""
        return np.concatenate(self._band) if self._band else np.zeros(0, int)

    def means(self, select=None) -> dict:
        """``{method: {region: {metric: mean or None}}}`` over the images ``select`` (N,) bool
        picks (default: those with a hole); NaN scores are left out."""
        select = self.hole_ratio > 0 if select is None else select
        return {m: {r: {k: _mean(np.concatenate(self._rows[m][r][k])[select] if self._rows[m][r][k]
                                 else np.zeros(0)) for k in METRICS} for r in REGIONS}
                for m in self.methods}


def baselines(image: np.ndarray, hole: np.ndarray, pool=None, names=BASELINES) -> dict[str, np.ndarray]:
    """Classical fills of uint8 (B, H, W, 3) images with bool (B, H, W) holes -> {name: uint8 (B, H, W, 3)}."""
    return baselib.fill_batch(names, image, hole, pool)


def _mask_fn(spec, threshold, max_pixels: int = image_io.CLI_MAX_PIXELS):
    """``make_mask_fn`` of a spec, or of a mask folder read with ``threshold``."""
    if isinstance(spec, str) and spec.partition(":")[0] not in masklib.KINDS and os.path.isdir(spec):
        spec = {"kind": "files", "paths": spec, "threshold": threshold, "max_pixels": max_pixels}
    return masklib.make_mask_fn(spec)


class _Head:
    """The first ``n`` items of a source."""

    def __init__(self, source, n):
        self.source, self.n = source, min(n, len(source))

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.source[i]

    def describe(self, i):
        return getattr(self.source, "describe", lambda j: f"item {j}")(i)


def label(method: str) -> str:
    return "Shift-Net" if method == "shiftnet" else baselib.LABELS.get(method, method)


def panel(images: list[np.ndarray], labels: list[str]) -> np.ndarray:
    """Side-by-side uint8 panels with a label strip on top."""
    h, w = images[0].shape[:2]
    strip = max(12, h // 12)
    out = np.full((h + strip, (w + 2) * len(images) - 2, 3), 255, np.uint8)
    for k, (im, label) in enumerate(zip(images, labels)):
        x = k * (w + 2)
        out[strip:, x:x + w] = im
        width = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0]
        scale = min(strip / 30, (w - 4) / width)  # shrink long labels to the panel
        cv2.putText(out, label, (x + 2, strip - 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _mean(values: np.ndarray):
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def evaluate(ckpt_dir, *, data=None, masks="center", out_dir=None, batch_size: int = 16,
             limit: int | None = None, seed: int = 0, samples: int = 4, size: int | None = None,
             step: int | None = None, progress: bool = True, generator=None,
             mask_threshold: float = image_io.MASK_THRESHOLD, baselines=None,
             max_pixels: int = image_io.CLI_MAX_PIXELS) -> dict:
    """Score a checkpoint and the baselines; write the reports; return the report dict.

    Args:
      ckpt_dir: checkpoint directory (its ``config.json`` gives the model and data).
      data: a folder of images instead of the config's test split.
      masks: a mask spec (``center``, ``rect:max_size=96``, ``strokes``, ...; see
        :func:`shiftnet_jax.data.masks.make_mask_fn`) or a folder of mask images; drawn
        with ``seed`` (same seed, same holes).
      mask_threshold: for a mask folder, the 8-bit strength above which a pixel is a
        hole (default 0: nonzero = hole).
      max_pixels: images and masks over this many pixels are skipped with a warning.
      out_dir: where reports and samples go (default ``ckpt_dir/eval``).
      batch_size: images per jitted call; limit: only the first ``limit`` images.
      size: image side (default the config's ``crop_size``; a multiple of 2**num_downs).
      generator: ``(model, variables, config)`` already in memory (skips loading).
      baselines: names (or ``"a,b"``) from ``inference.baselines``; default :data:`BASELINES`.
    Returns:
      the report: ``overall[method][region][metric]``, ``bands[label]`` with ``n`` and
      ``results``, counts, settings and timing.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    names = baselib.parse(baselines) if baselines is None or isinstance(baselines, str) else tuple(baselines)
    baselib.check_available(names)  # a missing package: one line now, not after the model ran
    methods = ("shiftnet", *names)
    model, variables, config = generator or checkpoint.load_generator(ckpt_dir, step)
    dcfg = dict(config.get("data") or {})
    crop = size or default_size(config)
    check_image_size(crop, crop, model.num_downs)
    load = max(crop, round((dcfg.get("load_size") or crop) * crop / (dcfg.get("crop_size") or crop)))
    source = (sources.FolderSource(data, max_pixels=max_pixels) if data
              else sources.make_source(dcfg, train=False, max_pixels=max_pixels))
    described = str(data) if data else f"{dcfg.get('source', 'sample')} {dcfg.get('eval_split', 'test')}"
    source = _Head(source, limit) if limit else source
    batch_size = max(1, min(batch_size, len(source)))  # no padding work for small sets
    loader = datalib.make_loader(source, batch_size=batch_size, crop_size=crop, load_size=load,
                                 train=False, mask_fn=_mask_fn(masks, mask_threshold, max_pixels), seed=seed)
    out_dir = Path(out_dir) if out_dir else Path(ckpt_dir) / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)

    table, sample_paths = ScoreTable(methods), []
    with warnings.catch_warnings(record=True) as caught, \
            concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        warnings.simplefilter("always", RuntimeWarning)
        for batch in tqdm(loader, total=math.ceil(len(source) / batch_size), desc="eval", disable=not progress):
            image, hole = batch["image"], batch["hole"]
            b = len(image)
            image_p, hole_p = pad_batch(image, batch_size), pad_batch(hole, batch_size)  # one shape: one compilation
            ours = to_uint8(forward(model, variables, image_p, hole_p).composite[:b])
            gt = to_uint8(image)
            preds = {"shiftnet": ours, **baselib.fill_batch(names, gt, hole[..., 0] > 0.5, pool)}
            table.add({m: pad_batch(preds[m], batch_size) for m in methods}, image_p, hole_p,
                      keep=np.arange(batch_size) < b)
            for i in range(min(b, samples - len(sample_paths))):
                masked = np.where(hole[i] > 0.5, 255, gt[i]).astype(np.uint8)
                grid = panel([masked] + [preds[m][i] for m in methods] + [gt[i]],
                             ["input", *map(label, methods), "truth"])
                sample_paths.append(out_dir / f"sample_{len(sample_paths):03d}.png")
                image_io.save_png(sample_paths[-1], grid)
    unreadable = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    for w in caught:  # pass on the warnings that are not ours to count
        if "unreadable" not in str(w.message):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    ratio, band = table.hole_ratio, table.band
    nonempty = ratio > 0
    skipped_empty = int((~nonempty).sum())
    bands = {}
    for k in range(metrics.NUM_BANDS):
        sel = nonempty & (band == k)
        if sel.any():
            bands[f"{10 * k}-{10 * (k + 1)}%"] = {"n": int(sel.sum()), "hole_ratio": float(ratio[sel].mean()),
                                                  "results": table.means(sel)}
    elapsed = time.perf_counter() - start
    report = {
        "checkpoint": str(ckpt_dir), "step": config.get("step"), "model": config.get("model", {}),
        "data": described, "masks": masks if isinstance(masks, str) else dict(masks), "seed": seed,
        "image_size": crop, "num_images": int(nonempty.sum()),
        "skipped": {"empty_hole": skipped_empty, "unreadable": len(unreadable)},
        "metrics": "composited 8-bit results vs ground truth on the [0, 1] scale; PSNR in dB (max 100); "
                   "l1/l2 = mean absolute/squared error; hole = over hole pixels only",
        "methods": list(methods),
        "overall": table.means(nonempty),
        "bands": bands,
        "samples": [p.name for p in sample_paths],
        "seconds": round(elapsed, 2),
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (out_dir / "report.md").write_text(markdown(report))
    report["warnings"] = unreadable
    return report


# ------------------------------------------------------------------ formatting
_HEADER = ["PSNR", "SSIM", "L1", "L2", "PSNR hole", "SSIM hole", "L1 hole", "L2 hole"]
_FORMATS = {"psnr": "{:.2f}", "ssim": "{:.4f}", "l1": "{:.4f}", "l2": "{:.5f}"}


def _cells(result) -> list[str]:
    return [("-" if result[r][k] is None else _FORMATS[k].format(result[r][k]))
            for r in REGIONS for k in METRICS]


def _rows(report):
    """(band, n, method, 8 metric cells) rows: overall first, then each band."""
    methods = report["methods"]
    yield from (["all", str(report["num_images"]), m, *_cells(report["overall"][m])] for m in methods)
    for band_label, band in report["bands"].items():
        yield from ([band_label, str(band["n"]), m, *_cells(band["results"][m])] for m in methods)


def table(report) -> str:
    """The report as a fixed-width terminal table."""
    rows = [["holes", "n", "method", *_HEADER], *_rows(report)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def markdown(report) -> str:
    """The report as Markdown: settings, the table, the sample images."""
    head = ["holes", "n", "method", *_HEADER]
    lines = [f"# Evaluation of `{report['checkpoint']}` (step {report['step']})", "",
             f"- data: {report['data']}, {report['num_images']} images at {report['image_size']}px "
             f"(skipped: {report['skipped']['empty_hole']} empty holes, "
             f"{report['skipped']['unreadable']} unreadable)",
             f"- masks: {report['masks']} (seed {report['seed']})",
             f"- metrics: {report['metrics']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * len(_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    lines += ["", f"Columns: input, {', '.join(map(label, report['methods']))}, ground truth.", ""]
    lines += [f"![{s}]({s})" for s in report["samples"]]
    return "\n".join(lines) + "\n"
