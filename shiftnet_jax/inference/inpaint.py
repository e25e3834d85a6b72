"""Inpaint your own images with a trained generator: any size, known pixels kept exactly.

**Working resolution.** The U-Net needs sides that are multiples of
``2**num_downs`` (256 for the paper's 8 levels) and was trained at one scale
(``config["data"]["crop_size"]``, 256). So every image is resized (area
filter down, bicubic up) to a *working size* whose longer side is ``size``
(default: the training crop size) and whose shorter side keeps the aspect
ratio, each side rounded to the nearest multiple of ``2**num_downs`` (the
small aspect change this causes is undone by the resize back). The hole is
resized conservatively (a working pixel is a hole if any pixel under it is),
the network fills it, the working-size result is upsampled to the original
size and pasted **only inside the original hole**: outside it the output is
the decoded input, bit for bit. A 4000x3000 photo therefore costs one
256x256 forward pass; a larger ``size`` gives sharper fills at more cost.

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
see :func:`flow_image`). Bad files are reported in one line and skipped.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import jax
import numpy as np

from shiftnet_jax.data import image_io
from shiftnet_jax.data.image_io import InputError, as_rgb_uint8, from_uint8, to_uint8
from shiftnet_jax.errors import UserError, escaped, first_line
from shiftnet_jax.inference.predict import DEFAULT_SIZE, forward, pad_batch

MASK_RE = re.compile(r"^(?P<base>.+)_mask(?P<num>[0-9]*)$")


class Pair(NamedTuple):
    """An image file, one of its mask files, and the output path (relative to OUT) they give."""

    image: Path
    mask: Path
    output: Path


class Job(NamedTuple):
    """One image on its way through a batch: the original and what the network sees."""

    image: np.ndarray         # uint8 (H, W, 3), the original
    mask: np.ndarray          # bool (H, W), its (dilated) hole
    small: np.ndarray         # float32 (h, w, 3) in [-1, 1], the working-size image
    small_hole: np.ndarray    # float32 (h, w, 1), 1 = hole
    key: Any                  # where the result goes (a list index, an output path)


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
    known = (~mask[top:bottom, left:right]).astype(np.uint8)  # distance to the nearest hole pixel
    out = mask.copy()
    out[top:bottom, left:right] = cv2.distanceTransform(known, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= pixels
    return out


def _checked(image, mask, dilate_px: int):
    """An image array and its mask -> (uint8 (H, W, 3), bool (H, W) dilated hole)."""
    image = as_rgb_uint8(image)
    mask = np.asarray(mask)
    mask = mask[..., 0] if mask.ndim == 3 else mask
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    return image, dilate(mask != 0, dilate_px)


# -------------------------------------------------------- working resolution
def working_size(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """(h, w): longer side ~ ``size``, aspect kept, each side a multiple of ``multiple`` (>= 1x)."""
    scale = size / max(height, width)
    return tuple(max(1, int(side * scale / multiple + 0.5)) * multiple for side in (height, width))


def _resize(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    shrink = hw[0] * hw[1] < a.shape[0] * a.shape[1]
    return cv2.resize(a, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def _prepare(image, mask, size, multiple, key=None) -> Job:
    """Original (uint8, bool) -> a :class:`Job` with the working image and hole."""
    hw = working_size(*image.shape[:2], size, multiple)
    small = from_uint8(_resize(image, hw))
    # Area-average then "> 0": every working pixel that touches the hole is a hole.
    hole = cv2.resize(mask.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_AREA) > 0
    return Job(image, mask, small, hole.astype(np.float32)[..., None], key)


# ------------------------------------------------------------------ the shift, visible
def position_colour(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Colour of a normalised position (y, x) in [0, 1]: red grows with x, green with y,
    blue = 1 - (x + y) / 2 (top-left blue, top-right pink, bottom-left green, bottom-right yellow)."""
    return np.stack([x, y, 1.0 - 0.5 * (x + y)], axis=-1)


