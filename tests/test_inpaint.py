"""Inpainting user images: folder convention, any size, exact known pixels, bad input, flow."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shiftnet_jax import checkpoint
from shiftnet_jax.inference import flow_view, framing, inpaint, predict

ROOT = Path(__file__).resolve().parents[1]


def _cli(name):
    """The top-level script as a module (to call its main() in-process)."""
    spec = importlib.util.spec_from_file_location(f"{name}_cli", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny untrained checkpoint (ngf 4, 5 levels: multiples of 32, working size 64)."""
    path = tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")
    model, variables, _ = checkpoint.load_generator(path)
    return path, model, variables


def _photo(h, w, seed=0):
    """A smooth picture with some texture, uint8 (h, w, 3)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    base = np.stack([np.sin(6 * x + seed), np.cos(5 * y), np.sin(4 * (x + y))], -1) * 100 + 128
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _rect(h, w, top, left, bottom, right):
    m = np.zeros((h, w), bool)
    m[top:bottom, left:right] = True
    return m


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _folder(root):
    """x.png + x_mask.png + x_mask001.png, a subfolder, and four kinds of bad input."""
    a = _photo(53, 37)
    _save(root / "a.png", a)
    _save(root / "a_mask.png", _rect(53, 37, 10, 5, 30, 20).astype(np.uint8) * 255)
    _save(root / "a_mask001.png", _rect(53, 37, 40, 0, 53, 37).astype(np.uint8) * 7)  # nonzero = hole
    _save(root / "sub" / "b.png", _photo(40, 90, 1))
    _save(root / "sub" / "b_mask.png", _rect(40, 90, 5, 50, 25, 80).astype(np.uint8) * 255)
    (root / "c.png").write_text("not an image")                             # non-image file
    _save(root / "c_mask.png", np.full((8, 8), 255, np.uint8))
    _save(root / "d_mask.png", np.full((8, 8), 255, np.uint8))              # its image is missing
    _save(root / "e.png", _photo(20, 30))
    _save(root / "e_mask.png", np.full((30, 20), 255, np.uint8))            # wrong size
    _save(root / "f.png", _photo(20, 30))                                   # no mask
    (root / "notes.txt").write_text("ignored")
    return a


def test_folder_convention_exact_paste_flow_and_bad_files(tiny, tmp_path):
    _, model, variables = tiny
    a = _folder(tmp_path / "in")
    log = []
    result = inpaint.inpaint_folder(model, variables, tmp_path / "in", tmp_path / "out", flow=True,
                                    progress=False, log=log.append, batch_size=2)
    out = tmp_path / "out"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a_mask.png", "a_mask001.png", "a_mask001_flow.png", "a_mask_flow.png",
        "sub/b_mask.png", "sub/b_mask_flow.png"]
    assert len(result["written"]) == 3
    errors = result["errors"]
    assert len(errors) == 4 and log == [f"error: {e}" for e in errors]
    for name, why in (("c.png", "not a readable image"), ("d_mask.png", "no image"),
                      ("e_mask.png", "mask is 20x30 but its image is 30x20"), ("f.png", "no mask")):
        assert any(name in e and why in e for e in errors), (name, errors)
    assert all("\n" not in e for e in errors)
    for mask_name in ("a_mask.png", "a_mask001.png"):
        hole = np.asarray(Image.open(tmp_path / "in" / mask_name)) > 0
        got = np.asarray(Image.open(out / mask_name))
        assert got.shape == a.shape and got.dtype == np.uint8
        np.testing.assert_array_equal(got[~hole], a[~hole])       # bit for bit outside
        assert (got[hole] != a[hole]).any()
    flow = np.asarray(Image.open(out / "a_mask_flow.png"))
    legend = flow_view.flow_legend(a.shape[1])
    assert flow.shape == (a.shape[0] + legend.shape[0], *a.shape[1:])
    np.testing.assert_array_equal(flow[a.shape[0]:], legend)    # the colour legend below
    # The output folder must not be the input folder (outputs are named like masks).
    with pytest.raises(inpaint.InputError, match="must differ"):
        inpaint.inpaint_folder(model, variables, tmp_path / "in", tmp_path / "in", progress=False)


def test_cli_reports_bad_input_in_one_line_and_exits_nonzero(tiny, tmp_path):
    ckpt, _, _ = tiny
    _folder(tmp_path / "in")
    run = [sys.executable, str(ROOT / "inpaint.py")]
    r = subprocess.run(run + ["--ckpt", str(ckpt), "--input", str(tmp_path / "in"), "--output",
                              str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert "inpainted 3 image(s)" in r.stdout and "4 failed" in r.stdout
    # A directory that is not a checkpoint; a missing image: one line each.
    for args, needle in ((["--ckpt", str(tmp_path), "--input", str(tmp_path / "in"), "--output",
                           str(tmp_path / "o2")], "not a checkpoint directory"),
                         (["--ckpt", str(ckpt), "--image", str(tmp_path / "nope.png"), "--mask",
                           str(tmp_path / "in" / "a_mask.png"), "--out", str(tmp_path / "y.png")],
                          "nope.png: no such file")):
        r = subprocess.run(run + args, capture_output=True, text=True)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_odd_sizes_aspect_ratios_and_dilate(tiny):
    _, model, variables = tiny
    sizes = [(37, 53), (53, 37), (5, 200), (64, 64), (31, 33)]
    images = [_photo(h, w, i) for i, (h, w) in enumerate(sizes)]
    masks = [_rect(h, w, h // 3, w // 3, h // 3 + 2, w // 3 + 3) for h, w in sizes]
    outs = inpaint.inpaint_batch(model, variables, images, masks, size=64, dilate_px=2, batch_size=4)
    for image, mask, out in zip(images, masks, outs):
        grown = inpaint.dilate(mask, 2)
        assert grown.sum() > mask.sum() and (grown | ~mask).all()
        assert out.shape == image.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out[~grown], image[~grown])
        assert (out[grown & ~mask] != image[grown & ~mask]).any()  # the dilated ring was filled
    # Batched and one-by-one give the same result.
    one = inpaint.inpaint_image(model, variables, images[0], masks[0], size=64, dilate_px=2)
    np.testing.assert_array_equal(one, outs[0])
    assert inpaint.working_size(37, 53, 64, 32) == (32, 64)
    assert inpaint.working_size(3000, 4000, 256, 256) == (256, 256)
    assert inpaint.working_size(5, 200, 64, 32) == (32, 64)


def test_large_photo_goes_through_the_resize_path(tiny):
    _, model, variables = tiny
    image = np.broadcast_to(np.linspace(0, 255, 4000, dtype=np.float32)[None, :, None],
                            (3000, 4000, 3)).astype(np.uint8)
    mask = _rect(3000, 4000, 1000, 1500, 1800, 2600)
    out = inpaint.inpaint_image(model, variables, image, mask, size=64)
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert (out[mask] != image[mask]).mean() > 0.5


def test_empty_and_full_masks(tiny):
    _, model, variables = tiny
    image = _photo(37, 53)
    empty = inpaint.inpaint_image(model, variables, image, np.zeros((37, 53), bool))
    np.testing.assert_array_equal(empty, image)
    full = np.ones((37, 53), bool)
    out, flow = inpaint.inpaint_image(model, variables, image, full, size=64, flow=True)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, inpaint.inpaint_image(model, variables, image, full, size=64))
    small, hole = framing.prepare(image, full, "resize", 64, 32)
    raw = predict.forward(model, variables, small[None], hole[None]).output
    assert np.isfinite(np.asarray(raw)).all()
    assert (flow[:37] == 0).all()  # nothing known to copy from: black everywhere


def test_rgba_gray_and_16bit_files(tiny, tmp_path):
    _, model, variables = tiny
    rgb = _photo(37, 53)
    gray16 = (np.linspace(0, 65535, 37 * 53).reshape(37, 53)).astype(np.uint16)
    rgba = np.concatenate([rgb, np.full((37, 53, 1), 255, np.uint8)], -1)
    cases = {"rgba.png": (rgba, rgb), "gray.png": (rgb[..., 0], np.repeat(rgb[..., :1], 3, -1)),
             "g16.png": (gray16, np.repeat(np.rint(gray16 / 257.0).astype(np.uint8)[..., None], 3, -1))}
    mask = _rect(37, 53, 5, 5, 20, 25)
    _save(tmp_path / "m.png", mask.astype(np.uint8) * 255)
    for name, (array, expected) in cases.items():
        _save(tmp_path / name, array)
        assert Image.open(tmp_path / name).mode in ("RGBA", "L", "I;16", "I")
        written = inpaint.inpaint_file(model, variables, tmp_path / name, tmp_path / "m.png",
                                       tmp_path / "out" / name, size=64, flow=True)
        assert [p.name for p in written] == [name, name[:-4] + "_flow.png"]
        out = np.asarray(Image.open(written[0]))
        assert out.shape == (37, 53, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[~mask], expected[~mask])
        # Arrays in the same formats give the same result as the files.
        np.testing.assert_array_equal(inpaint.inpaint_image(model, variables, array, mask, size=64), out)


def test_flow_image_colours_hole_positions_by_their_source():
    image = np.full((8, 8, 3), 100, np.uint8)
    hole = np.zeros((2, 2), bool)
    hole[1, 1] = True
    index = np.array([0, 0, 0, 1])  # position 3 (bottom right) copied from position 1 (top right)
    valid = hole.ravel()
    flow = flow_view.flow_image(image, hole, index, valid)
    top_right = np.rint(255 * flow_view.position_colour(np.float64(0), np.float64(1)))
    np.testing.assert_array_equal(flow[6, 6], top_right)                      # source's colour
    grey = 100 / 255
    np.testing.assert_array_equal(flow[0, 6], np.rint(255 * (0.5 * top_right / 255 + 0.5 * grey)))


def test_reference_checkpoint_inpaints_a_photo(fixtures_dir, tmp_path, capsys):
    pytest.importorskip("skimage")
    from shiftnet_jax.convert import main as convert
    from shiftnet_jax.data.sources import SampleSource

    assert convert([str(fixtures_dir / "reference_ngf8_center.pth"), str(tmp_path / "ref")]) == 0
    photo = SampleSource("test").paths[0]  # chelsea, 451x300
    image = np.asarray(Image.open(photo).convert("RGB"))
    mask = _rect(*image.shape[:2], 100, 150, 200, 300)
    _save(tmp_path / "mask.png", mask.astype(np.uint8) * 255)
    code = _cli("inpaint").main(["--ckpt", str(tmp_path / "ref"), "--image", photo, "--mask",
                                 str(tmp_path / "mask.png"), "--out", str(tmp_path / "out.png"), "--flow"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    out = np.asarray(Image.open(tmp_path / "out.png"))
    np.testing.assert_array_equal(out[~mask], image[~mask])
    assert (out[mask] != image[mask]).any()
    assert Image.open(tmp_path / "out_flow.png").size == (451, 300 + flow_view.flow_legend(451).shape[0])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 24), st.integers(1, 24), st.integers(0, 7), st.integers(0, 2**32 - 1))
def test_dilate_is_the_exact_euclidean_disc(height, width, pixels, seed):
    """Every pixel within Euclidean distance ``pixels`` of a hole pixel joins the hole, and no
    other: brute force over all pairs, for holes anywhere (touching the borders, or none)."""
    mask = np.random.default_rng(seed).random((height, width)) < 0.08
    ys, xs = np.nonzero(mask)
    gy, gx = np.mgrid[:height, :width]
    d2 = (gy[..., None] - ys) ** 2 + (gx[..., None] - xs) ** 2
    expected = (d2 <= pixels * pixels).any(-1) if len(ys) else mask
    np.testing.assert_array_equal(inpaint.dilate(mask, pixels), expected | mask)
