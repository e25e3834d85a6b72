"""Loader benchmark: does the host input pipeline feed an accelerator, and how does it scale?

One run prints, side by side, on the same 256x256 JPEGs (cut from the photos
in ../shared/data/photos into a temporary folder; Places365-small's
format), ``load_size`` 350, ``crop_size`` 256, centre holes, batch 8:

* ``bare``: a single-thread loop, PIL decode -> bicubic resize to 350 ->
  random crop -> float (the reference rate of one core);
* the per-image profile of one loader element (decode, RNG set-up, box
  resize, flip, mask) and its *interpreter-bound share* ``s``: the time
  outside the C calls that release the GIL (PIL's decode and resize, NumPy's
  copies), i.e. the part that threads serialise. Amdahl: threads reach at
  most ``1 / (s + (1 - s) / N)`` x one worker on N cores; processes reach
  N - 1 workers (a core left to the training step) until the parent's
  per-image copy-out bounds them;
* the loader (uint8 batches) at 1, 2, ..., N workers, processes and threads;
* large JPEGs: the photos themselves (1024 px
  and more) with and without JPEG draft decoding;
* how many cores this session can use now (N spinning processes against one:
  a loaded or session-scheduled machine gives fewer than N);
* the loader feeding the real jitted training step (a small generator on this
  CPU; the paper's on a GPU), against the step alone.

Usage::

    python benchmarks/loader_bench.py [--images 416] [--max-workers N] [--json loader_bench.json]

Numbers on a shared machine are rough: the script records ``os.getloadavg()``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shiftnet_jax.data import augment, image_io, masks, sources  # noqa: E402
from shiftnet_jax.data import loader as data  # noqa: E402

LOAD, CROP, BATCH = 350, 256, 8


def photo_paths(folder: str | None) -> list[str]:
    """The photos: ``folder``, else shared/data/photos beside or above the checkout, else
    scikit-image's sample photos."""
    if folder:
        paths = image_io.list_images(folder)
        if not paths:
            raise SystemExit(f"error: no images in {folder}")
        return paths
    for d in ROOT.parents:
        if (d / "shared" / "data" / "photos").is_dir():
            return image_io.list_images(d / "shared" / "data" / "photos")
    return sources.SampleSource("train").paths + sources.SampleSource("test").paths


def make_jpegs(paths: list[str], out: Path, count: int) -> list[str]:
    """``count`` 256x256 JPEG crops (quality 90) of the photos, at seeded random places."""
    rng = np.random.default_rng(0)
    images = [Image.open(p).convert("RGB") for p in paths]
    files = []
    for k in range(count):
        im = images[k % len(images)]
        x, y = int(rng.integers(0, im.width - 255)), int(rng.integers(0, im.height - 255))
        files.append(str(out / f"{k:04d}.jpg"))
        im.crop((x, y, x + 256, y + 256)).save(files[-1], quality=90)
    return files


def bare_rate(files, repeats=2) -> float:
    """Images/s of the single-thread reference loop (decode, resize, random crop, float)."""
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(repeats):
        for f in files:
            img = augment.resize_shorter(np.asarray(Image.open(f).convert("RGB")), LOAD)
            y, x = int(rng.integers(0, img.shape[0] - CROP + 1)), int(rng.integers(0, img.shape[1] - CROP + 1))
            img[y:y + CROP, x:x + CROP].astype(np.float32) / 127.5 - 1.0
    return repeats * len(files) / (time.perf_counter() - t0)


def profile_element(files, mask_fn, min_side=LOAD) -> dict:
    """Per-image microseconds of the loader element's parts (thread CPU time), the ones in
    GIL-releasing C calls marked; ``held_share`` is the rest's share of the total."""
    parts = dict.fromkeys(("open+header", "decode*", "exif+rgb", "rng", "box resize*", "flip+array*",
                           "mask", "total"), 0.0)
    clock = time.thread_time
    for i, f in enumerate(files):
        t = [clock()]
        im = Image.open(f)
        if min_side and im.format == "JPEG":
            im.draft("RGB", (min_side, min_side))
        t.append(clock())
        im.load()
        t.append(clock())
        im = image_io.to_rgb_image(ImageOps.exif_transpose(im))
        t.append(clock())
        rng = np.random.default_rng([0, 0, i, 0])
        t.append(clock())
        w, h = im.size
        width, height = augment.resized_size(w, h, LOAD)
        y, x, flip = int(rng.integers(0, height - CROP + 1)), int(rng.integers(0, width - CROP + 1)), rng.random() < .5
        sx, sy = w / width, h / height
        out = im.resize((CROP, CROP), Image.BICUBIC, box=(x * sx, y * sy, (x + CROP) * sx, (y + CROP) * sy))
        t.append(clock())
        out = np.asarray(out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out)
        t.append(clock())
        hole = np.asarray(mask_fn(np.random.default_rng([0, 0, i, 1]), (CROP, CROP)))
        (hole > 0.5).view(np.uint8)
        t.append(clock())
        for name, dt in zip(parts, np.diff(t)):
            parts[name] += dt
        parts["total"] += t[-1] - t[0]
    us = {k: v / len(files) * 1e6 for k, v in parts.items()}
    released = sum(v for k, v in us.items() if k.endswith("*"))
    us["held_share"] = 1.0 - released / us["total"]
    return us


