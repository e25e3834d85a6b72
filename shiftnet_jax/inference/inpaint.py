"""Inpaint your own images with a trained generator: any size, known pixels kept exactly.

**Framing.** The U-Net needs sides that are multiples of ``2**num_downs`` and
was trained at one scale (``config["data"]["crop_size"]``), so each photo is
cut into *windows* that the network sees at a *working size* (longer side
``size``, default the training crop size): ``strategy="crop"`` (the default)
one window around each hole at the photo's own resolution where it can,
``"resize"`` the whole photo shrunk to the working size, ``"original"`` the
whole photo padded, unresized (:mod:`shiftnet_jax.inference.framing`). The
hole is resized conservatively (a working pixel is a hole if any pixel under
it is), the network fills it, the result is brought back to the window's size
and pasted **only inside the original hole**: outside it the output is the
decoded input, bit for bit.

**Input/output.** Images may be RGB, RGBA, grey, palette or 16-bit; they are
decoded to 8-bit RGB by :mod:`shiftnet_jax.data.image_io` (16-bit / 257, alpha
composited over white, EXIF rotation applied) and the output is 8-bit RGB PNG.
Masks: any nonzero pixel is a hole (LaMa's convention; transparent pixels of a
mask with alpha are not; ``threshold`` raises the bar, see ``image_io``). An empty mask returns the image
unchanged; a mask covering everything gives the network's output (finite).

**Folders** follow LaMa: ``x.png`` with ``x_mask.png`` or ``x_mask001.png``,
``x_mask002.png``, ... beside it; each mask gives one output named after the
mask (``OUT/x_mask001.png``), subfolders are mirrored. With ``flow`` a
visualisation of the shift is written beside each output (``*_flow.png``,
see :mod:`shiftnet_jax.inference.flow_view`). Bad files are reported in one line and skipped.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import jax
import numpy as np

from shiftnet_jax.data import image_io
from shiftnet_jax.data.image_io import InputError, as_rgb_uint8, to_uint8
from shiftnet_jax.errors import UserError, escaped, first_line
from shiftnet_jax.inference import framing
from shiftnet_jax.inference.flow_view import flow_image, with_legend
from shiftnet_jax.inference.framing import working_size  # noqa: F401 - part of this module's face
from shiftnet_jax.inference.predict import DEFAULT_SIZE, forward, pad_batch
from shiftnet_jax.nets.generator import size_multiple

MASK_RE = re.compile(r"^(?P<base>.+)_mask(?P<num>[0-9]*)$")


class Pair(NamedTuple):
    """An image file, one of its mask files, and the output path (relative to OUT) they give."""

    image: Path
    mask: Path
    output: Path


# ------------------------------------------------------------ holes
def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool (H, W) hole by ``pixels``: every pixel within Euclidean distance ``pixels``
    of a hole pixel joins the hole. An exact distance transform, so the time is linear in the
    pixels whatever the radius (a 49 MP image dilated by 256 with a disc kernel took ~110 s)."""
    if pixels <= 0 or not mask.any():
        return mask
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    top, left = max(rows[0] - pixels, 0), max(cols[0] - pixels, 0)  # only the box can change
    bottom, right = rows[-1] + pixels + 1, cols[-1] + pixels + 1
    known = np.logical_not(mask[top:bottom, left:right]).view(np.uint8)  # 1 = known, 0 = hole
    distance = cv2.distanceTransform(known, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # to the nearest hole
    whole = top == 0 and left == 0 and bottom >= mask.shape[0] and right >= mask.shape[1]
    out = np.empty_like(mask) if whole else mask.copy()   # a 49 MP copy is ~0.4 s: only when needed
    np.less_equal(distance, pixels, out=out[top:bottom, left:right])
    return out


def _checked(image, mask, dilate_px: int):
    """An image array and its mask -> (uint8 (H, W, 3), bool (H, W) dilated hole)."""
    image = as_rgb_uint8(image)
    mask = np.asarray(mask)
    mask = mask[..., 0] if mask.ndim == 3 else mask
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    return image, dilate(mask != 0, dilate_px)


# ---------------------------------------------------------------- inpainting
class _Target:
    """One (image, mask) being inpainted: its windows are filled one after the other."""

    def __init__(self, image, mask, strategy, size, multiple, margin, flow, name=None):
        self.image, self.mask, self.strategy, self.name = image, mask, strategy, name
        self.filled = image.copy()
        grey = image.mean(-1, keepdims=True).astype(np.uint8)
        self.flow = np.repeat(grey, 3, axis=-1) if flow else None
        self.jobs = []
        for window in framing.windows(strategy, mask, size, margin):
            small, hole = framing.prepare(image[window.slices], mask[window.slices], strategy,
                                          size, multiple)
            self.jobs.append((self, window, small, hole))
        self.frames = [(job[1], job[2].shape[:2]) for job in self.jobs]
        self.left = len(self.jobs)

    def describe(self) -> str:
        return framing.describe(self.strategy, self.frames)

    def result(self):
        return self.filled if self.flow is None else (self.filled, with_legend(self.flow))


def _run(model, variables, chunk, flow, batch_size) -> list[_Target]:
    """Forward one same-shape chunk of (target, window, small, hole) jobs; paste each back.
    Returns the targets that are now complete."""
    n = min(batch_size, 1 << (len(chunk) - 1).bit_length())
    small = pad_batch(np.stack([j[2] for j in chunk]), n)
    hole = pad_batch(np.stack([j[3] for j in chunk]), n)
    if not hole.any() and not flow:  # nothing to fill anywhere: the result is the input
        out, extra = small, None
    elif hasattr(type(model), "composite"):   # another backend (inference.onnx_backend)
        if flow:
            raise InputError("--flow needs the JAX backend (the shift's sources come from it)")
        out, extra = model.composite(small, hole), None
    else:
        prediction = jax.device_get(forward(model, variables, small, hole, flow=flow))
        out, extra = prediction.composite, prediction.flow
    done = []
    for k, (target, window, _, _) in enumerate(chunk):
        region, known = target.mask[window.slices], target.image[window.slices]
        if region.any():
            up = to_uint8(framing.restore(out[k], target.strategy, window.shape))
            target.filled[window.slices][region] = up[region]  # known pixels stay the input's
        if flow:
            index, valid, fhole = (np.asarray(a[k]) for a in extra)
            # ``original`` pads the window: draw the padded shape, keep the window's part.
            pad = ([(0, s - w) for s, w in zip(out.shape[1:3], window.shape)]
                   if target.strategy == "original" else [(0, 0), (0, 0)])
            picture = flow_image(np.pad(known, pad + [(0, 0)], mode="edge"), fhole,
                                 index.ravel(), valid.ravel())
            target.flow[window.slices] = picture[:window.shape[0], :window.shape[1]]
        target.left -= 1
        if target.left == 0:
            done.append(target)
    return done


class _Queue:
    """Jobs grouped by working shape, run ``batch_size`` at a time; ``finish`` gets each
    completed target."""

    def __init__(self, model, variables, flow, batch_size, finish):
        self.model, self.variables, self.flow, self.batch_size = model, variables, flow, batch_size
        self.finish, self.pending = finish, {}

    def add(self, target: _Target):
        if not target.jobs:  # crop with an empty hole: nothing to run
            self.finish(target)
        for job in target.jobs:
            shape = job[2].shape
            self.pending.setdefault(shape, []).append(job)
            if len(self.pending[shape]) == self.batch_size:
                self._flush(shape)

    def _flush(self, shape):
        chunk = self.pending.pop(shape)
        for target in _run(self.model, self.variables, chunk, self.flow, self.batch_size):
            self.finish(target)

    def drain(self):
        for shape in list(self.pending):
            self._flush(shape)


def inpaint_batch(model, variables, images, masks, *, size: int | None = None, dilate_px: int = 0,
                  flow: bool = False, batch_size: int = 8, strategy: str = framing.DEFAULT_STRATEGY,
                  margin: int | None = None, log=None):
    """Inpaint a list of images; returns a list of uint8 (H, W, 3) (or (output, flow) pairs).

    Windows of the same working shape share jitted calls of up to ``batch_size``
    (padded to a power of two, so few shapes are compiled).

    Args:
      images: uint8/uint16 arrays (H, W[, 1|3|4]); masks: bool/int (H, W), nonzero = hole.
      size: working size (longer side); default 256. dilate_px: grow holes first.
      strategy: ``crop``, ``resize`` or ``original`` (see ``framing``); margin: crop margin (px).
      log: called with one line per image saying how it was framed.
    """
    size, multiple = size or DEFAULT_SIZE, size_multiple(model.num_downs)
    framing.check_strategy(strategy)
    targets = [_Target(*_checked(image, mask, dilate_px), strategy, size, multiple, margin, flow)
               for image, mask in zip(images, masks)]
    queue = _Queue(model, variables, flow, batch_size, lambda target: None)
    for target in targets:
        if log:
            log(target.describe())
        queue.add(target)
    queue.drain()
    return [target.result() for target in targets]


def inpaint_image(model, variables, image, mask, *, size: int | None = None, dilate_px: int = 0,
                  flow: bool = False, strategy: str = framing.DEFAULT_STRATEGY,
                  margin: int | None = None, log=None):
    """One image: uint8 (H, W, 3) output equal to ``image`` outside the (dilated) hole.

    Args:
      image: uint8/uint16 (H, W[, 1|3|4]). mask: (H, W) bool, True/nonzero = hole.
      size: working size (longer side, default 256); strategy, margin: see ``framing``.
    Returns:
      uint8 (H, W, 3); with ``flow`` a pair (output, flow image uint8 (H + legend, W, 3)).
    """
    return inpaint_batch(model, variables, [image], [mask], size=size, dilate_px=dilate_px,
                         flow=flow, batch_size=1, strategy=strategy, margin=margin, log=log)[0]


def inpaint_file(model, variables, image_path, mask_path, out_path, *, size=None, dilate_px=0,
                 flow=False, threshold: float = image_io.MASK_THRESHOLD,
                 max_pixels: int = image_io.CLI_MAX_PIXELS,
                 strategy: str = framing.DEFAULT_STRATEGY, margin: int | None = None,
                 log=None) -> list[Path]:
    """``image_path`` + ``mask_path`` -> ``out_path`` (PNG; with flow also ``*_flow.png``);
    files over ``max_pixels`` are an ``image_io.ImageTooLarge`` error."""
    image = image_io.read_image(image_path, max_pixels)
    mask = image_io.read_mask(mask_path, image.shape[:2], threshold, max_pixels)
    result = inpaint_image(model, variables, image, mask, size=size, dilate_px=dilate_px, flow=flow,
                           strategy=strategy, margin=margin, log=log)
    out_path = Path(out_path)
    written = [out_path]
    image_io.save_png(out_path, result[0] if flow else result)
    if flow:
        written.append(out_path.with_name(out_path.stem + "_flow.png"))
        image_io.save_png(written[-1], result[1])
    return written


def find_pairs(input_dir) -> tuple[list[Pair], list[str]]:
    """LaMa folder convention -> ([:class:`Pair`], [errors])."""
    root = Path(input_dir)
    if not root.is_dir():
        raise InputError(f"{escaped(input_dir)}: no such directory")
    images, maskfiles = {}, []
    for d, files in image_io.walk_files(root):
        for f in files:
            p = Path(d) / f
            if not image_io.is_image_file(f):
                continue  # non-image names are not ours to judge
            m = MASK_RE.match(p.stem)
            if m:
                maskfiles.append((p, p.parent / m["base"]))
            else:
                images.setdefault(p.parent / p.stem, []).append(p)
    pairs, errors, used = [], [], set()
    for mask, base in maskfiles:
        found = images.get(base, [])
        if len(found) != 1:
            why = "no image" if not found else f"{len(found)} images ({', '.join(escaped(x.name) for x in found)})"
            errors.append(f"{escaped(mask)}: {why} named {escaped(base.name)}.* beside it")
            continue
        used.add(base)
        pairs.append(Pair(found[0], mask, mask.relative_to(root).with_suffix(".png")))
    for base, found in images.items():
        if base not in used:
            errors.extend(f"{escaped(p)}: no mask (expected {escaped(base.name)}_mask.png beside it)"
                          for p in found)
    return pairs, errors


def inpaint_folder(model, variables, input_dir, output_dir, *, size=None, dilate_px=0, flow=False,
                   batch_size: int = 8, progress: bool = True, log=None,
                   threshold: float = image_io.MASK_THRESHOLD,
                   max_pixels: int = image_io.CLI_MAX_PIXELS,
                   strategy: str = framing.DEFAULT_STRATEGY, margin: int | None = None) -> dict:
    """Inpaint every (image, mask) pair of ``input_dir`` into ``output_dir``.

    Bad pairs are reported through ``log`` (one line each; default stderr) and
    skipped. Returns ``{"written": [paths], "errors": [one-line messages],
    "framing": {output path: one line saying how it was framed}}``.
    """
    from tqdm import tqdm

    if Path(input_dir).resolve() == Path(output_dir).resolve():
        raise InputError(f"{escaped(output_dir)}: the output folder must differ from the input folder "
                         "(outputs are named like the masks)")
    framing.check_strategy(strategy)
    pairs, errors = find_pairs(input_dir)
    bar = tqdm(total=len(pairs), desc="inpaint", unit="img", disable=not progress)
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    for e in errors:
        log(f"error: {e}")
    size, multiple, out_root = size or DEFAULT_SIZE, size_multiple(model.num_downs), Path(output_dir)
    written, described, cache = [], {}, (None, None)

    def finish(target):
        out = out_root / target.name
        try:
            image_io.save_png(out, target.filled)
            if flow:
                image_io.save_png(out.with_name(out.stem + "_flow.png"), target.result()[1])
            written.append(out)
            described[str(out)] = target.describe()
        except (OSError, UserError) as e:  # save_png's one line names the file and the space
            errors.append(str(e) if isinstance(e, UserError) else f"{escaped(out_root)}: cannot write ({first_line(e)})")
            log(f"error: {errors[-1]}")
        bar.update(1)

    queue = _Queue(model, variables, flow, batch_size, finish)
    for image_path, mask_path, out_rel in pairs:
        try:
            if cache[0] != image_path:  # masks of one image are adjacent: decode it once
                cache = (image_path, None)
                cache = (image_path, image_io.read_image(image_path, max_pixels))
            if cache[1] is None:
                raise InputError(f"{escaped(image_path)}: not readable (see above)")
            mask = dilate(image_io.read_mask(mask_path, cache[1].shape[:2], threshold, max_pixels),
                          dilate_px)
        except InputError as e:
            errors.append(str(e))
            log(f"error: {e}")
            bar.update(1)
            continue
        queue.add(_Target(cache[1], mask, strategy, size, multiple, margin, flow, name=out_rel))
    queue.drain()
    bar.close()
    return {"written": written, "errors": errors, "framing": described}


# ------------------------------------------------ the shift, as data (the studio's /api/flow)
def shift_sources(model, variables, image, mask, *, size: int | None = None, dilate_px: int = 0,
                  strategy: str = framing.DEFAULT_STRATEGY, margin: int | None = None) -> list[dict]:
    """Where the shift copied every hole position from, per window, at the shift layer.

    The same windows, working shapes, holes and forward passes as :func:`inpaint_image`
    with ``flow=True`` (whose flow image draws these data).

    Args:
      image: uint8/uint16 (H, W[, 1|3|4]). mask: (H, W), nonzero = hole.
    Returns:
      one dict per window: ``window`` (a ``framing.Window`` of the photo); ``working``
      (h, w), its working shape; ``hole`` bool (gh, gw), the hole at the shift layer;
      ``source`` int (gh, gw, 2), the (y, x) each position copied from; ``valid`` bool
      (gh, gw), True where ``source`` means something; ``painted`` float (gh, gw), the
      fraction of each cell's working pixels that are hole (a cell with ``painted > 0``
      and not ``hole`` was counted as known although partly painted).
    """
    image, mask = _checked(image, mask, dilate_px)
    size, multiple = size or DEFAULT_SIZE, size_multiple(model.num_downs)
    target = _Target(image, mask, framing.check_strategy(strategy), size, multiple, margin, False)
    views = []
    for _, window, small, hole in target.jobs:
        index, valid, fhole = jax.device_get(forward(model, variables, small[None], hole[None],
                                                     flow=True).flow)
        fhole = np.asarray(fhole[0]).astype(bool)
        gh, gw = fhole.shape
        painted = cv2.resize(hole[..., 0], (gw, gh), interpolation=cv2.INTER_AREA)
        views.append({"window": window, "working": small.shape[:2], "hole": fhole,
                      "source": np.stack(np.divmod(np.asarray(index[0]).reshape(gh, gw), gw), axis=-1),
                      "valid": np.asarray(valid[0]).reshape(gh, gw).astype(bool),
                      "painted": painted.reshape(gh, gw)})
    return views
