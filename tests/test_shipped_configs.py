"""Every config in configs/ trains, evaluates and inpaints end to end, as a user runs it.

Each ``configs/*.py`` is picked up automatically. Its ``data.source`` decides
the data this test writes: nothing for ``sample``; a flat folder and a
``train/``+``test/`` folder for ``folder``; the authors' layout for ``paris``;
a tiny ``places365_small`` in TFDS's on-disk ArrayRecord layout (written by the
real TFDS builder, only its examples replaced) for ``tfds``; a folder of
photos for ``regions``. Then
``train.py`` runs for 2 steps with a tiny model, and ``eval.py`` and
``inpaint.py`` run on the workdir it wrote, all through their ``main(argv)``.
"""

import importlib.util
import io
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from shiftnet_jax import checkpoint
from shiftnet_jax import config as configlib
from shiftnet_jax.data import sources

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.py"))
TINY = ["--config.model.ngf=4", "--config.model.num_downs=5", "--config.discriminator.ndf=4",
        "--config.data.load_size=40", "--config.data.crop_size=32", "--config.data.num_workers=2",
        "--config.batch_size=2", "--config.num_steps=2", "--config.log_every=1",
        "--config.checkpoint_every=2", "--config.sample_every=2", "--config.eval_batches=1"]
SCENES = ("butte", "canyon", "field/wild", "synagogue/outdoor", "tundra", "valley")


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_cli_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _photo(seed, h=48, w=64):
    """A smooth colour image: cheap to encode, not constant."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = np.random.default_rng(seed).uniform(0, 3, 3)
    return np.rint(127.5 + 127.5 * np.sin(np.stack([4 * xx + phase[0], 3 * yy + phase[1],
                                                    5 * (xx + yy) + phase[2]], -1))).astype(np.uint8)


def _folder(path, n, seed=0, ext="png"):
    path.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(_photo(seed + i)).save(path / f"img_{i}.{ext}")


def _places(data_dir):
    """places365_small/2.1.0 with 8 train and 3 validation records, labels by their real names."""
    import tensorflow_datasets as tfds

    builder_cls = tfds.builder_cls("places365_small")
    names = builder_cls().info.features["label"].names
    label = {n: names.index(n) for n in (*SCENES, "airfield", "bakery/shop")}
    splits = {"train": [*SCENES, "airfield", "bakery/shop"], "validation": ["valley", "butte", "airfield"]}

    def encode(seed):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(Image.fromarray(_photo(seed)).resize((256, 256)))).save(buf, "JPEG")
        return buf.getvalue()

    class TinyPlaces(builder_cls, skip_registration=True):
        name = "places365_small"

        def _split_generators(self, dl_manager):
            return {split: self._examples(split, scenes) for split, scenes in splits.items()}

        def _examples(self, split, scenes):
            for i, scene in enumerate(scenes):
                yield f"{split}{i}", {"image": encode(i + 100 * len(split)), "label": label[scene],
                                      "filename": f"{split}_{i}.jpg"}

    TinyPlaces(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def _layouts(source):
    """(variant name, function writing the data into a folder) for a data source."""
    if source == "sample":
        return [("builtin", None)]
    if source == "folder":
        return [("flat", lambda d: _folder(d, 5)),
                ("train_test", lambda d: (_folder(d / "train", 4), _folder(d / "test", 2, 10, "jpg")))]
    if source == "paris":
        return [("authors", lambda d: (_folder(d / "paris_train_original", 4, ext="JPG"),
                                       _folder(d / "paris_eval_gt", 2, 10)))]
    if source in ("tfds", "places"):
        return [("places365_small", _places)]
    if source == "regions":  # held-out bands of every photo in the folder(s)
        return [("photos", lambda d: _folder(d, 3))]
    raise AssertionError(f"no test data for data.source {source!r}: add a layout to _layouts()")


CASES = [(path, variant, write) for path in CONFIGS
         for variant, write in _layouts(configlib.load_config(path).data.source)]


@pytest.mark.parametrize("path, variant, write", CASES,
                         ids=[f"{p.stem}-{v}" for p, v, _ in CASES])
def test_config_trains_evaluates_and_inpaints(path, variant, write, tmp_path, capsys):
    config = configlib.load_config(path)
    args = [f"--config={path}", f"--workdir={tmp_path / 'run'}", *TINY]
    if write is not None:
        write(tmp_path / "data")
        args.append(f"--config.data.dir={tmp_path / 'data'}")
    if config.data.mask.startswith("center:hole="):  # the paper's 128 px hole, scaled to 32 px crops
        args.append("--config.data.mask=center:hole=16")
    official = config.get("compat") == "official"
    if official:   # D sees only the hole crop: it needs >= 24 px
        args += ["--config.data.crop_size=64", "--config.data.load_size=72",
                 "--config.model.num_downs=6", "--config.data.mask=center:hole=32",
                 # 4 photos in batches of 4: one step per epoch; the official lambda policy
                 # with niter 1, niter_decay 1 gives epoch 1 lr / 2, epoch 2 (its last) 0
                 "--config.batch_size=4", "--config.official.niter=1", "--config.official.niter_decay=1",
                 "--config.checkpoint_every=1",
                 # fresh weights as the official --init_type kaiming (not our N(0, 0.02))
                 "--config.official.init_type=kaiming"]
    if (config.loss.style or config.loss.content) and not config.loss.vgg16:
        # VGG16's ImageNet weights are a download: a narrow VGG16 of the same layout.
        args.append(f"--config.loss.vgg16={ROOT / 'tests' / 'fixtures' / 'vgg16_narrow.pth'}")

    assert _script("train")(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "done: step 2" in out
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["ngf"] == 4 and saved["data"]["source"] == config.data.source
    assert (run / "checkpoints" / "2").is_dir() and (run / "samples" / "step_0000002.png").is_file()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "l1" in r] == [1, 2]
    assert all(np.isfinite(r["g_loss"]) for r in logged if "g_loss" in r)
    assert any("eval/psnr_hole" in r for r in logged)
    if official:   # the lr changes at the epoch boundary, and step 2's (0) is the one applied
        lr = config.optim.lr
        assert [r["lr"] for r in logged if "lr" in r] == pytest.approx([lr / 2, 0.0], rel=1e-6)
        after = [checkpoint.load_generator(run, step=s)[1]["params"] for s in (1, 2)]
        jax.tree.map(np.testing.assert_array_equal, *after)
        # kaiming (fan_in: 16 channels x 4x4) after one step of at most 1e-4 per weight
        kernel = np.asarray(after[0]["down_3"]["conv"]["kernel"])   # 16 -> 32 channels
        assert kernel.shape[2] == 16 and kernel.std() == pytest.approx(np.sqrt(2 / 256), rel=0.05)

    if config.data.source in ("tfds", "places"):  # the scene filter found the six scenes, no other
        data_cfg = configlib.load_config(path).data
        data_cfg.dir = str(tmp_path / "data")
        assert len(sources.make_source(data_cfg, train=True)) == len(SCENES)

    assert _script("eval")(["--ckpt", str(run), "--limit", "2", "--batch-size", "2", "--no-progress",
                            "--samples", "1", "--masks", "center"]) == 0, capsys.readouterr().err
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["num_images"] >= 1 and report["overall"]["shiftnet"]["hole"]["psnr"] is not None

    photo = _photo(7, 37, 53)
    hole = np.zeros((37, 53), np.uint8)
    hole[10:25, 20:40] = 255
    Image.fromarray(photo).save(tmp_path / "p.png")
    Image.fromarray(hole).save(tmp_path / "p_mask.png")
    assert _script("inpaint")(["--ckpt", str(run), "--image", str(tmp_path / "p.png"),
                               "--mask", str(tmp_path / "p_mask.png"),
                               "--out", str(tmp_path / "filled.png")]) == 0, capsys.readouterr().err
    filled = np.asarray(Image.open(tmp_path / "filled.png"))
    np.testing.assert_array_equal(filled[hole == 0], photo[hole == 0])
    assert (filled[hole > 0] != photo[hole > 0]).any()
