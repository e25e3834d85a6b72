"""Classical inpainting baselines, by name: diffusion, mean fill and copy-paste.

* ``telea``, ``navier_stokes``: ``cv2.inpaint`` (radius 3), diffusion from the border.
* ``mean_fill``: the hole filled with the mean of the known pixels, per channel.
* ``patchmatch``: PatchMatch (Barnes et al. 2009), the algorithm behind Photoshop's
  Content-Aware Fill -- the paper's Table 1 row of that name. From the package
  ``pypatchmatch`` (a prebuilt wheel, the one IOPaint uses), patch radius 3,
  seed 0 (the same inputs give the same fill).
* ``xphoto_fsr_fast``, ``xphoto_fsr_best``, ``xphoto_shiftmap``: OpenCV contrib's
  ``cv2.xphoto.inpaint`` (frequency-selective reconstruction, fast and best, and
  shift-map, another copy-paste method). They need ``opencv-contrib-python-headless``
  in place of ``opencv-python-headless`` (only one of the two may be installed); FSR
  best takes tens of seconds to minutes per 256x256 image on a CPU.

Every baseline maps uint8 (H, W, 3) RGB and a bool (H, W) hole to uint8 (H, W, 3)
with the known pixels unchanged. A baseline whose package is absent raises
``BaselineUnavailable`` with a one-line message saying what to install.
"""

from __future__ import annotations

import cv2
import numpy as np

from shiftnet_jax.errors import UserError

INPAINT_RADIUS = 3
PATCHMATCH_RADIUS = 3
LABELS = {"telea": "Telea", "navier_stokes": "Navier-Stokes", "mean_fill": "mean fill",
          "patchmatch": "PatchMatch", "xphoto_fsr_fast": "xphoto FSR fast",
          "xphoto_fsr_best": "xphoto FSR best", "xphoto_shiftmap": "xphoto shift-map"}
NAMES = tuple(LABELS)
DEFAULT = ("telea", "navier_stokes", "mean_fill", "patchmatch")
XPHOTO_FLAGS = {"xphoto_fsr_fast": "INPAINT_FSR_FAST", "xphoto_fsr_best": "INPAINT_FSR_BEST",
                "xphoto_shiftmap": "INPAINT_SHIFTMAP"}


class BaselineUnavailable(UserError):
    """A baseline whose optional package is not installed (one line: what to install)."""


def _cv_inpaint(flag):
    def fill(image, hole):
        return cv2.inpaint(image, hole.astype(np.uint8), INPAINT_RADIUS, flag)
    return fill


def mean_fill(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The mean of the known pixels in the hole (mid-grey when nothing is known)."""
    known = ~hole
    mean = image[known].mean(axis=0) if known.any() else np.full(3, 127.5)
    out = image.copy()
    out[hole] = np.rint(mean).astype(np.uint8)
    return out


def patchmatch(image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    try:
        import patchmatch as pm
    except ImportError:
        raise BaselineUnavailable("the patchmatch baseline needs the package pypatchmatch "
                                  "(pip install pypatchmatch)") from None
    if not pm.patchmatch_available:
        raise BaselineUnavailable("pypatchmatch is installed but its native library did not load "
                                  "(pip install --force-reinstall --no-deps pypatchmatch)")
    if hole.all():
        return mean_fill(image, hole)  # nothing to copy from
    pm.set_random_seed(0)
    out = np.asarray(pm.inpaint(np.ascontiguousarray(image), hole.astype(np.uint8),
                                patch_size=PATCHMATCH_RADIUS))
    return np.where(hole[..., None], out, image).astype(np.uint8)


def _xphoto(flag_name: str):
    def fill(image, hole):
        if not hasattr(cv2, "xphoto"):
            raise BaselineUnavailable(
                f"the {flag_name.lower()} baselines need OpenCV contrib: pip install "
                "opencv-contrib-python-headless (it replaces opencv-python-headless; uninstall that first)")
        if hole.all():
            return mean_fill(image, hole)
        # xphoto expects an intensity-first colour space (CIELab) and a mask of *known* pixels.
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
        out = np.zeros_like(lab)
        cv2.xphoto.inpaint(lab, (~hole).astype(np.uint8) * 255, out, getattr(cv2.xphoto, flag_name))
        out = cv2.cvtColor(out, cv2.COLOR_LAB2RGB)
        return np.where(hole[..., None], out, image).astype(np.uint8)
    return fill


FILLS = {"telea": _cv_inpaint(cv2.INPAINT_TELEA), "navier_stokes": _cv_inpaint(cv2.INPAINT_NS),
         "mean_fill": mean_fill, "patchmatch": patchmatch,
         **{name: _xphoto(flag) for name, flag in XPHOTO_FLAGS.items()}}


def parse(text: str | None) -> tuple[str, ...]:
    """``"telea,patchmatch"`` -> names (``None``/``""``: the default set; ``"none"``: none)."""
    if not text:
        return DEFAULT
    if text == "none":
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FILLS]
    if unknown:
        raise ValueError(f"unknown baseline {unknown[0]!r} (choose from {', '.join(NAMES)})")
    return names


def check_available(names) -> None:
    """Raise ``BaselineUnavailable`` now (not after the model ran) for a missing package."""
    probe, hole = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16), bool)
    hole[6:9, 6:9] = True
    for name in names:
        FILLS[name](probe, hole)


def fill(name: str, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Baseline ``name`` on uint8 (H, W, 3) and bool (H, W) -> uint8 (H, W, 3)."""
    return FILLS[name](image, hole)


def fill_batch(names, images: np.ndarray, holes: np.ndarray, pool=None) -> dict[str, np.ndarray]:
    """Every baseline of ``names`` on uint8 (B, H, W, 3) with bool (B, H, W) holes ->
    {name: uint8 (B, H, W, 3)}; images in parallel over ``pool`` (a thread pool) if given."""
    out = {}
    for name in names:
        def one(i, name=name):
            return FILLS[name](images[i], holes[i])
        out[name] = np.stack(list((pool.map if pool else map)(one, range(len(images)))))
    return out
