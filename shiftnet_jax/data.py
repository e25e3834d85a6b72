"""Host-side input pipeline: image sources, augmentation, masks, batching.

Batches are dicts ``{"image": (B,H,W,3) float32 in [-1, 1], "hole": (B,H,W,1)
float32, 1 = missing}``. Decoding, resizing and masks run on the host in
worker threads (PIL and NumPy release the GIL), a few batches ahead of the
training step.

Sources (``__len__``, ``__getitem__(i) -> uint8 (H, W, 3)``, ``describe(i)``):

* :class:`SampleSource` -- the offline default: colour photographs shipped
  inside the scikit-image wheel (read from ``skimage/data/`` directly, without
  importing skimage or its network fetcher). train = astronaut, coffee,
  motorcycle_left, hubble_deep_field; test = chelsea, rocket.
* :class:`FolderSource` -- every image under a folder (recursive, sorted).
  Paris StreetView, as its authors distribute it::

      ROOT/paris_train_original/*.JPG   14,900 training images (936x537)
      ROOT/paris_eval_gt/*.png          100 test images (227x227: upscaled)

  Split subfolders recognised: ``train``/``training``/``paris_train_original``
  and ``test``/``eval``/``val``/``validation``/``paris_eval_gt``; a folder
  without them is used whole for every split.
* :class:`TfdsSource` -- ``tfds.data_source`` (ArrayRecord random access, no
  TensorFlow), optionally restricted to some classes; the filtered index list
  is computed once and cached as ``.npy``. The paper's Places subset is
  ``places365_small`` with :data:`PLACES_SCENES` ("field" matches both
  field/cultivated and field/wild; name one to get only it).

Determinism: epoch ``e`` visits ``permutation_e = rng(seed, e)`` of the
images; host ``p`` of ``P`` takes every P-th entry (training drops the last
``len % P`` of each epoch, so hosts get equal, disjoint shares). Element ``k``
of a host's stream is ``(epoch, slot) = divmod(k, share)``; its crop, flip and
mask come from rngs seeded by ``(seed, epoch, image index)``, never from thread
timing. Batch ``s`` is elements ``[s*B, (s+1)*B)`` (batches may span epochs),
so ``start_step`` resumes exactly. An unreadable image is skipped with a
warning: in training the next image of the host's epoch order takes its slot
(this keeps the step -> data map exact); in evaluation it is dropped.

Why Grain: ``grain.MapDataset`` + ``to_iter_dataset(ReadOptions(...))`` gives
an ordered thread pool with bounded prefetch, tested on Python 3.11/3.12
without TensorFlow; the index logic above is ours so that the stream is a
pure function of (seed, position). Without grain installed a small
ThreadPoolExecutor pipeline yields identical batches (``backend="threads"``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import importlib.util
import io
import itertools
import logging
import os
import re
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
PLACES_SCENES = ("butte", "canyon", "field", "synagogue", "tundra", "valley")
SAMPLE_PHOTOS = {"train": ("astronaut.png", "coffee.png", "motorcycle_left.png", "hubble_deep_field.jpg"),
                 "test": ("chelsea.png", "rocket.jpg")}
_SPLIT_DIRS = {"train": ("train", "training", "paris_train_original"),
               "test": ("test", "eval", "val", "validation", "paris_eval_gt")}


# ----------------------------------------------------------------- decoding
def to_rgb_uint8(im: Image.Image) -> np.ndarray:
    """Any PIL image (grey, palette, alpha, 16-bit, float, CMYK) -> uint8 (H, W, 3)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):  # high bit depth grey
        a = np.asarray(im, dtype=np.float64)
        if im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        elif im.mode != "F" and (im.mode.startswith("I;16") or a.max(initial=0) > 255):
            a = a / 257.0  # 16-bit range -> 8-bit
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=-1)
    if "A" in im.mode or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")  # composite transparency over white
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def decode_image(data) -> np.ndarray:
    """A file path or encoded bytes -> uint8 (H, W, 3); raises on bad data."""
    with Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data) as im:
        im.load()  # force the full decode here, so truncated files raise
        return to_rgb_uint8(im)


