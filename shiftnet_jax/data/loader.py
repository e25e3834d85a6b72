"""Host-side input pipeline: augmentation, masks, batching of an image source.

Batches are dicts ``{"image": (B,H,W,3), "hole": (B,H,W,1)}``, hole 1 = missing:
with ``dtype="float32"`` (the default) image in [-1, 1] and hole float32; with
``dtype="uint8"`` the raw pixels 0..255 and a 0/1 uint8 hole, a quarter of the
bytes, converted on the device by the training step (:func:`to_float` works on
NumPy and JAX arrays alike). Decoding, resizing and masks run in worker
processes (``backend="processes"``: no shared interpreter lock, batches
assembled in shared memory, :mod:`shiftnet_jax.data.workers`) or threads,
a few batches ahead of the training step. Sources (sample photos, folders,
TFDS) are in :mod:`shiftnet_jax.data.sources`, crops in
:mod:`shiftnet_jax.data.augment`.

Determinism: epoch ``e`` visits ``permutation_e = rng(seed, e)`` of the
images; host ``p`` of ``P`` takes every P-th entry (training drops the last
``len % P`` of each epoch, so hosts get equal, disjoint shares). Element ``k``
of a host's stream is ``(epoch, slot) = divmod(k, share)``; its crop, flip and
mask come from rngs seeded by ``(seed, epoch, image index)``, never from thread
timing. Batch ``s`` is elements ``[s*B, (s+1)*B)`` (batches may span epochs),
so ``start_step`` resumes exactly. An unreadable image is skipped with a
warning: in training the next image of the host's epoch order takes its slot
(this keeps the step -> data map exact); in evaluation it is dropped. Every
backend yields the same batches.

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

from shiftnet_jax.data import image_io, masks, sources, workers
from shiftnet_jax.data.augment import crop_image, min_decode_side, preprocess, resize_shorter
from shiftnet_jax.errors import UserError, escaped, first_line, one_line

__all__ = ["Loader", "from_config", "make_loader", "preprocess", "resize_shorter", "to_float"]
BACKENDS = ("auto", "processes", "grain", "threads")
# Unreadable images tried in a row (training) before the run is refused in one line.
MAX_SKIPPED = 64


def to_float(batch: dict) -> dict:
    """A uint8 batch -> image float32 in [-1, 1], hole float32 (float entries pass
    through); NumPy or JAX arrays (the training step calls it under ``jit``)."""
    out = dict(batch)
    for key, scale in (("image", True), ("hole", False)):
        x = batch[key]
        if np.issubdtype(x.dtype, np.integer):
            out[key] = image_io.from_uint8(x) if scale else x.astype(np.float32)
    return out


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

    def __getstate__(self):  # pickled into worker processes: without the lock and cache
        return {k: v for k, v in self.__dict__.items() if k not in ("_cache", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state, _cache=collections.OrderedDict(), _lock=threading.Lock())

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


class Elements:
    """Stream position -> ``(image uint8 (C, C, 3), hole uint8 (C, C, 1))``, or None for an
    image dropped in evaluation. Picklable (with cloudpickle) into worker processes."""

    def __init__(self, source, plan: _Plan, *, crop_size, load_size, train, mask_fn, seed, scale_range):
        self.source, self.plan, self.mask_fn, self.seed, self.train = source, plan, mask_fn, seed, train
        self.crop = dict(crop_size=crop_size, load_size=load_size, train=train, scale_range=scale_range)
        # Reduced-scale JPEG decoding in training only: evaluation scores the full decode,
        # the same pixels as eval.py, inpainting and the studio read.
        self.min_side = (min_decode_side(crop_size=crop_size, load_size=load_size, scale_range=scale_range)
                         if train else None)
        self.opens_files = hasattr(source, "open_image")

    def read(self, idx):
        """Image ``idx`` -> (an RGB PIL image, None), or (None, why) when it is unreadable."""
        try:
            if self.opens_files:
                return self.source.open_image(idx, self.min_side), None
            return Image.fromarray(np.asarray(self.source[idx], np.uint8)), None
        except Exception as e:  # corrupt / non-image / oversized / unreadable: skip, never fatal
            name = escaped(getattr(self.source, "describe", lambda i: f"item {i}")(idx))
            why = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {first_line(e)}"
            why = why.removeprefix(f"{name}: ")  # image_io's messages start with the name
            return None, f"{name}: {one_line(why)}"

    def __call__(self, pos):
        plan = self.plan
        epoch, slot = divmod(pos, plan.share)
        order = plan.order(epoch)
        # Train: the next image of this epoch takes an unreadable one's slot, up to MAX_SKIPPED
        # in a row (a folder of bad files is refused at once, not after reading all of it).
        tries = min(plan.share, MAX_SKIPPED) if self.train else 1
        skipped = []
        for k in range(tries):
            idx = int(order[(slot + k) % plan.share])
            im, why = self.read(idx)
            if im is not None:
                break
            skipped.append(why)
        else:
            if self.train:  # one line, no warnings before it
                some = "all" if tries == plan.share else "the first"
                raise UserError(f"no readable image: {some} {tries} of this host's epoch "
                                f"({plan.share} images) are unreadable; the first: {skipped[0]}")
        for why in skipped:
            warnings.warn(f"skipping unreadable image {why}", RuntimeWarning, stacklevel=2)
        if im is None:
            return None
        size = self.crop["crop_size"]
        crop = crop_image(im, rng=np.random.default_rng([self.seed, epoch, idx, 0]), **self.crop)
        hole = np.asarray(self.mask_fn(np.random.default_rng([self.seed, epoch, idx, 1]), (size, size)))
        hole = (hole > 0.5).view(np.uint8)
        return crop, hole[..., None] if hole.ndim == 2 else hole


def _stack(examples):
    return {"image": np.stack([e[0] for e in examples]), "hole": np.stack([e[1] for e in examples])}


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
    ``make_loader(..., start_step=loader.step)``); ``steps_per_epoch`` is a float;
    ``backend`` the one in use."""

    def __init__(self, batches, start_step, steps_per_epoch, backend="threads", on_close=None):
        self._it, self.step, self.steps_per_epoch, self.backend = iter(batches), start_step, steps_per_epoch, backend
        self._on_close = on_close

    def __iter__(self):
        return self

    def __next__(self):
        batch = next(self._it)
        self.step += 1
        return batch

    def close(self):
        """Stop the workers now (they also stop when the loader is garbage-collected)."""
        if self._on_close is not None:
            self._on_close()


