"""The studio's HTTP API: same output as the library, bad input refused in JSON, one forward at a time."""

import importlib.util
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from shiftnet_jax import checkpoint
from shiftnet_jax.data import image_io
from shiftnet_jax.inference import flow_view, inpaint
from shiftnet_jax.studio import engine as eng
from shiftnet_jax.studio import server

with warnings.catch_warnings():  # Starlette now prefers httpx2; httpx (what we install) still works
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from studio_util import (
    crops,
    decode_png,
    photo_paths,
    png,
    rect_mask,
    running_server,
    tiny_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny checkpoint as the studio loads it, and a second model (same weights, size 32)."""
    path = tiny_checkpoint(tmp_path_factory.mktemp("studio") / "tiny")
    (tiny,) = eng.load_models([path, path])  # the same directory twice: loaded once
    other = eng.Model("other", str(path), tiny.model, tiny.variables, tiny.config, 32)
    return tiny, other


@pytest.fixture(scope="module")
def client(models):
    with TestClient(server.create_app(eng.Engine(list(models))), base_url="http://localhost") as c:
        yield c


def _post(client, path, image: bytes, mask: bytes, **fields):
    return client.post(path, files={"image": ("x", image), "mask": ("m.png", mask)}, data=fields)


def _library(m, image, mask, dilate=0, strategy="crop"):
    return inpaint.inpaint_image(m.model, m.variables, image, mask, size=m.size, dilate_px=dilate,
                                 strategy=strategy)


def test_health_page_and_static_files(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["default_model"] == "tiny"
    assert [(m["name"], m["working_size"], m["multiple"]) for m in health["models"]] == [
        ("tiny", 64, 32), ("other", 32, 32)]
    assert health["limits"] == {"max_upload_bytes": 50 * 2**20, "max_pixels": 50_000_000}
    page = client.get("/")
    assert page.status_code == 200 and "/static/studio.js" in page.text
    for name in ("studio.js", "shiftview.js", "studio.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_inpaint_equals_the_library_on_a_real_photo(client, models):
    tiny, other = models
    paths = photo_paths()
    path = next((p for p in paths if p.endswith("opencv_fruits.jpg")), paths[0])
    blob = Path(path).read_bytes()  # a JPEG exactly as a user uploads it
    image = image_io.decode_image(blob)
    h, w = image.shape[:2]
    mask = rect_mask(h, w, h // 3, w // 4, h // 2, w // 2)
    outs = []
    for fields, m, dilate, strategy in (({}, tiny, 0, "crop"), ({"model": "other", "dilate": "3"}, other, 3, "crop"),
                                        ({"strategy": "resize"}, tiny, 0, "resize")):
        r = _post(client, "/api/inpaint", blob, png(mask.astype(np.uint8) * 255), **fields)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        out = decode_png(r.content)
        outs.append(out)
        np.testing.assert_array_equal(out, _library(m, image, mask, dilate, strategy))
        grown = inpaint.dilate(mask, dilate)
        np.testing.assert_array_equal(out[~grown], image[~grown])  # known pixels: identical
        assert (out[mask] != image[mask]).mean() > 0.5


def test_mask_rule_transparent_is_known(client, models):
    image = crops(1)[0]
    rgba = np.zeros((120, 160, 4), np.uint8)
    rgba[20:60, 30:90] = (255, 64, 96, 255)       # painted: a hole
    rgba[70:100, 30:90] = (255, 255, 255, 0)      # white but transparent: known
    r = _post(client, "/api/inpaint", png(image), png(rgba))
    hole = rect_mask(120, 160, 20, 30, 60, 90)
    np.testing.assert_array_equal(decode_png(r.content), _library(models[0], image, hole))


def test_flow_is_the_shift_of_inpaint_flow(client, models):
    tiny = models[0]
    image = crops(1)[0]
    mask = rect_mask(120, 160, 34, 40, 80, 120)
    r = _post(client, "/api/flow", png(image), png(mask.astype(np.uint8)), strategy="resize")
    assert r.status_code == 200
    flow = r.json()
    assert flow["model"] == "tiny" and flow["strategy"] == "resize"
    assert flow["image"] == {"height": 120, "width": 160}
    (w,) = flow["windows"]
    assert w["origin"] == {"y": 0, "x": 0} and w["size"] == {"height": 120, "width": 160}
    assert w["working"] == {"height": 64, "width": 64} and w["grid"] == {"height": 8, "width": 8}
    assert w["cell"] == {"height": 15.0, "width": 20.0}
    (view,) = inpaint.shift_sources(tiny.model, tiny.variables, image, mask, size=64, strategy="resize")
    assert len(w["positions"]) == view["hole"].sum() > 0
    # The same data as inpaint.py --flow: each hole cell of the flow image has its source's colour.
    _, flow_png = inpaint.inpaint_image(tiny.model, tiny.variables, image, mask, size=64, flow=True,
                                        strategy="resize")
    for p in w["positions"]:
        assert view["hole"][p["y"], p["x"]] and 0 < p["painted"] <= 1
        sy, sx = p["source"]
        assert not view["hole"][sy, sx]                          # copied from a known position
        cy, cx = int((p["y"] + 0.5) * 15), int((p["x"] + 0.5) * 20)  # the cell's centre pixel
        colour = np.rint(255 * flow_view.position_colour(np.float64(sy / 7), np.float64(sx / 7)))
        np.testing.assert_array_equal(flow_png[cy, cx], colour)
    # Rows 34:80 of 120 are rows 18:43 of the 64 working rows. With the reference's nearest
    # rule a cell is a hole if its top-left working pixel is: cell row 2 (rows 16:24, 6 of 8
    # painted) is not -- counted as known although mostly painted; row 5 (40:48, 3 of 8) is.
    partly = {(q["y"], q["x"]) for q in w["partly_painted"]}
    assert partly == {(2, x) for x in range(2, 6)}
    assert {p["painted"] for p in w["positions"] if p["y"] == 5} == {0.375}
    for q in w["partly_painted"]:
        assert not view["hole"][q["y"], q["x"]] and 0 < q["painted"] < 1
    # Crop (the default): one window around the hole, at the photo's resolution.
    crop = _post(client, "/api/flow", png(image), png(mask.astype(np.uint8))).json()
    (w,) = crop["windows"]
    assert crop["strategy"] == "crop" and w["origin"] == {"y": 11, "x": 0}
    assert w["size"] == {"height": 92, "width": 160}  # rows 34:80 plus half their height each side


def _error(r, status, needle):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json"
    message = r.json()["error"]
    assert needle in message and "\n" not in message and "Traceback" not in message, message


def test_bad_input_is_refused_in_one_json_line(client, models):
    image = crops(1)[0]
    good_mask = png(rect_mask(120, 160, 10, 10, 50, 50).astype(np.uint8) * 255)
    _error(_post(client, "/api/inpaint", b"not an image", good_mask), 400,
           "image: not a readable image (unknown or damaged format")
    _error(_post(client, "/api/inpaint", png(image), b"GIF89a nonsense"), 400, "mask: not")
    _error(_post(client, "/api/flow", png(image), png(np.zeros((160, 120), np.uint8))), 400,
           "mask is 120x160 but its image is 160x120")
    _error(_post(client, "/api/inpaint", png(image), good_mask, model="nope"), 404,
           "unknown model 'nope' (available: tiny, other)")
    _error(_post(client, "/api/inpaint", png(image), good_mask, dilate="-1"), 400, "dilate")
    _error(_post(client, "/api/flow", png(image), good_mask, strategy="tile"), 400,
           "strategy must be one of crop, resize, original, got 'tile'")
    _error(client.post("/api/inpaint", files={"image": ("x", png(image))}), 400, "missing field 'mask'")
    _error(client.post("/api/inpaint", files={"image": ("x", png(image))}, data={"mask": "x"}), 400,
           "must be a file upload")
    _error(client.post("/api/inpaint", files={"image": ("x", png(image)), "mask": ("m", good_mask),
                                              "model": ("f", b"tiny")}), 400, "'model' must be text")
    _error(client.post("/api/inpaint", json={"image": 1}), 400, "multipart/form-data")
    _error(client.get("/api/inpaint"), 405, "Method Not Allowed")
    _error(client.get("/api/nothing"), 404, "Not Found")
    # An empty mask returns the image unchanged; the server still serves.
    r = _post(client, "/api/inpaint", png(image), png(np.zeros((120, 160), np.uint8)))
    assert r.status_code == 200
    np.testing.assert_array_equal(decode_png(r.content), image)
    assert _post(client, "/api/flow", png(image), png(np.zeros((120, 160), np.uint8))).json()["windows"] == []


def test_uploads_over_the_limits_get_413(models):
    small = eng.Engine(list(models), max_bytes=100_000, max_pixels=20_000)
    with TestClient(server.create_app(small), base_url="http://localhost") as client:
        image = crops(1)[0]                                    # 160x120 = 19200 pixels: fits
        mask = png(rect_mask(120, 160, 10, 10, 50, 50).astype(np.uint8) * 255)
        assert _post(client, "/api/inpaint", png(image), mask).status_code == 200
        big = png(np.zeros((150, 150, 3), np.uint8))           # 22500 pixels, a tiny file
        _error(_post(client, "/api/inpaint", big, mask), 413, "image: 150x150 is 0.0225 megapixels; the limit is 0.02")
        noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
        body = png(noise) * 3                                  # > 100 kB, announced by Content-Length
        _error(_post(client, "/api/inpaint", body, mask), 413, "the upload limit is")
        # A streamed body without Content-Length is counted as it arrives.
        chunks = (b"x" * 10_000 for _ in range(20))
        r = client.post("/api/inpaint", content=chunks,
                        headers={"content-type": "multipart/form-data; boundary=b"})
        _error(r, 413, "the upload limit is")
        assert client.get("/api/health").status_code == 200


def test_16_concurrent_requests_on_a_real_server_match_the_library(models, monkeypatch):
    images = crops(16, size=(96, 128))
    masks = [rect_mask(96, 128, 8 + 3 * i, 10 + 2 * i, 40 + 3 * i, 60 + 2 * i) for i in range(16)]
    active, peak, lock = [0], [0], threading.Lock()
    real = eng.run_inpaint

    def counted(*args):  # how many forwards run at the same moment
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.01)
            return real(*args)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(eng, "run_inpaint", counted)
    studio = eng.Engine(list(models), max_bytes=2_000_000)
    with running_server(server.create_app(studio)) as url, httpx.Client(base_url=url, timeout=120) as http:
        def one(i):
            return http.post("/api/inpaint", files={"image": ("x.png", png(images[i])),
                                                    "mask": ("m.png", png(masks[i]))})

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(one, range(16)))
        for image, mask, r in zip(images, masks, responses):
            assert r.status_code == 200
            np.testing.assert_array_equal(decode_png(r.content), _library(models[0], image, mask))
        assert peak[0] == 1 and studio.queued == 0
        # Over the limit on a real socket: 413 in JSON, and the server goes on.
        r = http.post("/api/inpaint", files={"image": ("x", b"\0" * 3_000_000), "mask": ("m", b"")})
        _error(r, 413, "the upload limit is 1.91 MB")
        assert http.get("/api/health").json()["queued"] == 0


def _serve_cli():
    spec = importlib.util.spec_from_file_location("serve_cli", ROOT / "serve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_errors_are_one_line(models, tmp_path, capsys, monkeypatch):
    main = _serve_cli()
    taken = server.bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    # Without --ckpt the bundled model is served; with none bundled, one line says what to give.
    monkeypatch.setattr(checkpoint, "BUNDLED_MODEL", tmp_path / "no_bundle")
    cases = [([], 2, "error: --ckpt is needed"),
             (["--ckpt", "missing/"], 2, "error: missing/: no such directory"),
             (["--ckpt", str(tmp_path), "--port", "0"], 2, "not a checkpoint directory"),
             (["--ckpt", models[0].path, "--port", str(port)], 1, f"cannot listen on 127.0.0.1:{port}")]
    try:
        for argv, code, needle in cases:
            assert main(argv) == code
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and needle in err, err
    finally:
        taken.close()


def test_serve_script_serves_and_stops_on_ctrl_c(models):
    proc = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), "--ckpt", models[0].path, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("Shift-Net studio on http://127.0.0.1:"), (line, proc.stderr.read())
        url = line.split()[3]
        assert httpx.get(f"{url}/api/health", timeout=30).json()["models"][0]["name"] == "tiny"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stdout.read().strip() == "studio stopped"
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_bundled_model_is_the_default_and_loads(tmp_path, monkeypatch):
    """With a compact model in checkpoint.BUNDLED_MODEL, serve.py needs no --ckpt."""
    from shiftnet_jax.nets.generator import ShiftNetGenerator
    model = ShiftNetGenerator(ngf=4, num_downs=5)
    image, hole = np.zeros((1, 32, 32, 3), np.float32), np.zeros((1, 32, 32, 1), np.float32)
    import jax
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), image, hole)
    checkpoint.export_compact(tmp_path / "demo", {"ngf": 4, "num_downs": 5}, variables,
                              config={"data": {"crop_size": 32}})
    monkeypatch.setattr(checkpoint, "BUNDLED_MODEL", tmp_path / "demo")
    assert eng.default_checkpoints() == [str(tmp_path / "demo")]
    loaded = eng.load_models(eng.default_checkpoints(), None)
    assert loaded[0].size == 32
    restored = checkpoint.load_generator(tmp_path / "demo")[1]
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(variables)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # float16 storage
