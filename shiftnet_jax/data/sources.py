"""Image sources: where training and evaluation images come from.

A source has ``__len__``, ``__getitem__(i) -> uint8 (H, W, 3)`` and
``describe(i)`` (a name for messages); :mod:`shiftnet_jax.data.loader` turns one into
batches. Sources of encoded files also have ``open_image(i, min_side)`` -> an RGB
PIL image, decoded at a reduced JPEG scale where that keeps both sides >=
``min_side`` (the loader's fast path: no array round trip, less decoding).

* :class:`SampleSource` -- the offline default: colour photographs shipped
  inside the scikit-image wheel (read from ``skimage/data/`` directly, without
  importing skimage or its network fetcher). train = astronaut, coffee,
  motorcycle_left, hubble_deep_field; test = chelsea, rocket.
* :class:`FolderSource` -- every image under a folder (recursive, sorted).
  A split is the first of its subfolders that exists --
  train: ``train``, ``training``, ``paris_train_original``;
  test: ``test``, ``eval``, ``val``, ``validation``, ``paris_eval_gt`` --
  and the whole folder when none does. So Paris StreetView works as its
  authors distribute it::

      ROOT/paris_train_original/*.JPG   14,900 training images (936x537)
      ROOT/paris_eval_gt/*.png          100 test images (227x227: upscaled)

* :class:`TfdsSource` -- ``tfds.data_source`` (ArrayRecord random access, no
  TensorFlow), optionally restricted to some classes; the filtered index list
  is computed once and cached as ``.npy``. The paper's Places subset is
  ``places365_small`` with :data:`PLACES_SCENES` ("field" matches both
  field/cultivated and field/wild; name one to get only it).
* ``places_folder`` -- the same scenes from the official Places365-Standard
  archive extracted into a folder, no TensorFlow
  (:class:`shiftnet_jax.data.places_folder.PlacesFolderSource`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.util
import itertools
import logging
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from shiftnet_jax.data.image_io import IMAGE_EXTENSIONS, MAX_PIXELS, list_images, open_rgb, read_image
from shiftnet_jax.data.places_folder import PlacesFolderSource
from shiftnet_jax.errors import first_line

log = logging.getLogger(__name__)

PLACES_SCENES = ("butte", "canyon", "field", "synagogue", "tundra", "valley")
SAMPLE_PHOTOS = {"train": ("astronaut.png", "coffee.png", "motorcycle_left.png", "hubble_deep_field.jpg"),
                 "test": ("chelsea.png", "rocket.jpg")}
SPLIT_DIRS = {"train": ("train", "training", "paris_train_original"),
              "test": ("test", "eval", "val", "validation", "paris_eval_gt")}
SOURCES = ("sample", "folder", "paris", "tfds", "places", "places_folder", "regions")
# The colour photographs of scikit-image's wheel that :class:`RegionSource` uses
# (motorcycle_right is left out: the same scene as motorcycle_left).
REGION_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                 "motorcycle_left.png", "retina.jpg", "rocket.jpg")


class FolderSource:
    """Images under ``root`` (recursive, sorted; hidden files skipped)."""

    def __init__(self, root, split: str | None = None, subdir: str | None = None,
                 max_pixels: int = MAX_PIXELS):
        """``split`` ("train"/"test" or a subfolder name) picks a subfolder as the
        module docstring says; ``subdir`` names one that must exist. An image over
        ``max_pixels`` is an :class:`~shiftnet_jax.data.image_io.ImageTooLarge` error
        (the loader skips it with a warning, as it does unreadable files)."""
        self.max_pixels = max_pixels
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        if subdir is not None and not (root / subdir).is_dir():
            raise FileNotFoundError(f"image folder not found: {root / subdir}")
        if subdir is None and split is not None:
            candidates = (split, *SPLIT_DIRS.get(split, ()))
            subdir = next((d for d in candidates if (root / d).is_dir()), None)
        self.root = root / subdir if subdir else root
        self.paths = list_images(self.root)
        if not self.paths:
            raise FileNotFoundError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) under {self.root}")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return read_image(self.paths[i], getattr(self, "max_pixels", MAX_PIXELS))

    def open_image(self, i, min_side=None):
        return open_rgb(self.paths[i], min_side, getattr(self, "max_pixels", MAX_PIXELS))

    def describe(self, i):
        return self.paths[i]


def skimage_photos(names) -> list[str]:
    """Paths of photographs shipped in scikit-image's wheel (found without importing it)."""
    spec = importlib.util.find_spec("skimage")  # locates the package, does not import it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the built-in photos need scikit-image: pip install scikit-image")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    paths = [str(folder / f) for f in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"scikit-image sample photos missing: {missing}")
    return paths


class SampleSource(FolderSource):
    """The built-in photos of :data:`SAMPLE_PHOTOS` (scikit-image wheel, no network)."""

    def __init__(self, split: str = "train"):
        self.paths = skimage_photos(SAMPLE_PHOTOS["test" if split != "train" else "train"])
        self.root = Path(self.paths[0]).parent


