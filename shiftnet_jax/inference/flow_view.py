"""The shift, visible: where each hole feature was copied from, as an image with a legend.

``inpaint.py --flow`` writes it beside each output; the studio's shift view colours
positions with the same :func:`position_colour` (tests/test_studio_api.py checks it).
"""

from __future__ import annotations

import cv2
import numpy as np


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


# ------------------------------------------------------------------ the legend
LEGEND_TEXT = ("hole: colour of the position it was copied from", "known: its own colour, half strength",
               "black: nothing known to copy")


def flow_legend(width: int) -> np.ndarray:
    """A uint8 (h, width, 3) strip explaining :func:`flow_image`: the position colours as a
    square (top-left blue, top-right pink, bottom-left green, bottom-right yellow) and three lines."""
    height = int(np.clip(width // 6, 36, 160))
    strip = np.full((height, width, 3), 255, np.uint8)
    side = min(height - 4, width)
    y, x = np.mgrid[0:side, 0:side] / max(side - 1, 1)
    strip[2:2 + side, :side] = np.rint(255 * position_colour(y, x)).astype(np.uint8)
    room = width - side - 8
    if room > 20:
        longest = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)[0][0] for t in LEGEND_TEXT)
        scale = min(room / longest, (height - 8) / 3 / 24)
        for k, text in enumerate(LEGEND_TEXT):
            cv2.putText(strip, text, (side + 6, int((k + 1) * height / 3.4)), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def with_legend(flow: np.ndarray) -> np.ndarray:
    """The flow image (H, W, 3) with :func:`flow_legend` below it: (H + h, W, 3)."""
    return np.concatenate([flow, flow_legend(flow.shape[1])], axis=0)