# ------------------------------------------------------------------ sources
class FolderSource:
    """Images under ``root`` (recursive, sorted; hidden files skipped)."""

    def __init__(self, root, split: str | None = None, subdir: str | None = None):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"image folder not found: {root}")
        if subdir is None and split is not None:
            subdir = next((d for d in _SPLIT_DIRS.get(split, (split,)) if (root / d).is_dir()), None)
        self.root = root / subdir if subdir else root
        self.paths = sorted(
            os.path.join(d, f)
            for d, dirs, files in os.walk(self.root, followlinks=True)
            for f in files
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
        if not self.paths:
            raise FileNotFoundError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) under {self.root}")

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return decode_image(self.paths[i])

    def describe(self, i):
        return self.paths[i]


class SampleSource(FolderSource):
    """The built-in photos of :data:`SAMPLE_PHOTOS` (scikit-image wheel, no network)."""

    def __init__(self, split: str = "train"):
        spec = importlib.util.find_spec("skimage")  # locates the package, does not import it
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the 'sample' source needs scikit-image: pip install scikit-image")
        folder = Path(list(spec.submodule_search_locations)[0]) / "data"
        self.root = folder
        self.paths = [str(folder / f) for f in SAMPLE_PHOTOS["test" if split != "train" else "train"]]
        missing = [p for p in self.paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"scikit-image sample photos missing: {missing}")


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

    def __getitem__(self, i):
        img = self.ds[self._index(i)][self.image_key]
        if isinstance(img, np.ndarray) and img.dtype.kind in "OSV":  # encoded bytes in an array
            img = img.item()
        if isinstance(img, (bytes, bytearray)):  # SkipDecoding: encoded JPEG/PNG
            return decode_image(bytes(img))
        img = np.asarray(img, dtype=np.uint8)
        return np.repeat(img, 3, axis=-1) if img.ndim == 2 or img.shape[-1] == 1 else img[..., :3]

    def describe(self, i):
        return f"{self.name}/{self.split}[{self._index(i)}]"


def _open_tfds(name, split, data_dir, image_key, skip_decoding):
    import tensorflow_datasets as tfds  # lazy: slow import, only needed here
    decoders = {image_key: tfds.decode.SkipDecoding()} if skip_decoding else None
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False, decoders=decoders)
    except Exception as e:  # not prepared, wrong format, ...: one actionable line
        where = f" --data_dir={data_dir}" if data_dir else ""
        first = (str(e).strip().splitlines() or [""])[0]
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