def flow_image(image: np.ndarray, feature_hole: np.ndarray, index: np.ndarray,
               valid: np.ndarray) -> np.ndarray:
    """Where each hole feature was copied from, as uint8 (H, W, 3) at the image's size.

    Every shift-layer position gets the colour of a position (:func:`position_colour`):
    known positions their own, blended half with the grey image; hole positions the
    colour of their *source*, at full strength. A filled region coloured like a known
    region was copied from there. Black: a hole position with nothing to copy.

    Args:
      image: uint8 (H, W, 3) original. feature_hole: bool (h, w).
      index: int (h*w,) flat source positions; valid: bool (h*w,).
    """
    gh, gw = feature_hole.shape
    own = np.arange(gh * gw)
    src_y, src_x = np.divmod(np.where(valid, index, own), gw)
    colour = position_colour(src_y / max(gh - 1, 1), src_x / max(gw - 1, 1))
    colour = np.where((feature_hole.ravel() & ~valid)[:, None], 0.0, colour).reshape(gh, gw, 3)
    height, width = image.shape[:2]
    up = cv2.resize(colour.astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST)
    in_hole = cv2.resize(feature_hole.astype(np.uint8), (width, height),
                         interpolation=cv2.INTER_NEAREST)[..., None] > 0
    grey = image.astype(np.float32).mean(-1, keepdims=True) / 255.0
    return np.rint(255 * np.where(in_hole, up, 0.5 * up + 0.5 * grey)).astype(np.uint8)


# ---------------------------------------------------------------- inpainting
def inpaint_batch(model, variables, images, masks, *, size: int | None = None, dilate_px: int = 0,
                  flow: bool = False, batch_size: int = 8):
    """Inpaint a list of images; returns a list of uint8 (H, W, 3) (or (output, flow) pairs).

    Images of the same working size share jitted calls of up to ``batch_size``
    (padded to a power of two, so few shapes are compiled).

    Args:
      images: uint8/uint16 arrays (H, W[, 1|3|4]); masks: bool/int (H, W), nonzero = hole.
      size: working size (longer side); default 256. dilate_px: grow holes first.
    """
    size = size or DEFAULT_SIZE
    results = [None] * len(images)
    groups: dict[tuple, list[Job]] = {}   # jobs by working size
    for i, (image, mask) in enumerate(zip(images, masks)):
        job = _prepare(*_checked(image, mask, dilate_px), size, model.size_multiple, key=i)
        groups.setdefault(job.small.shape, []).append(job)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            for job, result in zip(chunk, _run(model, variables, chunk, flow, batch_size)):
                results[job.key] = result
    return results


def _run(model, variables, chunk, flow, batch_size):
    """Forward one same-size chunk; yields finished (output[, flow]) per job."""
    n = min(batch_size, 1 << (len(chunk) - 1).bit_length())
    small = pad_batch(np.stack([job.small for job in chunk]), n)
    hole = pad_batch(np.stack([job.small_hole for job in chunk]), n)
    # Nothing to fill anywhere: skip the network (the result is the input).
    if not hole.any() and not flow:
        out, extra = small, None
    elif hasattr(type(model), "composite"):   # another backend (inference.onnx_backend)
        if flow:
            raise InputError("--flow needs the JAX backend (the shift's sources come from it)")
        out, extra = model.composite(small, hole), None
    else:
        prediction = jax.device_get(forward(model, variables, small, hole, flow=flow))
        out, extra = prediction.composite, prediction.flow
    for k, job in enumerate(chunk):
        image, mask = job.image, job.mask
        filled = image.copy()
        if mask.any():
            up = to_uint8(cv2.resize(np.nan_to_num(out[k]), (image.shape[1], image.shape[0]),
                                     interpolation=cv2.INTER_CUBIC))
            filled[mask] = up[mask]  # known pixels stay exactly the input's
        if not flow:
            yield filled
        else:
            index, valid, fhole = (np.asarray(a[k]) for a in extra)
            yield filled, flow_image(image, fhole, index.ravel(), valid.ravel())


def inpaint_image(model, variables, image, mask, *, size: int | None = None, dilate_px: int = 0,
                  flow: bool = False):
    """One image: uint8 (H, W, 3) output equal to ``image`` outside the (dilated) hole.

    Args:
      image: uint8/uint16 (H, W[, 1|3|4]). mask: (H, W) bool, True/nonzero = hole.
      size: working size (longer side, default 256); see the module docstring.
    Returns:
      uint8 (H, W, 3); with ``flow`` a pair (output, flow image uint8 (H, W, 3)).
    """
    return inpaint_batch(model, variables, [image], [mask], size=size, dilate_px=dilate_px,
                         flow=flow, batch_size=1)[0]


