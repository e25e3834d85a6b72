"""Tests of the host input pipeline (shiftnet_jax.data.loader): CPU only, no network."""

import importlib.util
import warnings

import numpy as np
import pytest
from PIL import Image

from shiftnet_jax.data import image_io, sources
from shiftnet_jax.data import loader as data
from shiftnet_jax.errors import UserError

BACKENDS = ["threads", "processes"] + (["grain"] if importlib.util.find_spec("grain") else [])


def square_mask(rng, size):
    """A random 4x4 hole: enough to check that masks follow the rng."""
    h, w = size
    m = np.zeros((h, w, 1), np.float32)
    y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
    m[y:y + 4, x:x + 4] = 1
    return m


class ColourSource:
    """Image i is a constant 24x32 image of value 10*i: its index survives resize/crop."""

    def __init__(self, n, bad=()):
        self.n, self.bad = n, set(bad)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            raise OSError("broken")
        return np.full((24, 32, 3), 10 * i, np.uint8)

    def describe(self, i):
        return f"colour-{i}"


def ids(batch):
    """Image indices of a ColourSource batch."""
    return [int(round((v + 1) * 127.5 / 10)) for v in batch["image"][:, 0, 0, 0]]


def loader(src, **kw):
    kw = {"batch_size": 3, "crop_size": 16, "load_size": 20, "train": True, "mask_fn": square_mask,
          "seed": 0, "num_workers": 3, **kw}
    return data.make_loader(src, **kw)


def take(it, k):
    return [next(it) for _ in range(k)]


def same(a, b):
    return all(np.array_equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in ("image", "hole"))