def before_element_us(files, mask_fn) -> float:
    """Thread CPU us per image of the element as it was before the box resize and uint8
    batches: decode to an array, resize the whole image, cut, float image and hole."""
    t0 = time.thread_time()
    for i, f in enumerate(files):
        img = augment.resize_shorter(image_io.decode_image(f), LOAD)
        rng = np.random.default_rng([0, 0, i, 0])
        y, x = int(rng.integers(0, img.shape[0] - CROP + 1)), int(rng.integers(0, img.shape[1] - CROP + 1))
        out = img[y:y + CROP, x:x + CROP]
        np.ascontiguousarray(out[:, ::-1] if rng.random() < .5 else out).astype(np.float32) / 127.5 - 1.0
        np.asarray(mask_fn(np.random.default_rng([0, 0, i, 1]), (CROP, CROP)), np.float32)
    return (time.thread_time() - t0) / len(files) * 1e6


SPIN = "import time\nt, n = time.perf_counter(), 0\nwhile time.perf_counter() - t < {s}: n += 1\nprint(n)"


def usable_cores(n: int, seconds: float = 2.0) -> float:
    """How many cores this process can use now: total work of ``n`` spinning processes over
    that of one (a shared or session-scheduled machine gives far less than ``n``)."""
    import subprocess

    def work(k):
        procs = [subprocess.Popen([sys.executable, "-c", SPIN.format(s=seconds)], stdout=subprocess.PIPE, text=True)
                 for _ in range(k)]
        return sum(int(p.communicate()[0]) for p in procs)
    return work(n) / max(1, work(1))


def amdahl(share: float, n: int) -> float:
    return 1.0 / (share + (1.0 - share) / n)


def loader_rate(src, mask_fn, *, backend, workers, batches, min_batches=3) -> tuple[float, float, float]:
    """(images/s, seconds to the first batch, this process's CPU seconds per image) of a uint8
    loader (for processes that is the parent's copy-out; for threads it includes the workers)."""
    t0 = time.perf_counter()
    it = data.make_loader(src, batch_size=BATCH, crop_size=CROP, load_size=LOAD, train=True, mask_fn=mask_fn,
                          num_workers=workers, backend=backend, dtype="uint8")
    for _ in range(min_batches):
        next(it)  # warm up: workers started, pipelines full
    first = time.perf_counter() - t0
    c0, t1 = time.process_time(), time.perf_counter()
    for _ in range(batches):
        next(it)
    wall, cpu = time.perf_counter() - t1, time.process_time() - c0
    it.close()
    return batches * BATCH / wall, first, cpu / (batches * BATCH)


