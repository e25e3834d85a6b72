"""One rule for image and mask files, used by training, evaluation, inpainting and the studio."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shiftnet_jax.data import image_io, masks


def _png(array, mode=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), threshold=st.sampled_from([0, 1, 64, 127, 200, 254]),
       mode=st.sampled_from(["L", "RGB", "RGBA", "LA", "I;16"]))
def test_mask_rule_is_strength_above_threshold(seed, threshold, mode):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 12, 2)
    if mode == "L":
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        strength = a.astype(float)
    elif mode == "RGB":
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        strength = a.max(-1).astype(float)
    elif mode in ("RGBA", "LA"):
        a = rng.integers(0, 256, (h, w, 4 if mode == "RGBA" else 2), dtype=np.uint8)
        a[..., -1] = rng.choice([0, 255, 128], (h, w))
        strength = a[..., :-1].max(-1).astype(float) * (a[..., -1] / 255.0)
    else:
        a = rng.integers(0, 65536, (h, w)).astype(np.uint16)
        strength = a / 257.0
    data = _png(a, None if mode != "LA" else "LA")
    want = strength > threshold
    np.testing.assert_array_equal(image_io.decode_mask(data, threshold), want)
    # The same file through every reader: masks for training/eval, read_mask for inpainting.
    np.testing.assert_array_equal(image_io.read_mask(data, threshold=threshold), want)


def test_default_is_nonzero_and_transparent_is_known(tmp_path):
    a = np.array([[0, 1, 255]], np.uint8)
    np.testing.assert_array_equal(image_io.decode_mask(_png(a)), [[False, True, True]])
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[0, 1, 3] = 255
    np.testing.assert_array_equal(image_io.decode_mask(_png(rgba)), [[False, True]])
    (tmp_path / "m.png").write_bytes(_png(a))
    np.testing.assert_array_equal(masks.load_mask_image(tmp_path / "m.png")[..., 0], [[0, 1, 1]])
    fn = masks.make_mask_fn(str(tmp_path))  # a folder is the "files" kind, same rule
    np.testing.assert_array_equal(fn(np.random.default_rng(0), (1, 3))[..., 0], [[0, 1, 1]])


def test_images_decode_to_rgb_uint8():
    grey16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    out = image_io.decode_image(_png(grey16))
    assert out.shape == (3, 4, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], np.rint(grey16 / 257.0).astype(np.uint8))
    rgba = np.zeros((2, 2, 4), np.uint8)  # fully transparent black -> white
    np.testing.assert_array_equal(image_io.decode_image(_png(rgba)), np.full((2, 2, 3), 255))


def test_errors_are_one_line_and_name_the_input(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image\nsecond line")
    for call in (lambda: image_io.read_image(tmp_path / "x.png"),
                 lambda: image_io.read_mask(tmp_path / "x.png"),
                 lambda: image_io.read_image(b"garbage"),
                 lambda: image_io.read_image(tmp_path / "missing.jpg")):
        with pytest.raises(image_io.InputError) as e:
            call()
        assert "\n" not in str(e.value) and ("x.png" in str(e.value) or "upload" in str(e.value)
                                              or "missing.jpg" in str(e.value))
    with pytest.raises(image_io.InputError, match="mask is 3x1 but its image is 2x2"):
        image_io.read_mask(_png(np.zeros((1, 3), np.uint8)), shape=(2, 2))


def test_one_extension_list(tmp_path):
    for name in ("a.PNG", "b.jpeg", "c.gif", "d.webp", ".hidden.png", "e.txt", "f.png.bak"):
        (tmp_path / name).write_bytes(b"")
    assert [p.rsplit("/", 1)[1] for p in image_io.list_images(tmp_path)] == ["a.PNG", "b.jpeg", "c.gif", "d.webp"]


def test_save_png_round_trip(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image_io.save_png(tmp_path / "sub" / "o.png", a)
    np.testing.assert_array_equal(image_io.decode_image(tmp_path / "sub" / "o.png"), a)
    np.testing.assert_array_equal(image_io.decode_image(image_io.encode_png(a)), a)


# ---------------------------------------------------------------- hostile files (tests/hostile_images.py)
import json

import hostile_images as hostile

# Bounds of every case, in its own process: the "2 s and 1 GB".
MAX_SECONDS, MAX_MIB = 2.0, 1024


@pytest.mark.parametrize("case", list(hostile.CASES))
def test_hostile_image_ends_fast_in_bounded_memory(tmp_path, case):
    """Every crafted file is refused in one line, or loads correctly, within 2 s and 1 GB
    (the child has a 1 GiB address-space limit: exceeding it crashes the child)."""
    entry, outcome, fragment = hostile.CASES[case]
    result = hostile.run_isolated(hostile.build(case, tmp_path), entry, timeout=60)
    assert result["outcome"] == outcome, result
    assert "\n" not in result["message"] and "Traceback" not in result["message"]
    if fragment is not None:
        assert fragment in result["message"], result
    if outcome == "ok":
        got = json.loads(result["message"])
        shape, holes = hostile.LOADS[case]
        assert tuple(got["shape"]) == shape and (holes is None or got["holes"] == holes), got
    assert result["seconds"] < MAX_SECONDS and result["peak_mib"] < MAX_MIB, result


def test_entry_points_share_the_decoders_limits(tmp_path):
    """inpaint's files, training folders and mask folders all refuse by the same rule."""
    from shiftnet_jax.data import sources

    big = tmp_path / "big.png"
    big.write_bytes(hostile.png_of_zeros(300, 200))
    with pytest.raises(image_io.ImageTooLarge, match="300x200 is 0.06 megapixels; the limit is 0.05"):
        image_io.read_image(big, max_pixels=50_000)
    with pytest.raises(image_io.ImageTooLarge, match="big.png: 300x200"):
        image_io.read_mask(big, max_pixels=50_000)
    assert image_io.read_image(big, max_pixels=60_000).shape == (200, 300, 3)
    folder = sources.FolderSource(tmp_path, max_pixels=50_000)
    with pytest.raises(image_io.ImageTooLarge):
        folder[0]
    with pytest.raises(image_io.ImageTooLarge):
        masks.load_mask_image(big, max_pixels=50_000)