# ------------------------------------------------------------------ sources
def test_sample_batches_shapes_dtypes_ranges():
    it = data.make_loader(sources.SampleSource("train"), batch_size=2, crop_size=64, load_size=80,
                          train=True, mask_fn=square_mask, seed=0)
    b = next(it)
    assert b["image"].shape == (2, 64, 64, 3) and b["image"].dtype == np.float32
    assert b["hole"].shape == (2, 64, 64, 1) and b["hole"].dtype == np.float32
    assert -1.0 <= b["image"].min() < b["image"].max() <= 1.0
    assert set(np.unique(b["hole"])) <= {0.0, 1.0} and b["hole"].sum() == 2 * 16


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    rgb = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    (tmp_path / "sub").mkdir()
    Image.fromarray(rgb(40, 50)).save(tmp_path / "a_rgb.png")
    Image.fromarray(rgb(30, 30)).save(tmp_path / "sub" / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(tmp_path / "c_gray.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)).save(tmp_path / "d_rgba.png")
    Image.fromarray(np.full((20, 24), 65535, np.uint16)).save(tmp_path / "e_16bit.png")
    (tmp_path / "f_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a full jpeg")
    (tmp_path / "g_text.png").write_text("hello, I am text")
    (tmp_path / "notes.txt").write_text("not listed at all")
    return tmp_path


def test_folder_source_modes(image_dir):
    src = sources.FolderSource(image_dir)
    names = [p.split("/")[-1] for p in src.paths]
    assert names == ["a_rgb.png", "c_gray.png", "d_rgba.png", "e_16bit.png", "f_corrupt.jpg",
                     "g_text.png", "b.jpg"]  # sorted full paths: sub/ after the files
    assert all(p.endswith(tuple(image_io.IMAGE_EXTENSIONS)) for p in src.paths)
    decoded = {n: src[i] for i, n in enumerate(names) if "corrupt" not in n and "text" not in n}
    for img in decoded.values():
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert (decoded["e_16bit.png"] == 255).all()  # 16-bit white -> 8-bit white, not clipped garbage
    g = decoded["c_gray.png"]
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    with pytest.raises(Exception):
        src[names.index("f_corrupt.jpg")]


def test_folder_bad_files_skipped_with_warning(image_dir):
    src = sources.FolderSource(image_dir)
    with pytest.warns(RuntimeWarning) as rec:
        batches = list(data.make_loader(src, batch_size=2, crop_size=16, load_size=16, train=False,
                                        mask_fn=square_mask))
    msgs = " ".join(str(w.message) for w in rec)
    assert "f_corrupt.jpg" in msgs and "g_text.png" in msgs
    assert [len(b["image"]) for b in batches] == [2, 2, 1]  # 5 readable images, eval keeps the tail
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = take(data.make_loader(src, batch_size=4, crop_size=16, load_size=16, train=True,
                                   mask_fn=square_mask), 5)  # training substitutes, never fails
    assert all(b["image"].shape == (4, 16, 16, 3) for b in tr)


def test_train_crop_is_window_of_resized_and_flips():
    img = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    big = data.resize_shorter(img, 24)
    assert big.shape == (24, 32, 3)
    flips, offsets = set(), set()
    for s in range(40):
        out = data.preprocess(img, crop_size=16, load_size=24, train=True, rng=np.random.default_rng(s))
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        hits = [(y, x, f) for y in range(9) for x in range(17) for f in (False, True)
                if np.array_equal(out, (big[y:y + 16, x:x + 16, :][:, ::-1] if f else big[y:y + 16, x:x + 16]))]
        assert hits, "crop is not a (possibly flipped) window of the resized image"
        flips.add(hits[0][2])
        offsets.add(hits[0][:2])
    assert flips == {False, True} and len(offsets) > 10


def test_eval_centre_crop_and_upscale():
    img = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = data.preprocess(img, crop_size=16, load_size=24, train=False)
    big = data.resize_shorter(img, 24)
    assert np.array_equal(out, big[4:20, 8:24])
    small = np.zeros((6, 10, 3), np.uint8)  # smaller than the crop: upscaled
    assert data.preprocess(small, crop_size=16, load_size=None, train=False).shape == (16, 16, 3)
    assert data.preprocess(small, crop_size=16, load_size=8, train=True,
                           rng=np.random.default_rng(0)).shape == (16, 16, 3)


# ------------------------------------------------------------------- loader
@pytest.mark.parametrize("backend", BACKENDS)
def test_determinism_and_resumption(backend):
    src = ColourSource(7)
    ref = take(loader(src, seed=5, backend=backend), 9)  # 27 elements: batches span epochs
    assert same(ref, take(loader(src, seed=5, backend=backend, num_workers=1), 9))
    resumed = loader(src, seed=5, backend=backend, start_step=4)
    assert resumed.step == 4
    assert same(ref[4:], take(resumed, 5)) and resumed.step == 9
    other = take(loader(src, seed=6, backend=backend), 9)
    assert not same(ref, other)
    # masks: one per image, differing between images
    assert len({b["hole"][i].tobytes() for b in ref for i in range(3)}) > 5


def test_backends_agree():
    if len(BACKENDS) < 2:
        pytest.skip("grain not installed")
    src = ColourSource(10)
    a = take(loader(src, backend="grain", start_step=2), 5)
    assert same(a, take(loader(src, backend="threads", start_step=2), 5))


def test_epochs_shuffled_and_complete():
    it = loader(ColourSource(12), batch_size=4, num_epochs=2)
    order = [i for b in it for i in ids(b)]
    assert len(order) == 24
    e0, e1 = order[:12], order[12:]
    assert sorted(e0) == sorted(e1) == list(range(12)) and e0 != e1 and e0 != list(range(12))


def test_eval_order_and_partial_batch():
    batches = list(loader(ColourSource(7), train=False, batch_size=3))
    assert [ids(b) for b in batches] == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("train", [True, False])
def test_process_sharding_disjoint_and_covering(train):
    n, pc = 12, 3
    per_host = [[i for b in loader(ColourSource(n), batch_size=2, num_epochs=1, train=train,
                                   process_index=p, process_count=pc) for i in ids(b)] for p in range(pc)]
    assert all(len(h) == n // pc for h in per_host)
    flat = sum(per_host, [])
    assert sorted(flat) == list(range(n))  # disjoint and covering


def test_bad_image_substituted_in_training():
    src = ColourSource(6, bad={2})
    with pytest.warns(RuntimeWarning, match="colour-2"):
        order = [i for b in loader(src, batch_size=2, num_epochs=1) for i in ids(b)]
    assert len(order) == 6 and 2 not in order


@pytest.mark.parametrize("n, first", [(5, "all 5"), (300, "the first 64")])
def test_a_folder_of_only_bad_images_is_one_line_without_warnings(n, first):
    """Refused at the first batch in one error (no warning per file before it), after at most
    MAX_SKIPPED reads, whatever the folder's size."""
    reads = []

    class Counting(ColourSource):
        def __getitem__(self, i):
            reads.append(i)
            return super().__getitem__(i)

    src = Counting(n, bad=range(n))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError) as e:
            next(loader(src, batch_size=1, num_workers=1, backend="threads"))
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"no readable image: {first} of this host's epoch"), message
    assert f"({n} images) are unreadable; the first: colour-" in message and "broken" in message, message
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert len(reads) <= min(n, data.MAX_SKIPPED) * 3   # the first batch's few prefetched slots


def test_from_config_sample():
    ml_collections = pytest.importorskip("ml_collections")
    cfg = ml_collections.ConfigDict({"source": "sample", "crop_size": 32, "load_size": 40, "batch_size": 2})
    it = data.from_config(cfg, train=True, mask_fn=square_mask, process_index=0, process_count=1)
    b = next(it)
    assert b["image"].shape == (2, 32, 32, 3)
    ev = list(data.from_config(cfg, train=False, mask_fn=square_mask, process_index=0, process_count=1))
    assert sum(len(b["image"]) for b in ev) == len(sources.SAMPLE_PHOTOS["test"])