class RegionSource:
    """Held-out *regions* of photographs: train and test within the same photos.

    Every photo is split into vertical bands: training sees the left
    ``1 - test_fraction - gap`` of its width (the whole band, as one image to
    crop from), testing the right ``test_fraction``; the ``gap`` between them
    keeps training crops from touching the test band. The test band is resized
    to ``tile`` pixels wide and cut into square ``tile`` x ``tile`` tiles from top
    to bottom (one test image each). Photos are decoded once and kept with their
    longer side at most ``max_side``.

    Args:
      paths: photo files; "builtin" in ``folders`` adds :data:`REGION_PHOTOS`.
      split: "train" or "test".
    """

    def __init__(self, paths, split: str, *, tile: int, test_fraction: float = 0.3,
                 gap: float = 0.05, max_side: int = 1024):
        if not paths:
            raise FileNotFoundError("no photos for the regions source")
        self.items, self.names = [], []
        for path in paths:
            photo = read_image(path)
            scale = min(1.0, max_side / max(photo.shape[:2]))
            if scale < 1.0:
                size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
                photo = np.asarray(Image.fromarray(photo).resize(size, Image.LANCZOS))
            h, w = photo.shape[:2]
            name = Path(path).name
            if split == "train":
                self.items.append(photo[:, :int(w * (1 - test_fraction - gap))])
                self.names.append(f"{name} (train band)")
                continue
            band = photo[:, w - int(w * test_fraction):]
            height = max(tile, round(band.shape[0] * tile / band.shape[1]))
            band = np.asarray(Image.fromarray(band).resize((tile, height), Image.LANCZOS))
            count = height // tile
            for k in range(count):  # evenly spread tiles over the band's height
                top = round(k * (height - tile) / max(count - 1, 1))
                self.items.append(np.ascontiguousarray(band[top:top + tile]))
                self.names.append(f"{name} (test tile {k})")

    @classmethod
    def from_folders(cls, folders: str, split: str, **kwargs):
        """``folders``: comma-separated folders of photos; ``builtin`` (or empty) adds
        scikit-image's colour photographs."""
        parts = [f.strip() for f in (folders or "builtin").split(",") if f.strip()]
        paths = []
        for part in parts:
            if part == "builtin":
                paths += skimage_photos(REGION_PHOTOS)
                continue
            root = Path(part).expanduser()
            if not root.is_dir():
                raise FileNotFoundError(f"image folder not found: {root}")
            paths += list_images(root)
        return cls(paths, split, **kwargs)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def describe(self, i):
        return self.names[i]


class TfdsSource:
    """A TFDS dataset read through ``tfds.data_source``, optionally class-filtered.

    ``skip_decoding`` lets TFDS hand over the encoded JPEG (decoded later with
    PIL in the workers, and skipped by the one-off label scan); pass False for
    ``tfds.testing.mock_data``, which cannot encode without TensorFlow. A
    ``data_source`` object (``len``, ``[i] -> {image, label}``) and its
    ``label_names`` may be given instead of a prepared dataset.
    """

    def __init__(self, name: str = "places365_small", split: str = "train", *, data_dir=None,
                 classes=None, cache_dir=None, data_source=None, label_names=None,
                 skip_decoding: bool = True, image_key: str = "image", label_key: str = "label"):
        self.name, self.split, self.image_key, self.label_key = name, split, image_key, label_key
        self.ds = data_source if data_source is not None else _open_tfds(name, split, data_dir, image_key,
                                                                         skip_decoding)
        self.indices = None
        if classes:
            if label_names is None:
                label_names = self.ds.dataset_info.features[label_key].names
            wanted = _match_classes(label_names, classes)
            self.indices = _cached_filter(self, wanted, cache_dir)

    def __len__(self):
        return len(self.ds) if self.indices is None else len(self.indices)

    def _index(self, i):
        return int(i if self.indices is None else self.indices[i])

    def _item(self, i):
        img = self.ds[self._index(i)][self.image_key]
        if isinstance(img, np.ndarray) and img.dtype.kind in "OSV":  # encoded bytes in an array
            img = img.item()
        return bytes(img) if isinstance(img, (bytes, bytearray)) else img  # bytes: SkipDecoding

    def __getitem__(self, i):
        img = self._item(i)
        return read_image(img) if isinstance(img, bytes) else _rgb_array(img)

    def open_image(self, i, min_side=None):
        img = self._item(i)
        return open_rgb(img, min_side) if isinstance(img, bytes) else Image.fromarray(_rgb_array(img))

    def describe(self, i):
        return f"{self.name}/{self.split}[{self._index(i)}]"


def _rgb_array(img) -> np.ndarray:
    """A decoded TFDS image (H, W[, 1|3|4]) -> uint8 (H, W, 3)."""
    img = np.asarray(img, dtype=np.uint8)
    img = img[..., None] if img.ndim == 2 else img
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img[..., :3]


