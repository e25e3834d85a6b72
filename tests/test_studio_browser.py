"""The studio page in a real headless Chromium: open a photo, paint, inpaint, hover to see the shift."""

import base64
import io

import numpy as np
import pytest
from PIL import Image
from studio_util import chromium, crops, decode_png, running_server, tiny_checkpoint

from shiftnet_jax.studio import engine as eng
from shiftnet_jax.studio import server


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    ckpt = tiny_checkpoint(tmp_path_factory.mktemp("studio-browser") / "tiny")
    with running_server(server.create_app(eng.Engine(eng.load_models([ckpt])))) as base:
        yield base


def _canvas_png(page, selector) -> np.ndarray:
    data_url = page.eval_on_selector(selector, "c => c.toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def _painted(page, selector) -> int:
    return page.eval_on_selector(selector, """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }""")


def test_paint_inpaint_and_see_where_patches_came_from(browser, url, tmp_path):
    photo = crops(1, size=(240, 320))[0]
    Image.fromarray(photo).save(tmp_path / "photo.png")
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    page.set_input_files("#photo-file", str(tmp_path / "photo.png"))
    page.wait_for_selector("#input-stage:not([hidden])")
    assert "photo · 320×240" in page.inner_text("#input-info")

    # A brush stroke across the middle, with real mouse events.
    box = page.locator("#input-overlay").bounding_box()
    x0, y0 = box["x"] + 0.3 * box["width"], box["y"] + 0.45 * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for i in range(1, 16):
        page.mouse.move(x0 + i * 0.025 * box["width"], y0 + i * 0.01 * box["height"])
    page.mouse.up()
    with page.expect_response("**/api/flow", timeout=120_000) as flow_info:
        with page.expect_response("**/api/inpaint", timeout=120_000) as inpaint_info:
            page.click("#inpaint")
    page.wait_for_function("state.flow !== null && !state.busy")

    # Known pixels unchanged, hole pixels changed: the mask the page painted, by the server's rule.
    assert inpaint_info.value.status == 200
    result = decode_png(base64.b64decode(page.evaluate("""async () => {
        const bytes = new Uint8Array(await state.result.arrayBuffer());
        let s = ""; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); }""")))
    painted = _canvas_png(page, "#mask")
    hole = (painted[..., :3] > 0).any(-1) & (painted[..., 3] > 0)
    assert result.shape == photo.shape and 500 < hole.sum() < 0.5 * hole.size
    np.testing.assert_array_equal(result[~hole], photo[~hole])
    assert (result[hole] != photo[hole]).any(-1).mean() > 0.5
    assert page.eval_on_selector("#after", "i => i.complete && i.naturalWidth") == 320
    assert page.get_attribute("#download", "download") == "photo_inpainted.png"

    # Hovering a filled position draws the arrow from its source, on both panes.
    flow = flow_info.value.json()
    assert flow["strategy"] == "crop" and len(flow["windows"]) == 1  # the default framing
    w = flow["windows"][0]
    assert "hole positions in 1 window (framing: crop)" in page.inner_text("#shift-info")
    p = next(q for q in w["positions"] if q["source"])
    rbox = page.locator("#result-overlay").bounding_box()
    cx = rbox["x"] + (w["origin"]["x"] + (p["x"] + 0.5) * w["cell"]["width"]) * rbox["width"] / 320
    cy = rbox["y"] + (w["origin"]["y"] + (p["y"] + 0.5) * w["cell"]["height"]) * rbox["height"] / 240
    page.mouse.move(cx, cy)
    sy, sx = p["source"]
    assert (f"hole position y={p['y']}, x={p['x']} ← feature copied from y={sy}, x={sx}"
            in page.inner_text("#shift-info"))
    assert _painted(page, "#result-overlay") > 0 and _painted(page, "#input-overlay") > 0
    page.keyboard.press("s")  # colour the hole by source, as inpaint.py --flow does
    assert page.is_visible("#sources")
    assert page.eval_on_selector("#sources", "c => [c.width, c.height]") == [320, 240]
    if w["partly_painted"]:  # a partly painted cell counted as known says so when hovered
        q = w["partly_painted"][0]
        page.mouse.move(rbox["x"] + (w["origin"]["x"] + (q["x"] + 0.5) * w["cell"]["width"]) * rbox["width"] / 320,
                        rbox["y"] + (w["origin"]["y"] + (q["y"] + 0.5) * w["cell"]["height"]) * rbox["height"] / 240)
        assert "counted as known at the shift layer" in page.inner_text("#shift-info")
    page.fill("#compare", "50")
    assert "50%" in page.eval_on_selector("#after", "i => i.style.clipPath")
    page.screenshot(path=str(tmp_path / "studio.png"))
    assert (tmp_path / "studio.png").stat().st_size > 10_000

    # Undo / redo by keyboard; a mask of the wrong size and a server error show in plain words.
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.keyboard.press("Control+z")
    assert page.evaluate("maskIsEmpty()")
    page.keyboard.press("Control+y")
    assert not page.evaluate("maskIsEmpty()")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small_mask.png")
    page.set_input_files("#mask-file", str(tmp_path / "small_mask.png"))
    page.wait_for_selector("#message:not([hidden])")
    assert "The mask is 10×10 but the photo is 320×240" in page.inner_text("#message")
    limits = page.evaluate("state.limits")
    page.evaluate("state.limits = {max_upload_bytes: 1000, max_pixels: 1e9}")  # refused before uploading
    page.click("#inpaint")
    assert "the studio takes uploads up to 0.000954 MB" in page.inner_text("#message")
    page.evaluate("(limits) => { state.limits = limits; }", limits)
    page.route("**/api/inpaint", lambda route: route.fulfill(
        status=413, content_type="application/json", body='{"error": "request body is too big"}'))
    page.click("#inpaint")
    page.wait_for_function("document.querySelector('#message-text').textContent.includes('too big')")
    assert errors == []
    page.close()
