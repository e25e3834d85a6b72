"""The Places route without TensorFlow: a stand-in written in the official
Places365-Standard layouts (easyformat class folders; flat val_256 with its list),
the six-scene filter, and a two-step training run of configs/places6.py on it."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shiftnet_jax import config as configlib
from shiftnet_jax.data import sources
from shiftnet_jax.data.places_folder import PlacesFolderSource, matches, scene_key
from shiftnet_jax.train.loop import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
# Real Places365 class names (a few of the 365), with the six scenes' sub-scenes.
CLASSES = ["airfield", "butte", "canyon", "field-cultivated", "field-wild", "field_road",
           "synagogue-outdoor", "tundra", "valley", "volcano"]


def _jpeg(path: Path, seed: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path, quality=90)


def _easyformat(root: Path) -> Path:
    base = root / "places365_standard"
    for k, c in enumerate(CLASSES):
        for i in range(2):
            _jpeg(base / "train" / c / f"{i:08d}.jpg", 10 * k + i)
        _jpeg(base / "val" / c / f"Places365_val_{k:08d}.jpg", 100 + k)
    (base / "train.txt").write_text("".join(f"train/{c}/{i:08d}.jpg {k}\n" for k, c in enumerate(CLASSES)
                                            for i in range(2)))
    return root


def test_easyformat_layout_and_the_six_scenes():
    assert scene_key("/f/field/wild") == scene_key("field-wild") == "field/wild"
    assert matches("field-cultivated", ["field"]) and not matches("volcano", ["valley"])
    assert not matches("field_road", ["field"])  # another scene, as in the TFDS filter


def test_class_folders_flat_list_and_errors(tmp_path):
    root = _easyformat(tmp_path / "easy")
    six = list(sources.PLACES_SCENES)
    train = PlacesFolderSource(root, "train", six)
    picked = sorted({Path(p).parent.name for p in train.paths})
    # "field" takes both field sub-scenes, not field_road (another Places class).
    assert picked == ["butte", "canyon", "field-cultivated", "field-wild",
                      "synagogue-outdoor", "tundra", "valley"]
    assert len(train) == 14 and train[0].shape == (48, 48, 3)
    val = PlacesFolderSource(root / "places365_standard", "validation", six)
    assert len(val) == 7 and all("/val/" in p for p in val.paths)
    # The val_256 archive: a flat folder, its list and the categories file.
    flat = tmp_path / "flat"
    names = [f"/{c[0]}/{c.replace('-', '/')}" for c in CLASSES]  # categories_places365.txt spelling
    (flat / "val").mkdir(parents=True)
    (flat / "categories_places365.txt").write_text("".join(f"{n} {k}\n" for k, n in enumerate(names)))
    lines = []
    for k in range(len(CLASSES)):
        _jpeg(flat / "val" / f"Places365_val_{k:08d}.jpg", k)
        lines.append(f"Places365_val_{k:08d}.jpg {k}\n")
    (flat / "places365_val.txt").write_text("".join(lines))
    assert len(PlacesFolderSource(flat, "val", ["field"])) == 2
    assert len(PlacesFolderSource(flat, "val")) == len(CLASSES)
    with pytest.raises(FileNotFoundError, match="no train folder"):
        PlacesFolderSource(flat, "train")
    with pytest.raises(FileNotFoundError, match="no images of the scenes glacier"):
        PlacesFolderSource(root, "train", ["glacier"])


def test_places6_trains_from_the_folder_without_tensorflow(tmp_path):
    root = _easyformat(tmp_path / "data")
    config = configlib.load_config(ROOT / "configs" / "places6.py")
    configlib.apply_overrides(config, [
        ("data.source", "places_folder"), ("data.dir", str(root / "places365_standard")),
        ("model.ngf", "4"), ("model.num_downs", "5"), ("discriminator.ndf", "4"),
        ("data.load_size", "40"), ("data.crop_size", "32"), ("data.mask", "center"),
        ("data.num_workers", "1"), ("batch_size", "2"), ("num_steps", "2"), ("log_every", "1"),
        ("checkpoint_every", "2"), ("sample_every", "0"), ("eval_batches", "1")])
    configlib.validate(config)
    assert len(sources.make_source(config.data, train=True)) == 14
    assert len(sources.make_source(config.data, train=False)) == 7  # eval_split "validation" -> val/
    summary = train_and_evaluate(config, tmp_path / "run")
    assert summary["step"] == 2 and np.isfinite(summary["eval/psnr_hole"])
