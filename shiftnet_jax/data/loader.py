"""Host-side input pipeline: augmentation, masks, batching of an image source.

Batches are dicts ``{"image": (B,H,W,3) float32 in [-1, 1], "hole": (B,H,W,1)
float32, 1 = missing}``. Decoding, resizing and masks run on the host in
worker threads (PIL and NumPy release the GIL), a few batches ahead of the
training step. Sources (sample photos, folders, TFDS) are in
:mod:`shiftnet_jax.data.sources`.

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
import importlib.util
import itertools
import os
import sys
import threading
import warnings

import numpy as np
from PIL import Image

from shiftnet_jax.data import image_io, masks, sources


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
               rng: np.random.Generator | None = None, scale_range=None) -> np.ndarray:
    """uint8 image -> uint8 (crop, crop, 3): resize shorter side to ``load_size``
    (at least ``crop_size``; in training times a random factor from ``scale_range``
    if given), then a random crop + random h-flip (train) or the centre crop (eval)."""
    load = load_size or min(img.shape[:2])
    if train and scale_range:
        load = round(load * float(rng.uniform(*scale_range)))
    img = resize_shorter(img, max(crop_size, load))
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
                num_workers: int | None = None, prefetch: int = 2, backend: str = "auto",
                scale_range=None) -> Loader:
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
                          rng=np.random.default_rng([seed, epoch, idx, 0]), scale_range=scale_range)
        hole = np.asarray(mask_fn(np.random.default_rng([seed, epoch, idx, 1]), (crop_size, crop_size)),
                          dtype=np.float32)
        return {"image": image_io.from_uint8(crop),
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
        spec = cfg.get("mask", "center")
        mask_fn = masks.make_mask_fn(spec.to_dict() if hasattr(spec, "to_dict") else spec)
    if process_index is None or process_count is None:
        import jax
        process_index, process_count = jax.process_index(), jax.process_count()
    return make_loader(
        source if source is not None else sources.make_source(cfg, train),
        batch_size=batch_size or cfg.get("batch_size", 1), crop_size=cfg.get("crop_size", 256),
        load_size=cfg.get("load_size", 350), train=train, mask_fn=mask_fn,
        seed=cfg.get("seed", 0) if seed is None else seed, num_epochs=num_epochs, start_step=start_step,
        process_index=process_index, process_count=process_count,
        num_workers=cfg.get("num_workers", None), prefetch=cfg.get("prefetch", 2),
        scale_range=tuple(cfg.get("scale_range", ())) or None)
