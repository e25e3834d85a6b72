"""Tests for shiftnet_jax.data.masks (host-side NumPy mask generators)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shiftnet_jax.data import masks as M

RANDOM_KINDS = ("rect", "island", "strokes", "mix")
sizes = st.tuples(st.integers(32, 300), st.integers(32, 300))


def _check_mask(mask, size):
    assert mask.shape == (*size, 1)
    assert mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}


# --- center -----------------------------------------------------------------

def test_center_reference_120():
    for mask in (M.center_mask(256, hole=120), M.center_mask(256, overlap=4)):
        _check_mask(mask, (256, 256))
        rows = np.flatnonzero(mask[:, 128, 0])
        cols = np.flatnonzero(mask[128, :, 0])
        assert rows[0] == 68 and rows[-1] == 187 and len(rows) == 120
        assert cols[0] == 68 and cols[-1] == 187 and len(cols) == 120
        assert mask.sum() == 120 * 120


def test_center_paper_default_and_non_square():
    mask = M.center_mask(256)
    assert mask[64:192, 64:192].all() and mask.sum() == 128 * 128
    mask = M.center_mask((100, 60), hole=(20, 30))
    _check_mask(mask, (100, 60))
    assert mask[40:60, 15:45].all() and mask.sum() == 20 * 30


@pytest.mark.parametrize("kwargs", [dict(hole=300), dict(hole=8, overlap=4), dict(overlap=-1)])
def test_center_errors(kwargs):
    with pytest.raises(ValueError):
        M.center_mask(256, **kwargs)


@pytest.mark.parametrize("size", [0, (10,), "256", (10.5, 3), True])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        M.center_mask(size)


# --- rect -------------------------------------------------------------------

def test_rect_reference_square_default():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = M.random_rect_mask(rng, 256)
        rows, cols = np.nonzero(mask[..., 0])
        assert rows.max() - rows.min() + 1 == 120 and cols.max() - cols.min() + 1 == 120
        assert mask.sum() == 120 * 120


def test_rect_range():
    rng = np.random.default_rng(1)
    seen_h = set()
    for _ in range(50):
        mask = M.random_rect_mask(rng, (64, 96), min_size=(10, 20), max_size=(30, 40))
        rows, cols = np.nonzero(mask[..., 0])
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert 10 <= h <= 30 and 20 <= w <= 40 and mask.sum() == h * w
        seen_h.add(h)
    assert len(seen_h) > 5
    mask = M.random_rect_mask(rng, 64, min_size=8, max_size=24, square=True)
    rows, cols = np.nonzero(mask[..., 0])
    assert rows.max() - rows.min() == cols.max() - cols.min()


def test_rect_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="exceed"):
        M.random_rect_mask(rng, 64, min_size=30, max_size=20)
    with pytest.raises(ValueError, match="fit"):
        M.random_rect_mask(rng, 64, min_size=10, max_size=65)
    with pytest.raises(ValueError, match="Generator"):
        M.random_rect_mask(0, 64)


# --- island -----------------------------------------------------------------

@pytest.mark.parametrize("size", [256, (64, 200), 32])
def test_island_coverage(size):
    rng = np.random.default_rng(2)
    for _ in range(10):
        ratio = M.hole_ratio(M.island_mask(rng, size))
        assert 0.2 <= ratio <= 0.3


def test_island_fixed_threshold_takes_closest():
    rng = np.random.default_rng(3)
    # Reference rule: threshold 0.25 rarely reaches 20 %, so bounded retries
    # return the closest draw, still a valid binary mask with some hole.
    mask = M.island_mask(rng, 128, threshold=0.25, max_tries=5)
    _check_mask(mask, (128, 128))
    assert 0.0 < M.hole_ratio(mask) <= 0.3
    loose = M.island_mask(rng, 128, threshold=0.25, coverage=(0.0, 1.0))
    assert 0.0 < M.hole_ratio(loose) < 0.3


def test_island_is_blobby():
    # Islands are smooth blobs: far fewer hole/known transitions than random pixels.
    mask = M.island_mask(np.random.default_rng(4), 256)[..., 0]
    transitions = np.abs(np.diff(mask, axis=1)).sum()
    assert transitions < 0.05 * mask.size


def test_island_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="coverage"):
        M.island_mask(rng, 64, coverage=(0.5, 0.2))
    with pytest.raises(ValueError, match="threshold"):
        M.island_mask(rng, 64, threshold=2.0)


# --- strokes ----------------------------------------------------------------

def test_strokes_nonempty_not_full():
    rng = np.random.default_rng(5)
    ratios = [M.hole_ratio(M.stroke_mask(rng, 256)) for _ in range(30)]
    assert min(ratios) > 0.0 and max(ratios) <= 0.6
    assert len(set(ratios)) > 20


def test_strokes_coverage_cap():
    rng = np.random.default_rng(6)
    for _ in range(5):
        mask = M.stroke_mask(rng, 64, max_strokes=10, width=(0.2, 0.3), max_coverage=0.3, max_tries=50)
        assert 0.0 < M.hole_ratio(mask) <= 0.3


def test_strokes_errors():
    with pytest.raises(ValueError, match="max_strokes"):
        M.stroke_mask(np.random.default_rng(0), 64, max_strokes=0)


# --- mixture, specs, batches ------------------------------------------------

def test_mixture_uses_weights():
    rng = np.random.default_rng(7)
    masks = [M.mixture_mask(rng, 64, {"center": 1.0, "strokes": 0.0}) for _ in range(5)]
    for mask in masks:
        np.testing.assert_array_equal(mask, M.center_mask(64))
    # Both kinds appear with equal weights.
    fn = M.make_mask_fn({"kind": "mix", "kinds": {"center": 1, "strokes": {"weight": 1, "max_boxes": 0}}})
    centers = sum(np.array_equal(fn(rng, 64), M.center_mask(64)) for _ in range(40))
    assert 5 < centers < 35


def test_mixture_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="zero"):
        M.mixture_mask(rng, 64, {"rect": 0.0})
    with pytest.raises(ValueError, match=">= 0"):
        M.mixture_mask(rng, 64, {"rect": -1.0})
    with pytest.raises(ValueError, match="unknown mask kind"):
        M.mixture_mask(rng, 64, {"blob": 1.0})


@pytest.mark.parametrize("spec", ["center", "rect", "island", "strokes", "mix",
                                  {"kind": "rect", "min_size": 8, "max_size": 16},
                                  {"kind": "center", "overlap": 4},
                                  {"kind": "island", "coverage": (0.4, 0.5)}])
def test_make_mask_fn(spec):
    fn = M.make_mask_fn(spec)
    mask = fn(np.random.default_rng(0), (48, 64))
    _check_mask(mask, (48, 64))
    assert mask.any()


def test_make_mask_fn_errors():
    with pytest.raises(ValueError, match="unknown mask kind 'circle'"):
        M.make_mask_fn("circle")
    with pytest.raises(ValueError, match="unknown option"):
        M.make_mask_fn({"kind": "rect", "min": 3})
    with pytest.raises(ValueError, match="kind"):
        M.make_mask_fn({"min_size": 3})
    with pytest.raises(ValueError, match="paths"):
        M.make_mask_fn({"kind": "files"})
    with pytest.raises(ValueError):
        M.make_mask_fn(3)


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_seeding_reproducible(kind):
    fn = M.make_mask_fn(kind)
    a = M.batch_masks(fn, np.random.default_rng(11), 3, 96)
    b = M.batch_masks(fn, np.random.default_rng(11), 3, 96)
    c = M.batch_masks(fn, np.random.default_rng(12), 3, 96)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_batch_masks_per_image(kind):
    batch = M.batch_masks(M.make_mask_fn(kind), np.random.default_rng(0), 4, (64, 80))
    assert batch.shape == (4, 64, 80, 1) and batch.dtype == np.float32
    assert all(not np.array_equal(batch[0], batch[i]) for i in range(1, 4))
    np.testing.assert_allclose(M.hole_ratio(batch), batch.mean(axis=(1, 2, 3)))


def test_batch_masks_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="batch"):
        M.batch_masks(M.make_mask_fn("rect"), rng, 0, 64)
    with pytest.raises(ValueError, match="shape"):
        M.batch_masks(lambda r, s: np.zeros((8, 8, 1), np.float32), rng, 2, 64)


def test_hole_ratio():
    assert M.hole_ratio(M.center_mask(256)) == 0.25
    with pytest.raises(ValueError, match="shape"):
        M.hole_ratio(np.zeros((8, 8)))


# --- files ------------------------------------------------------------------

def _expected(gray8):
    return (gray8 > 127).astype(np.float32)[..., None]


def test_load_mask_image_modes(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 30)).astype(np.uint8)
    gray[0, :4] = [127, 128, 0, 255]
    want = _expected(gray)

    Image.fromarray(gray, "L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(M.load_mask_image(tmp_path / "l.png", threshold=127), want)

    rgb = np.repeat(gray[..., None], 3, axis=2)
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(M.load_mask_image(str(tmp_path / "rgb.png"), threshold=127), want)

    rgba = np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=2)
    rgba[:, :5, 3] = 0  # transparent = known
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    want_rgba = want.copy()
    want_rgba[:, :5] = 0
    np.testing.assert_array_equal(M.load_mask_image(tmp_path / "rgba.png", threshold=127), want_rgba)

    gray16 = gray.astype(np.uint16) * 257
    gray16[0, :2] = [127 * 257, 127 * 257 + 1]  # 16-bit strength / 257 > 127
    want16 = want.copy()
    want16[0, :2, 0] = [0, 1]
    Image.fromarray(gray16).save(tmp_path / "l16.png")
    np.testing.assert_array_equal(M.load_mask_image(tmp_path / "l16.png", threshold=127), want16)

    Image.fromarray(gray > 127).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(M.load_mask_image(tmp_path / "bits.png", threshold=127), want)

    Image.fromarray(gray, "L").convert("P").save(tmp_path / "p.png")
    np.testing.assert_array_equal(M.load_mask_image(tmp_path / "p.png", threshold=127), want)


def test_load_mask_image_resize_and_errors(tmp_path):
    from PIL import Image
    mask = M.center_mask(64)
    Image.fromarray((mask[..., 0] * 255).astype(np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(M.load_mask_image(tmp_path / "m.png", size=128), M.center_mask(128))
    np.testing.assert_array_equal(M.load_mask_image(tmp_path / "m.png", size=32), M.center_mask(32))
    assert M.load_mask_image(tmp_path / "m.png", size=(16, 48)).shape == (16, 48, 1)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png: not a readable mask image"):
        M.load_mask_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="missing.png: no such file"):
        M.load_mask_image(tmp_path / "missing.png")


def test_files_kind(tmp_path):
    from PIL import Image
    for i, size in enumerate((32, 48)):
        Image.fromarray((M.center_mask(size)[..., 0] * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    fn = M.make_mask_fn({"kind": "files", "paths": str(tmp_path)})
    rng = np.random.default_rng(0)
    for _ in range(5):
        np.testing.assert_array_equal(fn(rng, 64), M.center_mask(64))
    with pytest.raises(ValueError, match="does not exist"):
        M.make_mask_fn({"kind": "files", "paths": str(tmp_path / "sub")})
    with pytest.raises(ValueError, match="no mask images"):
        M.make_mask_fn({"kind": "files", "paths": []})


# --- properties -------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(size=sizes, seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(RANDOM_KINDS + ("center",)))
def test_property_shapes_binary(size, seed, kind):
    mask = M.make_mask_fn(kind)(np.random.default_rng(seed), size)
    _check_mask(mask, size)
    assert 0.0 < M.hole_ratio(mask) < 1.0


@settings(max_examples=25, deadline=None)
@given(size=sizes, seed=st.integers(0, 2 ** 32 - 1))
def test_property_island_and_strokes(size, seed):
    rng = np.random.default_rng(seed)
    assert 0.2 <= M.hole_ratio(M.island_mask(rng, size)) <= 0.3
    assert 0.0 < M.hole_ratio(M.stroke_mask(rng, size)) <= 0.6


def test_parse_mask_spec_reads_command_line_specs():
    from shiftnet_jax.data.masks import parse_mask_spec

    assert parse_mask_spec("center") == {"kind": "center"}
    assert parse_mask_spec("rect:min_size=32, max_size=96") == {
        "kind": "rect", "min_size": 32, "max_size": 96}
    assert parse_mask_spec("island:threshold=0.25")["threshold"] == 0.25
    with pytest.raises(ValueError, match="name=value"):
        parse_mask_spec("rect:32")


def test_mix_spec_names_kinds_and_weights_on_the_command_line():
    fn = M.make_mask_fn("mix:center=1,strokes=0")  # weight 0: never strokes
    for seed in range(5):
        np.testing.assert_array_equal(fn(np.random.default_rng(seed), 32), M.center_mask(32))
    with pytest.raises(ValueError, match="unknown mask kind|must be a number"):
        M.make_mask_fn("mix:blob=1")
