"""Classical baselines: each fills only the hole; PatchMatch copies texture; a missing
package is one line saying what to install."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from shiftnet_jax.inference import baselines, evaluate


def _stripes(h=96, w=96):
    """Diagonal stripes of period 12: copy-paste can rebuild them, diffusion cannot."""
    y, x = np.mgrid[0:h, 0:w]
    grey = np.where((x + y) % 12 < 6, 40, 220).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _hole_psnr(out, truth, hole):
    a, b = (x[None].astype(np.float32) / 127.5 - 1 for x in (out, truth))
    return float(evaluate.metrics.psnr(a, b, hole[None, ..., None])[0])


def test_every_default_baseline_keeps_known_pixels_on_a_real_photo():
    image = skdata.astronaut()[::4, ::4]  # 128x128
    hole = np.zeros(image.shape[:2], bool)
    hole[40:80, 50:90] = True
    for name in baselines.DEFAULT:
        out = baselines.fill(name, image, hole)
        assert out.shape == image.shape and out.dtype == np.uint8, name
        np.testing.assert_array_equal(out[~hole], image[~hole])
        assert (out[hole] != image[hole]).any(), name


def test_patchmatch_copies_texture_that_diffusion_blurs_and_is_deterministic():
    image = _stripes()
    hole = np.zeros(image.shape[:2], bool)
    hole[30:66, 30:66] = True
    pm = baselines.fill("patchmatch", image, hole)
    telea = baselines.fill("telea", image, hole)
    assert _hole_psnr(pm, image, hole) > _hole_psnr(telea, image, hole) + 3
    np.testing.assert_array_equal(pm, baselines.fill("patchmatch", image, hole))  # seed 0
    full = np.ones(image.shape[:2], bool)  # nothing to copy from: the mean fill
    np.testing.assert_array_equal(baselines.fill("patchmatch", image, full),
                                  baselines.mean_fill(image, full))


def test_names_parse_and_unknown_names_fail_in_one_line():
    assert baselines.parse(None) == baselines.DEFAULT
    assert baselines.parse("telea, patchmatch") == ("telea", "patchmatch")
    assert baselines.parse("none") == ()
    with pytest.raises(ValueError, match="unknown baseline 'photoshop' \\(choose from telea, "):
        baselines.parse("telea,photoshop")


def test_xphoto_fills_with_opencv_contrib_and_says_what_to_install_without_it():
    """Both branches are real: the project's venv has plain OpenCV (the message); with
    opencv-contrib-python-headless importable (PYTHONPATH) the fills are checked."""
    image = skdata.astronaut()[::8, ::8]  # 64x64
    hole = np.zeros(image.shape[:2], bool)
    hole[20:36, 24:40] = True
    if not hasattr(cv2, "xphoto"):
        for name in baselines.XPHOTO_FLAGS:
            with pytest.raises(baselines.BaselineUnavailable) as e:
                baselines.fill(name, image, hole)
            assert "pip install opencv-contrib-python-headless" in str(e.value)
            assert "\n" not in str(e.value)
        return
    image = _stripes()
    hole = np.zeros(image.shape[:2], bool)
    hole[30:66, 30:66] = True
    telea = _hole_psnr(baselines.fill("telea", image, hole), image, hole)
    for name in ("xphoto_fsr_fast", "xphoto_shiftmap"):  # FSR best: minutes on a CPU
        out = baselines.fill(name, image, hole)
        np.testing.assert_array_equal(out[~hole], image[~hole])
        assert _hole_psnr(out, image, hole) > telea + 3, name