def test_names_are_escaped_in_messages(tmp_path):
    bad = tmp_path / "a\nb\x1b[31m.png"
    bad.write_bytes(b"nothing")
    with pytest.raises(image_io.InputError) as e:
        image_io.read_image(bad)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value) and "a\\nb\\x1b[31m.png" in str(e.value)


def test_folder_walk_survives_link_loops(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.png").write_bytes(hostile.png_of_zeros(8, 8))
    (tmp_path / "a").symlink_to(".")
    (tmp_path / "sub" / "up").symlink_to("..")
    (tmp_path / "elsewhere").symlink_to(tmp_path / "sub")   # a second way into sub: listed once
    assert image_io.list_images(tmp_path) == [str(tmp_path / "sub" / "x.png")] or \
        len(image_io.list_images(tmp_path)) == 1


def test_bad_mask_file_in_a_folder_is_skipped_with_a_warning(tmp_path):
    (tmp_path / "good.png").write_bytes(_png(np.full((8, 8), 255, np.uint8)))
    (tmp_path / "bad.png").write_bytes(b"not a mask")
    with pytest.warns(RuntimeWarning, match="skipping mask file: .*bad.png: not a readable mask image"):
        fn = masks.make_mask_fn({"kind": "files", "paths": str(tmp_path)})
    assert fn(np.random.default_rng(0), 8).min() == 1.0
    (tmp_path / "good.png").unlink()
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="none of the 1 mask files is readable"):
        masks.make_mask_fn({"kind": "files", "paths": str(tmp_path)})


def test_full_disk_is_one_line_and_leaves_no_partial_file(small_fs):
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), np.uint8)  # ~480 KB as PNG
    with pytest.raises(image_io.UserError) as e:
        image_io.save_png(small_fs / "out.png", noise)
    message = str(e.value)
    assert "out.png" in message and "No space left on device" in message and "MB needed" in message
    assert "\n" not in message and list(small_fs.iterdir()) == []
