"""Bounded local load test of the studio: N requests from M concurrent clients, on 127.0.0.1 only.

    python benchmarks/studio_load.py --model paper --requests 64 --clients 8
    python benchmarks/studio_load.py --model tiny --requests 400 --clients 16
    python benchmarks/studio_load.py --ckpt runs/sample --requests 100 --clients 4

Starts ``serve.py`` on a free port of 127.0.0.1 (a subprocess, as a user would run
it), uploads real photographs (JPEG bytes as they are) with random holes to
``POST /api/inpaint``, and checks every answer byte for byte against the library
(``inpaint_image`` + PNG encoding, computed here). One warm-up request per
working size first (compilation), not counted. Stops after N requests or
``--max-seconds``, whichever comes first, and stops the server.
Prints p50/p90/p99/max latency, throughput and errors; ``--json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
MODELS = {"tiny": dict(ngf=4, num_downs=5, crop=64), "paper": dict(ngf=64, num_downs=8, crop=256)}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="checkpoint to serve (default: untrained weights of --model)")
    p.add_argument("--model", choices=sorted(MODELS), default="paper",
                   help="architecture for untrained weights (speed does not depend on training)")
    p.add_argument("--requests", type=int, default=64, help="N: requests in all (default 64)")
    p.add_argument("--clients", type=int, default=8, help="M: concurrent clients (default 8)")
    p.add_argument("--inputs", type=int, default=8, help="distinct (photo, hole) pairs, cycled")
    p.add_argument("--max-seconds", type=float, default=300, help="stop sending after this long")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if min(args.requests, args.clients, args.inputs) < 1 or args.max_seconds <= 0:
        p.error("--requests, --clients, --inputs and --max-seconds must be positive")
    return args


def untrained(kind: str, out: Path) -> Path:
    import jax
    import jax.numpy as jnp

    from shiftnet_jax import checkpoint
    from shiftnet_jax.nets.generator import ShiftNetGenerator

    spec = MODELS[kind]
    model = ShiftNetGenerator(ngf=spec["ngf"], num_downs=spec["num_downs"])
    shape = (1, spec["crop"], spec["crop"])
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros(shape + (3,)),
                                    jnp.zeros(shape + (1,)))
    checkpoint.export_generator(out, {"ngf": spec["ngf"], "num_downs": spec["num_downs"]}, variables,
                                config={"data": {"crop_size": spec["crop"]}})
    return out


def inputs(n: int, seed: int = 0) -> list[tuple[str, bytes, bytes]]:
    """``n`` (name, photo bytes, mask PNG bytes): real photographs, random rectangle + stroke holes."""
    import cv2

    from shiftnet_jax.data import image_io, sources
    from shiftnet_jax.studio.engine import encode_png

    paths = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    paths = paths or [Path(p) for p in sources.SampleSource("train").paths]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = paths[i % len(paths)]
        h, w = image_io.decode_image(str(path)).shape[:2]
        mask = np.zeros((h, w), np.uint8)
        y, x = int(rng.integers(0, h * 3 // 4)), int(rng.integers(0, w * 3 // 4))
        mask[y:y + h // 5, x:x + w // 5] = 255
        pts = rng.integers(0, [w, h], size=(4, 2)).astype(np.int32)
        cv2.polylines(mask, [pts], False, 255, thickness=max(3, min(h, w) // 25))
        out.append((path.name, path.read_bytes(), encode_png(mask)))
    return out


def expected(ckpt: str, pairs) -> list[bytes]:
    """What the server must answer: the library's output, PNG-encoded the same way."""
    from shiftnet_jax.studio import engine

    (m,) = engine.load_models([ckpt])
    result = []
    for _, image, mask in pairs:
        img = engine.decode_image(image, 10**9)
        result.append(engine.encode_png(engine.run_inpaint(m.model, m.variables, img,
                                                           engine.decode_mask(mask, img.shape[:2], 10**9),
                                                           m.size, 0)))
    return result


def start_server(ckpt: str):
    proc = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), "--ckpt", ckpt, "--host", "127.0.0.1",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("Shift-Net studio on http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"error: the server did not start: {line.strip()} {proc.stderr.read().strip()}")
    return proc, line.split()[3]


def main(argv=None) -> int:
    args = parse(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    import httpx

    with tempfile.TemporaryDirectory(prefix="studio-load-") as tmp:
        ckpt = args.ckpt or str(untrained(args.model, Path(tmp) / args.model))
        pairs = inputs(args.inputs)
        want = expected(ckpt, pairs)
        proc, url = start_server(ckpt)
        try:
            return run(args, url, pairs, want, httpx)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def run(args, url, pairs, want, httpx) -> int:
    def post(client, i):
        name, image, mask = pairs[i % len(pairs)]
        t = time.perf_counter()
        try:
            r = client.post("/api/inpaint", files={"image": (name, image), "mask": ("m.png", mask)})
        except httpx.HTTPError as e:
            return None, f"{type(e).__name__}: {e}"
        outcome = "ok" if r.status_code == 200 and r.content == want[i % len(pairs)] else (
            "mismatch" if r.status_code == 200 else f"HTTP {r.status_code}: {r.text[:200]}")
        return time.perf_counter() - t, outcome

    with httpx.Client(base_url=url, timeout=600) as warm:  # compile each working size once
        for i in range(len(pairs)):
            post(warm, i)
    records, lock = [], threading.Lock()
    counter = iter(range(args.requests))
    deadline = time.monotonic() + args.max_seconds

    def client_loop(_):
        with httpx.Client(base_url=url, timeout=600) as client:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                record = post(client, i)
                with lock:
                    records.append(record)

    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client_loop, range(args.clients)))
    wall = time.perf_counter() - start
    ms = np.asarray([s for s, _ in records if s is not None] or [np.nan]) * 1000
    errors = [o for _, o in records if o not in ("ok", "mismatch")]
    report = {
        "model": args.ckpt or args.model, "requests": len(records), "clients": args.clients,
        "errors": len(errors), "mismatches": sum(o == "mismatch" for _, o in records),
        "wall_s": round(wall, 2), "throughput_rps": round(len(records) / wall, 2),
        **{f"p{q}_ms": round(float(np.percentile(ms, q)), 1) for q in (50, 90, 99)},
        "max_ms": round(float(np.max(ms)), 1), "cores": _cores(),
    }
    print(" ".join(f"{k}={v}" for k, v in report.items()))
    for e in sorted(set(errors))[:5]:
        print(f"  error: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if errors or report["mismatches"] else 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
