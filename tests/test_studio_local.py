"""The studio's local mode (/local) in a real headless Chromium: the exported ONNX pipeline
runs in the page with onnxruntime-web, and its pixels equal the server's answer."""

import base64
import io
import json
import os

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from studio_util import chromium, running_server

from shiftnet_jax import checkpoint
from shiftnet_jax.data.mask_shapes import stroke_mask
from shiftnet_jax.studio import engine as eng
from shiftnet_jax.studio import local_models, server


@pytest.fixture(scope="module")
def browser():
    if not local_models.is_built():
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
    if (problem := local_models.problem()) is not None:   # e.g. built before a git pull
        pytest.skip(problem)
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
    # Nothing left the machine: every request went to the studio's own files, and the only
    # API call asked whether the built model is current (the photo was not sent).
    assert all(r.startswith(url) for r in requests)
    assert [r for r in requests if "/api/" in r] == [f"{url}/api/local/demo"]
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


def test_a_model_built_from_an_older_checkpoint_is_shown_as_stale(browser, url, tmp_path):
    """The page loads the model it has, and says in one line that its checkpoint changed."""
    source = tmp_path / "ckpt"
    source.mkdir()
    (source / "weights.bin").write_bytes(b"before")
    name = f"stale_{tmp_path.name}"[:60]
    onnx = local_models.MODELS_DIR / f"{name}.onnx"
    os.link(local_models.MODELS_DIR / f"{local_models.DEFAULT_MODEL}.onnx", onnx)
    size = local_models.model_info()["size"]
    record = local_models.record(name, size, source)
    try:
        assert httpx.get(f"{url}/api/local/{name}").json() == {"name": name, "size": size,
                                                               "problem": None}
        (source / "weights.bin").write_bytes(b"after!")   # retrained since the build
        page = browser.new_page()
        page.goto(f"{url}/local?model={name}")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
        warning = page.inner_text("#warning")
        assert page.is_visible("#warning") and page.evaluate("document.body.dataset.stale") == "true"
        assert "older state" in warning and "build_local" in warning and "\n" not in warning
        page.close()
    finally:
        onnx.unlink()
        record.unlink()


def test_the_local_model_record_says_what_is_wrong_in_one_line(tmp_path):
    models, source = tmp_path / "models", tmp_path / "ckpt"
    models.mkdir()
    (source / "sub").mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "sub" / "w.npz").write_bytes(b"\0" * 1000)
    assert "not built" in local_models.problem("demo", models)
    (models / "demo.onnx").write_bytes(b"onnx")
    record = local_models.record("demo", 128, source, models)
    assert local_models.model_info("demo", models)["size"] == 128
    assert local_models.problem("demo", models) is None
    (source / "sub" / "w.npz").write_bytes(b"\1" + b"\0" * 999)    # same size, new content
    assert "older state" in local_models.problem("demo", models)
    info = json.loads(record.read_text())
    record.write_text(json.dumps({"name": "demo", "size": 128}))    # built by 0.2.0
    assert "does not record" in local_models.problem("demo", models)
    record.write_text(json.dumps({**info, "source": str(tmp_path / "gone")}))
    assert "gone" in local_models.problem("demo", models)
    for message in (local_models.problem("demo", models), local_models.problem("x", models)):
        assert "\n" not in message and message.endswith(local_models.FIX)


def test_the_local_model_api_refuses_names_that_are_paths(url):
    assert local_models.is_name("demo") and local_models.is_name("my_model-2.v1")
    for bad in ("..", ".hidden", "a/b", "a b", "x" * 101, ""):
        assert not local_models.is_name(bad), bad
    answer = httpx.get(f"{url}/api/local/.config")
    assert answer.status_code == 400 and "not a model name" in answer.json()["error"]
    assert httpx.get(f"{url}/api/local/..%2F..%2Fconfig").status_code in (400, 404)
    missing = httpx.get(f"{url}/api/local/no_such_model").json()
    assert missing["size"] is None and "not built" in missing["problem"]