def inpaint_file(model, variables, image_path, mask_path, out_path, *, size=None, dilate_px=0,
                 flow=False, threshold: float = image_io.MASK_THRESHOLD,
                 max_pixels: int = image_io.CLI_MAX_PIXELS) -> list[Path]:
    """``image_path`` + ``mask_path`` -> ``out_path`` (PNG; with flow also ``*_flow.png``);
    files over ``max_pixels`` are an ``image_io.ImageTooLarge`` error."""
    image = image_io.read_image(image_path, max_pixels)
    mask = image_io.read_mask(mask_path, image.shape[:2], threshold, max_pixels)
    result = inpaint_image(model, variables, image, mask, size=size, dilate_px=dilate_px, flow=flow)
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
                   max_pixels: int = image_io.CLI_MAX_PIXELS) -> dict:
    """Inpaint every (image, mask) pair of ``input_dir`` into ``output_dir``.

    Bad pairs are reported through ``log`` (one line each; default stderr) and
    skipped. Returns ``{"written": [paths], "errors": [one-line messages]}``.
    """
    from tqdm import tqdm

    if Path(input_dir).resolve() == Path(output_dir).resolve():
        raise InputError(f"{escaped(output_dir)}: the output folder must differ from the input folder "
                         "(outputs are named like the masks)")
    pairs, errors = find_pairs(input_dir)
    bar = tqdm(total=len(pairs), desc="inpaint", unit="img", disable=not progress)
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    for e in errors:
        log(f"error: {e}")
    size, out_root = size or DEFAULT_SIZE, Path(output_dir)
    written, pending, cache = [], {}, (None, None)

    def flush(key):
        chunk = pending.pop(key)
        try:
            for job, result in zip(chunk, _run(model, variables, chunk, flow, batch_size)):
                out = out_root / job.key
                image_io.save_png(out, result[0] if flow else result)
                written.append(out)
                if flow:
                    image_io.save_png(out.with_name(out.stem + "_flow.png"), result[1])
        except (OSError, UserError) as e:  # save_png's one line names the file and the space
            errors.append(str(e) if isinstance(e, UserError) else f"{escaped(out_root)}: cannot write ({first_line(e)})")
            log(f"error: {errors[-1]}")
        bar.update(len(chunk))

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
        job = _prepare(cache[1], mask, size, model.size_multiple, key=out_rel)
        pending.setdefault(job.small.shape, []).append(job)
        if len(pending[job.small.shape]) == batch_size:
            flush(job.small.shape)
    for key in list(pending):
        flush(key)
    bar.close()
    return {"written": written, "errors": errors}


# ------------------------------------------------ the shift, as data (the studio's /api/flow)
def shift_sources(model, variables, image, mask, *, size: int | None = None,
                  dilate_px: int = 0) -> dict:
    """Where the shift copied every hole position from, as arrays at the shift layer.

    The same working size, hole and forward pass as :func:`inpaint_image` with
    ``flow=True`` (whose flow image draws these data).

    Args:
      image: uint8/uint16 (H, W[, 1|3|4]). mask: (H, W), nonzero = hole.
    Returns:
      dict with ``working`` (h, w), the working size; ``hole`` bool (gh, gw), the
      hole at the shift layer; ``source`` int (gh, gw, 2), the (y, x) each position
      copied from; ``valid`` bool (gh, gw), True where ``source`` means something
      (a hole position of an image that has known positions).
    """
    image, mask = _checked(image, mask, dilate_px)
    job = _prepare(image, mask, size or DEFAULT_SIZE, model.size_multiple)
    index, valid, fhole = jax.device_get(forward(model, variables, job.small[None],
                                                 job.small_hole[None], flow=True).flow)
    fhole = np.asarray(fhole[0]).astype(bool)
    gh, gw = fhole.shape
    source = np.stack(np.divmod(np.asarray(index[0]).reshape(gh, gw), gw), axis=-1)
    return {"working": job.small.shape[:2], "hole": fhole, "source": source,
            "valid": np.asarray(valid[0]).reshape(gh, gw).astype(bool)}