def step_rates(src, mask_fn, workers, steps, ngf) -> dict:
    """The real jitted step (generator ngf ``ngf``, 8 levels at 256) alone and fed by the loader."""
    import jax

    from shiftnet_jax.config import default_config
    from shiftnet_jax.train import parallel
    from shiftnet_jax.train import step as training

    config = default_config()
    config.model.ngf, config.discriminator.ndf = ngf, ngf
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.replicate(training.create_state(config, CROP), mesh)
    step = parallel.jit_train_step(config, mesh)
    it = data.make_loader(src, batch_size=BATCH, crop_size=CROP, load_size=LOAD, train=True, mask_fn=mask_fn,
                          num_workers=workers, dtype="uint8")
    fixed = parallel.shard_batch(next(it), mesh)
    state, scalars = step(state, fixed)  # compile
    jax.block_until_ready(scalars)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, scalars = step(state, fixed)
    jax.block_until_ready(scalars)
    alone = steps * BATCH / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, scalars = step(state, parallel.shard_batch(next(it), mesh))
    jax.block_until_ready(scalars)
    fed = steps * BATCH / (time.perf_counter() - t0)
    it.close()
    return {"ngf": ngf, "steps": steps, "step_alone": alone, "step_fed_by_loader": fed,
            "backend": it.backend, "workers": workers}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", default=None, help="folder of JPEGs (default: shared/data/photos beside "
                                                  "the checkout or above it)")
    p.add_argument("--images", type=int, default=416)
    p.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batches", type=int, default=20, help="timed batches per loader run")
    p.add_argument("--step-ngf", type=int, default=8, help="generator width for the fed-step run (0: skip)")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--json", default="loader_bench.json")
    args = p.parse_args(argv)
    photos = photo_paths(args.photos)
    mask_fn = masks.make_mask_fn("center")
    result = {"load_avg_before": os.getloadavg(), "cpu_count": os.cpu_count(), "images": args.images,
              "load_size": LOAD, "crop_size": CROP, "batch_size": BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        result["usable_cores"] = cores = usable_cores(args.max_workers)
        print(f"usable cores now: {cores:.2f} of {args.max_workers} (work of {args.max_workers} spinning "
              "processes / one; scaling past this cannot show)")
        files = make_jpegs(photos, Path(tmp), args.images)
        src = sources.FolderSource(tmp)
        result["bare"] = bare = bare_rate(files)
        print(f"bare single-thread loop (decode, resize {LOAD}, crop, float): {bare:7.1f} images/s")
        prof = result["profile"] = profile_element(files, mask_fn)
        s = prof["held_share"]
        result["before_element_us"] = before = before_element_us(files, mask_fn)
        print(f"one element before this change (whole-image resize, array round trips, float): {before:.0f} us"
              f" per image; now {prof['total']:.0f} us ({before / prof['total']:.2f}x)")
        print("one element, us per image (* = GIL released): "
              + ", ".join(f"{k} {v:.0f}" for k, v in prof.items() if k != "held_share"))
        print(f"interpreter-bound share s = {s:.3f}: threads at most {amdahl(s, 16):.1f}x one worker on 16 cores, "
              f"{amdahl(s, 32):.1f}x on 32")
        rows = []
        print(f"\n{'backend':10s} {'workers':>7s} {'images/s':>9s} {'x bare':>7s} {'first batch s':>13s} "
              f"{'process CPU us/img':>18s}")
        for backend in ("processes", "threads"):
            for n in range(1, args.max_workers + 1):
                rate, first, parent = loader_rate(src, mask_fn, backend=backend, workers=n, batches=args.batches)
                rows.append({"backend": backend, "workers": n, "images_per_s": rate, "x_bare": rate / bare,
                             "first_batch_s": first, "parent_cpu_us_per_image": parent * 1e6})
                print(f"{backend:10s} {n:7d} {rate:9.1f} {rate / bare:7.2f} {first:13.2f} {parent * 1e6:18.0f}")
        result["loader"] = rows
        one = next(r for r in rows if r["backend"] == "processes" and r["workers"] == 1)
        parent_us = one["parent_cpu_us_per_image"]
        per_worker = one["images_per_s"]
        for n, target in ((1, 0.9), (2, 1.7)):
            for r in rows:
                if r["workers"] == n:
                    print(f"target {n} worker(s) >= {target}x bare: {r['backend']} {r['x_bare']:.2f}x "
                          f"{'met' if r['x_bare'] >= target else 'NOT met'}")
        proj = {}
        per_core = 1e6 / prof["total"]  # one core's rate from the element's CPU time (robust to load)
        for cores in (16, 32):
            bound = 1e6 / max(parent_us, 1e-9)
            procs = min((cores - 1) * per_core, bound)
            procs_wall = min((cores - 1) * per_worker, bound)
            threads = amdahl(s, cores) * per_core
            proj[cores] = {"processes": procs, "processes_from_wall": procs_wall, "threads": threads}
            print(f"projection, {cores} cores: processes ~{procs:,.0f} images/s ((cores-1) x {per_core:.0f}/s "
                  f"from the element's CPU time; {procs_wall:,.0f} from the measured 1-worker rate; parent "
                  f"bound {bound:,.0f}), threads ~{threads:,.0f} (Amdahl, s={s:.3f}); 3,000/s "
                  f"{'met' if procs >= 3000 else 'NOT met'} with processes")
        result["projection"] = proj
    # Large JPEGs: the photos themselves (shorter side 256-1024+ px) with and without draft.
    big = [p for p in photos if p.lower().endswith((".jpg", ".jpeg"))]
    big_prof = {name: profile_element(big * 2, mask_fn, min_side=side)
                for name, side in (("full decode", None), ("draft", LOAD))}
    result["large_jpegs"] = {k: v["total"] for k, v in big_prof.items()}
    print("\nthe photos themselves (%d JPEGs, up to %d px): us per image, full decode %.0f, draft %.0f (%.2fx)" % (
        len(big), max(max(Image.open(f).size) for f in big), big_prof["full decode"]["total"],
        big_prof["draft"]["total"], big_prof["full decode"]["total"] / big_prof["draft"]["total"]))
    if args.step_ngf:
        with tempfile.TemporaryDirectory() as tmp:
            make_jpegs(photos, Path(tmp), 64)
            st = result["step"] = step_rates(sources.FolderSource(tmp), mask_fn, args.max_workers, args.steps,
                                             args.step_ngf)
        print(f"\njitted train step (ngf {st['ngf']}, 256x256, batch {BATCH}, this CPU): alone "
              f"{st['step_alone']:.1f} images/s, fed by the loader ({st['backend']}, {st['workers']} workers) "
              f"{st['step_fed_by_loader']:.1f} images/s")
    result["load_avg_after"] = os.getloadavg()
    print(f"\nload average before {result['load_avg_before']}, after {result['load_avg_after']} "
          f"on {os.cpu_count()} cores")
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
