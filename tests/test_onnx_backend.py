"""``inpaint.py --backend onnx``: ONNX Runtime runs the generator; the result is the JAX one's."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from shiftnet_jax import checkpoint
from shiftnet_jax.inference.inpaint import inpaint_image

pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("jax2onnx", reason="the export extra is not installed (pip install -e '.[export]')")
from shiftnet_jax.inference.onnx_backend import OnnxGenerator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _inpaint_cli():
    spec = importlib.util.spec_from_file_location("inpaint_cli", ROOT / "inpaint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_onnx_backend_inpaints_as_jax_on_a_photo_of_another_shape(tmp_path, capsys):
    model, variables, config = checkpoint.load_generator(checkpoint.BUNDLED_MODEL)
    photo = skdata.chelsea()                        # 300 x 451: working size 128 x 256
    mask = np.zeros(photo.shape[:2], bool)
    mask[100:180, 150:260] = True
    backend = OnnxGenerator(model, variables)
    ours = inpaint_image(model, variables, photo, mask, size=256, strategy="resize")
    onnx = inpaint_image(backend, variables, photo, mask, size=256, strategy="resize")
    assert list(backend._sessions) == [(128, 256)]
    np.testing.assert_array_equal(onnx[~mask], photo[~mask])
    assert np.abs(onnx[mask].astype(int) - ours[mask]).max() <= 1
    assert (onnx[mask] != photo[mask]).any(-1).mean() > 0.5
    # The command line: --backend onnx writes the same picture; --flow is refused.
    Image.fromarray(photo).save(tmp_path / "cat.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "cat_mask.png")
    args = ["--image", str(tmp_path / "cat.png"), "--mask", str(tmp_path / "cat_mask.png"),
            "--out", str(tmp_path / "out.png"), "--size", "256", "--strategy", "resize", "--backend", "onnx"]
    assert _inpaint_cli().main(args) == 0
    written = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.abs(written.astype(int) - onnx).max() <= 1
    with pytest.raises(SystemExit):
        _inpaint_cli().main(args + ["--flow"])
    assert "--flow needs --backend jax" in capsys.readouterr().err