# --------------------------------------------------------------- transforms
def resize_shorter(img: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize so that the shorter side is ``size`` (aspect kept)."""
    h, w = img.shape[:2]
    if min(h, w) == size:
        return img
    s = size / min(h, w)
    out = (max(size, round(w * s)), max(size, round(h * s)))
    return np.asarray(Image.fromarray(img).resize(out, Image.BICUBIC))


def preprocess(img: np.ndarray, *, crop_size: int, load_size: int | None, train: bool,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 image -> uint8 (crop, crop, 3): resize shorter side to ``load_size``
    (at least ``crop_size``), then a random crop + random h-flip (train) or the
    centre crop (eval)."""
    img = resize_shorter(img, max(crop_size, load_size or min(img.shape[:2])))
    h, w = img.shape[:2]
    if train:
        y, x = int(rng.integers(0, h - crop_size + 1)), int(rng.integers(0, w - crop_size + 1))
        flip = bool(rng.random() < 0.5)
    else:
        y, x, flip = (h - crop_size) // 2, (w - crop_size) // 2, False
    out = img[y:y + crop_size, x:x + crop_size]
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


# ------------------------------------------------------------------- loader
class _Plan:
    """Maps a host's stream position to (epoch, image index); pure in (seed, position)."""

    def __init__(self, n, *, seed, train, process_index, process_count):
        if n == 0:
            raise ValueError("empty image source")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.n, self.seed, self.train, self.pi, self.pc = n, seed, train, process_index, process_count
        self.share = n // process_count if train else len(range(process_index, n, process_count))
        if self.share == 0:
            raise ValueError(f"{n} images cannot be shared by {process_count} processes")
        self._cache, self._lock = collections.OrderedDict(), threading.Lock()

    def order(self, epoch: int) -> np.ndarray:
        """This host's image indices for ``epoch``."""
        with self._lock:
            if epoch not in self._cache:
                perm = (np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.train
                        else np.arange(self.n))
                self._cache[epoch] = perm[:self.share * self.pc][self.pi::self.pc]
                while len(self._cache) > 3:
                    self._cache.popitem(last=False)
            return self._cache[epoch]


def _stack(examples):
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def _threaded(fn, positions, num_workers, window):
    """Ordered parallel map with at most ``window`` elements in flight."""
    with concurrent.futures.ThreadPoolExecutor(max(1, num_workers)) as ex:
        pending = collections.deque()
        for p in positions:
            pending.append(ex.submit(fn, p))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Loader:
    """Iterator of batches; ``step`` is the index of the next batch (resume with
    ``make_loader(..., start_step=loader.step)``); ``steps_per_epoch`` is a float."""

    def __init__(self, batches, start_step, steps_per_epoch):
        self._it, self.step, self.steps_per_epoch = iter(batches), start_step, steps_per_epoch

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._it)
        self.step += 1
        return batch


def make_loader(source, *, batch_size: int, crop_size: int = 256, load_size: int | None = 350,
                train: bool, mask_fn, seed: int = 0, num_epochs: int | None = None,
                start_step: int = 0, process_index: int = 0, process_count: int = 1,
                num_workers: int | None = None, prefetch: int = 2, backend: str = "auto") -> Loader:
    """Batches ``{"image", "hole"}`` from ``source`` (see the module docstring).

    Training: shuffled per epoch, random crop + flip, ``drop_remainder``,
    endless unless ``num_epochs``. Evaluation: source order, centre crop, last
    partial batch kept, ``num_epochs`` defaults to 1, hosts' shares may differ
    by one image. ``mask_fn(rng, (H, W))``
    gives one (H, W, 1) hole per image. ``backend``: "grain", "threads" or
    "auto" (grain if installed).
    """
    plan = _Plan(len(source), seed=seed, train=train, process_index=process_index,
                 process_count=process_count)
    num_epochs = num_epochs if num_epochs is not None or train else 1
    stop = sys.maxsize if num_epochs is None else num_epochs * plan.share
    describe = getattr(source, "describe", lambda i: f"item {i}")

    def read(idx):
        try:
            return source[idx]
        except Exception as e:  # corrupt / non-image / unreadable: skip, never fatal
            warnings.warn(f"skipping unreadable image {describe(idx)}: {type(e).__name__}: {e}",
                          RuntimeWarning, stacklevel=2)
            return None

    def element(pos):
        epoch, slot = divmod(pos, plan.share)
        order = plan.order(epoch)
        for k in range(plan.share if train else 1):  # train: next image of this epoch takes the slot
            idx = int(order[(slot + k) % plan.share])
            img = read(idx)
            if img is not None:
                break
        else:
            if not train:
                return None
            raise RuntimeError(f"no readable image among the {plan.share} of this host's epoch")
        crop = preprocess(img, crop_size=crop_size, load_size=load_size, train=train,
                          rng=np.random.default_rng([seed, epoch, idx, 0]))
        hole = np.asarray(mask_fn(np.random.default_rng([seed, epoch, idx, 1]), (crop_size, crop_size)),
                          dtype=np.float32)
        return {"image": crop.astype(np.float32) / 127.5 - 1.0,
                "hole": hole[..., None] if hole.ndim == 2 else hole}

    # Training starts directly at the resumed position; eval (where images may
    # be dropped) recomputes and skips ``start_step`` batches.
    first = start_step * batch_size if train else 0
    workers = num_workers or min(8, os.cpu_count() or 1)
    if backend == "auto":
        backend = "grain" if importlib.util.find_spec("grain") else "threads"
    if backend == "grain":
        import grain
        it = (grain.MapDataset.range(first, stop).map(element)
              .to_iter_dataset(grain.ReadOptions(num_threads=workers,
                                                 prefetch_buffer_size=max(1, prefetch) * batch_size))
              .batch(batch_size, drop_remainder=train, batch_fn=_stack))
    elif backend == "threads":
        elems = (e for e in _threaded(element, range(first, stop), workers, max(1, prefetch) * batch_size)
                 if e is not None)
        chunks = iter(lambda: list(itertools.islice(elems, batch_size)), [])
        it = (_stack(c) for c in chunks if len(c) == batch_size or (c and not train))
    else:
        raise ValueError(f"unknown backend {backend!r}")
    batches = iter(it) if train else itertools.islice(iter(it), start_step, None)
    return Loader(batches, start_step, plan.share / batch_size)


