"""The studio's local mode (/local) in a real headless Chromium: the exported ONNX pipeline
runs in the page with onnxruntime-web, and its pixels equal the server's answer."""

import base64
import io

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from studio_util import chromium, running_server

from shiftnet_jax import checkpoint
from shiftnet_jax.data.mask_shapes import stroke_mask
from shiftnet_jax.studio import build_local, server
from shiftnet_jax.studio import engine as eng


@pytest.fixture(scope="module")
def browser():
    if not build_local.is_built():
        pytest.skip("the local mode is not built (python -m shiftnet_jax.studio.build_local: "
                    "npm installs onnxruntime-web, the demo model is exported)")
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def url():
    models = eng.load_models([checkpoint.BUNDLED_MODEL])
    with running_server(server.create_app(eng.Engine(models))) as base:
        yield base


def _png(array, path):
    Image.fromarray(array).save(path)
    return path


def test_local_mode_inpaints_in_the_browser_as_the_server_does(browser, url, tmp_path):
    # The bundled model's working size: no resize on either side.
    size = checkpoint.read_config(checkpoint.BUNDLED_MODEL)["data"]["crop_size"]
    photo = cv2.resize(skdata.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    hole = stroke_mask(np.random.default_rng(5), size)[..., 0] > 0
    hole[size * 5 // 16:size * 9 // 16, size * 3 // 8:size * 11 // 16] = True
    mask = (hole * 255).astype(np.uint8)
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/local")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
    page.set_input_files("#photo-file", str(_png(photo, tmp_path / "photo.png")))
    page.wait_for_function("document.body.dataset.state === 'photo'")
    page.set_input_files("#mask-file", str(_png(mask, tmp_path / "mask.png")))
    page.wait_for_timeout(200)
    page.click("#inpaint")
    page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)",
                           timeout=120_000)
    assert page.inner_text("#status").startswith("Done"), page.inner_text("#status")
    data_url = page.eval_on_selector("#result", "c => c.toDataURL('image/png')")
    local = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))[..., :3]
    # Nothing left the machine: every request went to the studio's own static files.
    assert all(r.startswith(url) for r in requests) and not any("/api/" in r for r in requests)
    assert errors == []
    page.close()

    answer = httpx.post(f"{url}/api/inpaint", timeout=120, files={
        "image": ("p.png", (tmp_path / "photo.png").read_bytes(), "image/png"),
        "mask": ("m.png", (tmp_path / "mask.png").read_bytes(), "image/png")})
    assert answer.status_code == 200
    served = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
    np.testing.assert_array_equal(local[~hole], photo[~hole])
    np.testing.assert_array_equal(served[~hole], photo[~hole])
    assert np.abs(local[hole].astype(int) - served[hole]).max() <= 1, "over 1/255 in the hole"
    assert (local[hole] != photo[hole]).any(-1).mean() > 0.5
