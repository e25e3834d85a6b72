"""Image sources: the built-in photos, folders (flat, split, Paris layout), TFDS."""

import numpy as np
import pytest
from PIL import Image

from shiftnet_jax.data import loader as data
from shiftnet_jax.data import sources


def square_mask(rng, size):
    h, w = size
    m = np.zeros((h, w, 1), np.float32)
    m[: h // 4, : w // 4] = 1
    return m


class FakeTfds:
    """Same interface as a TFDS data source; counts label reads."""

    def __init__(self, labels):
        self.labels, self.reads = np.asarray(labels), 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        return {"image": np.full((8, 8, 3), i, np.uint8), "label": np.int64(self.labels[i])}


def test_sample_source_offline_photos():
    train, test = sources.SampleSource("train"), sources.SampleSource("test")
    assert len(train) >= 4 and len(test) >= 2
    assert not set(train.paths) & set(test.paths)
    for src in (train, test):
        for i in range(len(src)):
            img = src[i]
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
            assert min(img.shape[:2]) >= 256 and img.std() > 10  # real, colourful photos


def test_folder_split_subdirs(tmp_path):
    for d, n in (("paris_train_original", 3), ("paris_eval_gt", 2)):
        (tmp_path / d).mkdir()
        for i in range(n):
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / d / f"{i}.png")
    assert len(sources.FolderSource(tmp_path, "train")) == 3
    assert len(sources.FolderSource(tmp_path, "test")) == 2
    assert len(sources.FolderSource(tmp_path)) == 5


def test_tfds_filter_and_cache_fake_source(tmp_path):
    names = ["airfield", "butte", "field/cultivated", "field/wild", "field_road", "valley"]
    labels = np.random.default_rng(0).integers(0, len(names), 200)
    fake = FakeTfds(labels)
    src = sources.TfdsSource("fake", "train", data_source=fake, label_names=names,
                          classes=["butte", "field"], cache_dir=tmp_path)
    want = np.flatnonzero(np.isin(labels, [1, 2, 3]))  # not field_road
    assert np.array_equal(src.indices, want) and len(src) == len(want)
    assert fake.reads == 200 and len(list(tmp_path.glob("*.npy"))) == 1
    fake.reads = 0
    again = sources.TfdsSource("fake", "train", data_source=fake, label_names=names,
                            classes=["butte", "field"], cache_dir=tmp_path)
    assert fake.reads == 0 and np.array_equal(again.indices, want)  # cache hit: no rescan
    assert src[0].shape == (8, 8, 3) and src[0][0, 0, 0] == want[0]
    with pytest.raises(ValueError, match="tundra"):
        sources.TfdsSource("fake", "train", data_source=fake, label_names=names, classes=["tundra"],
                        cache_dir=tmp_path)


def test_tfds_mock_data_places(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    scans = []
    real_scan = sources._scan_labels
    monkeypatch.setattr(sources, "_scan_labels", lambda *a, **k: scans.append(1) or real_scan(*a, **k))
    with tfds.testing.mock_data(num_examples=300, policy=tfds.testing.MockPolicy.USE_CODE):
        kw = dict(classes=list(sources.PLACES_SCENES), cache_dir=tmp_path, skip_decoding=False)
        src = sources.TfdsSource("places365_small", "train", **kw)
        raw = tfds.data_source("places365_small", split="train")
        ok = sources._match_classes(raw.dataset_info.features["label"].names, sources.PLACES_SCENES)
        assert len(ok) == 7  # field -> cultivated + wild
        want = [i for i in range(len(raw)) if int(raw[i]["label"]) in ok]
        assert list(src.indices) == want and len(want) > 0
        sources.TfdsSource("places365_small", "train", **kw)
        assert len(scans) == 1  # the second construction read the cache
        b = next(data.make_loader(src, batch_size=2, crop_size=32, load_size=40, train=True,
                                  mask_fn=square_mask))
        assert b["image"].shape == (2, 32, 32, 3)


def test_tfds_not_prepared_message(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="tfds build places365_small --file_format=array_record"):
        sources.TfdsSource("places365_small", "train", data_dir=str(tmp_path), classes=["butte"])


def _images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(folder / f"{i}.png")


@pytest.mark.parametrize("layout, train_n, test_n", [
    ({"": 5}, 5, 5),                                             # flat: everything for both
    ({"train": 3, "test": 2}, 3, 2),
    ({"paris_train_original": 4, "paris_eval_gt": 1}, 4, 1),     # the authors' Paris layout
    ({"train": 3}, 3, 3),                                        # no test split: the whole folder
])
@pytest.mark.parametrize("kind", ["folder", "paris"])
def test_make_source_finds_the_split_folders(tmp_path, layout, train_n, test_n, kind):
    for sub, n in layout.items():
        _images(tmp_path / sub if sub else tmp_path, n)
    cfg = {"source": kind, "dir": str(tmp_path), "train_split": "train", "eval_split": "test"}
    assert len(sources.make_source(cfg, train=True)) == train_n
    assert len(sources.make_source(cfg, train=False)) == test_n


def test_make_source_named_split_and_errors(tmp_path):
    _images(tmp_path / "mine", 2)
    _images(tmp_path / "train", 3)
    cfg = {"source": "folder", "dir": str(tmp_path), "train_split": "mine"}
    assert len(sources.make_source(cfg, train=True)) == 2
    with pytest.raises(ValueError, match="needs data.dir"):
        sources.make_source({"source": "folder"}, train=True)
    with pytest.raises(ValueError, match="unknown data.source 'web'"):
        sources.make_source({"source": "web"}, train=True)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        sources.make_source({"source": "folder", "dir": str(tmp_path / "mine" / "x")}, train=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        sources.make_source({"source": "folder", "dir": str(tmp_path / "empty")}, train=True)