def make_source(cfg, train: bool):
    """The source named by ``cfg.source`` for the train or eval split."""
    kind = cfg.get("source", "sample")
    split = cfg.get("train_split" if train else "eval_split", None)
    if kind == "sample":
        return SampleSource("train" if train else "test")
    if kind in ("folder", "paris"):
        if not cfg.get("dir"):
            raise ValueError(f"data.source={kind!r} needs data.dir")
        return FolderSource(cfg.get("dir"), split="train" if train else "test", subdir=split)
    if kind in ("tfds", "places"):
        name = cfg.get("name", None) or "places365_small"
        classes = cfg.get("classes", None)
        classes = list(PLACES_SCENES) if classes is None and kind == "places" else classes
        return TfdsSource(name, split or ("train" if train else "validation"), data_dir=cfg.get("dir", None) or None,
                          classes=list(classes) if classes else None, cache_dir=cfg.get("cache_dir", None) or None)
    raise ValueError(f"unknown data.source {kind!r} (sample, folder, paris, tfds, places)")


def from_config(cfg, *, train: bool, batch_size: int | None = None, mask_fn=None, seed: int | None = None,
                start_step: int = 0, num_epochs: int | None = None, process_index: int | None = None,
                process_count: int | None = None, source=None) -> Loader:
    """A loader from ``config.data`` (ConfigDict or dict). Fields read:

    ``source`` ("sample" | "folder" | "paris" | "tfds" | "places"), ``dir``
    (image folder, or TFDS data_dir), ``name`` (TFDS name, default
    places365_small), ``classes`` (TFDS class filter; "places" defaults to
    :data:`PLACES_SCENES`), ``train_split`` / ``eval_split`` (subfolder or TFDS
    split; defaults train / test-like folder, or train / validation),
    ``cache_dir``, ``load_size`` (350), ``crop_size`` (256), ``batch_size``,
    ``mask`` (spec for ``masks.make_mask_fn``, default "center"), ``seed``,
    ``num_workers``, ``prefetch``. Keyword arguments override the config;
    process index/count default to JAX's.
    """
    if not hasattr(cfg, "get"):
        raise TypeError("cfg must be a ConfigDict or dict")
    if mask_fn is None:
        from shiftnet_jax import masks
        spec = cfg.get("mask", "center")
        mask_fn = masks.make_mask_fn(spec.to_dict() if hasattr(spec, "to_dict") else spec)
    if process_index is None or process_count is None:
        import jax
        process_index, process_count = jax.process_index(), jax.process_count()
    return make_loader(
        source if source is not None else make_source(cfg, train),
        batch_size=batch_size or cfg.get("batch_size", 1), crop_size=cfg.get("crop_size", 256),
        load_size=cfg.get("load_size", 350), train=train, mask_fn=mask_fn,
        seed=cfg.get("seed", 0) if seed is None else seed, num_epochs=num_epochs, start_step=start_step,
        process_index=process_index, process_count=process_count,
        num_workers=cfg.get("num_workers", None), prefetch=cfg.get("prefetch", 2))