def _open_tfds(name, split, data_dir, image_key, skip_decoding):
    try:
        import tensorflow_datasets as tfds  # lazy: slow import, only needed here
    except ImportError as e:
        raise FileNotFoundError(f"data.source tfds needs tensorflow_datasets (pip install tensorflow-datasets): "
                                f"{type(e).__name__}: {first_line(e)}") from None
    decoders = {image_key: tfds.decode.SkipDecoding()} if skip_decoding else None
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False, decoders=decoders)
    except Exception as e:  # not prepared, wrong format, ...: one actionable line
        where = f" --data_dir={data_dir}" if data_dir else ""
        first = first_line(e)
        raise FileNotFoundError(
            f"TFDS dataset {name!r} split {split!r} is not prepared as ArrayRecord; prepare it once with "
            f"`tfds build {name} --file_format=array_record{where}` ({type(e).__name__}: {first})") from e


def _match_classes(names, classes) -> list[int]:
    """Label ids whose name is a requested class or one of its sub-classes ("field" -> "field/wild")."""
    names = [re.sub(r"^/?[a-z]/", "", n) for n in names]  # "/f/field/wild" -> "field/wild"
    ids = []
    for c in classes:
        hit = [i for i, n in enumerate(names) if n == c or n.startswith(c + "/")]
        if not hit:
            raise ValueError(f"class {c!r} matches no label name")
        ids += hit
    return sorted(set(ids))


def _scan_labels(ds, label_key, chunk=4096) -> np.ndarray:
    """Every record's label (one pass, threaded by chunks)."""
    def read(start):
        return [int(ds[i][label_key]) for i in range(start, min(start + chunk, len(ds)))]
    with concurrent.futures.ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as ex:
        return np.array(list(itertools.chain.from_iterable(ex.map(read, range(0, len(ds), chunk)))),
                        dtype=np.int64)


def _cached_filter(src: TfdsSource, wanted, cache_dir) -> np.ndarray:
    key = hashlib.sha1(repr((src.name, src.split, wanted, len(src.ds))).encode()).hexdigest()[:12]
    if cache_dir is None:  # next to the prepared data if writable, else a user cache
        data_dir = getattr(getattr(src.ds, "dataset_info", None), "data_dir", None)
        ok = data_dir is not None and os.path.isdir(data_dir) and os.access(data_dir, os.W_OK)
        cache_dir = data_dir if ok else os.path.join(os.path.expanduser("~"), ".cache", "shiftnet_jax")
    path = os.path.join(cache_dir, re.sub(r"[^\w.-]+", "_", f"{src.name}-{src.split}-{key}") + ".npy")
    if os.path.isfile(path):
        return np.load(path)
    log.info("scanning %d labels of %s/%s (cached afterwards in %s)", len(src.ds), src.name, src.split, path)
    idx = np.flatnonzero(np.isin(_scan_labels(src.ds, src.label_key), wanted)).astype(np.int64)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npy"
    np.save(tmp, idx)
    os.replace(tmp, path)  # atomic: concurrent hosts never read a half-written file
    return idx



def make_source(cfg, train: bool, max_pixels: int = MAX_PIXELS):
    """The source named by ``cfg.source`` (a data config) for the train or eval split.

    Folders (``folder``, ``paris``): the split subfolder is ``train_split`` /
    ``eval_split`` if that exists, else the usual names (see the module
    docstring), else the whole folder.
    """
    kind = cfg.get("source", "sample")
    split = cfg.get("train_split" if train else "eval_split", None)
    if kind == "sample":
        return SampleSource("train" if train else "test")
    if kind in ("folder", "paris"):
        if not cfg.get("dir"):
            raise ValueError(f"data.source={kind!r} needs data.dir (--config.data.dir=PATH)")
        root = Path(cfg.get("dir")).expanduser()
        generic = "train" if train else "test"
        names = (split, *SPLIT_DIRS[generic]) if split else SPLIT_DIRS[generic]
        subdir = next((d for d in names if (root / d).is_dir()), None)
        return FolderSource(root, subdir=subdir, max_pixels=max_pixels)
    if kind == "regions":
        return RegionSource.from_folders(cfg.get("dir", ""), "train" if train else "test",
                                         tile=max(cfg.get("crop_size", 256), cfg.get("load_size", 0) or 0))
    if kind == "places_folder":
        if not cfg.get("dir"):
            raise ValueError("data.source='places_folder' needs data.dir (the extracted places365_standard)")
        classes = cfg.get("classes", None) or PLACES_SCENES
        return PlacesFolderSource(cfg.get("dir"), split or ("train" if train else "val"), list(classes),
                                  max_pixels=max_pixels)
    if kind in ("tfds", "places"):
        name = cfg.get("name", None) or "places365_small"
        classes = cfg.get("classes", None)
        classes = list(PLACES_SCENES) if not classes and kind == "places" else classes
        return TfdsSource(name, split or ("train" if train else "validation"),
                          data_dir=cfg.get("dir", None) or None,
                          classes=list(classes) if classes else None,
                          cache_dir=cfg.get("cache_dir", None) or None)
    raise ValueError(f"unknown data.source {kind!r} ({', '.join(SOURCES)})")