def make_loader(source, *, batch_size: int, crop_size: int = 256, load_size: int | None = 350,
                train: bool, mask_fn, seed: int = 0, num_epochs: int | None = None,
                start_step: int = 0, process_index: int = 0, process_count: int = 1,
                num_workers: int | None = None, prefetch: int = 2, backend: str = "auto",
                scale_range=None, dtype: str = "float32") -> Loader:
    """Batches ``{"image", "hole"}`` from ``source`` (see the module docstring).

    Training: shuffled per epoch, random crop + flip, ``drop_remainder``,
    endless unless ``num_epochs``. Evaluation: source order, centre crop, last
    partial batch kept, ``num_epochs`` defaults to 1, hosts' shares may differ
    by one image. ``mask_fn(rng, (H, W))`` gives one (H, W, 1) hole per image.
    ``dtype``: "float32" or "uint8" (see the module docstring). ``backend``:
    "processes", "grain" (threads), "threads" or "auto": processes for training
    with ``num_workers`` >= 2 (default: the cores, at most 16), else grain if
    installed, else threads.
    """
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")
    plan = _Plan(len(source), seed=seed, train=train, process_index=process_index,
                 process_count=process_count)
    num_epochs = num_epochs if num_epochs is not None or train else 1
    stop = sys.maxsize if num_epochs is None else num_epochs * plan.share
    element = Elements(source, plan, crop_size=crop_size, load_size=load_size, train=train,
                       mask_fn=mask_fn, seed=seed, scale_range=scale_range)

    # Training starts directly at the resumed position; eval (where images may
    # be dropped) recomputes and skips ``start_step`` batches.
    first = start_step * batch_size if train else 0
    num_workers = num_workers or min(16, os.cpu_count() or 1)
    chosen = backend
    if backend == "auto":
        backend = ("processes" if train and num_workers >= 2 else
                   "grain" if importlib.util.find_spec("grain") else "threads")
    window, pool = max(1, prefetch) * batch_size, None
    if backend == "processes":
        try:
            pool = workers.WorkerPool(element, num_workers=num_workers, prefetch=max(1, prefetch),
                                      batch_size=batch_size, crop_size=crop_size)
        except workers.NotPicklable as e:
            if chosen != "auto":
                raise
            warnings.warn(f"{e}; the loader uses threads", RuntimeWarning, stacklevel=2)
            backend = "grain" if importlib.util.find_spec("grain") else "threads"
    if pool is not None:
        it = ({"image": image, "hole": hole} for image, hole in
              workers.rebatch(pool.chunks(first, stop), batch_size, keep_partial=not train))
    elif backend == "grain":
        import grain
        it = (grain.MapDataset.range(first, stop).map(element)
              .to_iter_dataset(grain.ReadOptions(num_threads=num_workers, prefetch_buffer_size=window))
              .batch(batch_size, drop_remainder=train, batch_fn=_stack))
    else:
        elems = (e for e in _threaded(element, range(first, stop), num_workers, window) if e is not None)
        chunks = iter(lambda: list(itertools.islice(elems, batch_size)), [])
        it = (_stack(c) for c in chunks if len(c) == batch_size or (c and not train))
    batches = iter(it) if train else itertools.islice(iter(it), start_step, None)
    if dtype == "float32":
        batches = map(to_float, batches)
    return Loader(batches, start_step, plan.share / batch_size, backend, pool and pool.close)


def from_config(cfg, *, train: bool, batch_size: int | None = None, mask_fn=None, seed: int | None = None,
                start_step: int = 0, num_epochs: int | None = None, process_index: int | None = None,
                process_count: int | None = None, source=None, dtype: str = "float32") -> Loader:
    """A loader from ``config.data`` (ConfigDict or dict). Fields read:

    ``source`` ("sample" | "folder" | "paris" | "tfds" | "places"), ``dir``
    (image folder, or TFDS data_dir), ``name`` (TFDS name, default
    places365_small), ``classes`` (TFDS class filter; "places" defaults to
    :data:`PLACES_SCENES`), ``train_split`` / ``eval_split`` (subfolder or TFDS
    split; defaults train / test-like folder, or train / validation),
    ``cache_dir``, ``load_size`` (350), ``crop_size`` (256), ``batch_size``,
    ``mask`` (spec for ``masks.make_mask_fn``, default "center"), ``seed``,
    ``num_workers``, ``prefetch``, ``backend``. Keyword arguments override the config;
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
        scale_range=tuple(cfg.get("scale_range", ())) or None, dtype=dtype,
        backend=cfg.get("backend", "auto"))
