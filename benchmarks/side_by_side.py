"""The official PyTorch code beside ours: run ``benchmarks/reference_torch.py``, compare.

The reference runs in its own interpreter (a Python with torch, ``--reference-python``)
on the same machine and CPUs (it inherits the CPU pinning), before JAX touches the
device, once per image size. :func:`compare` gives our / their images/s for
inference per batch and for the training step.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import ROOT, has_nvidia_gpu

TRAINING_NOTE = (
    "not the same computation: the reference step runs G twice (ground truth for the "
    "InnerCos target + masked input) and adds VGG16 style/content losses and a discounted "
    "hole L1; ours runs the guidance target on the encoder levels only, one G forward, "
    "L1 + guidance + adversarial (the paper's losses)")


def add_arguments(p):
    p.add_argument("--reference", default=None, help="Shift-Net_pytorch checkout: side-by-side")
    p.add_argument("--reference-python", default=sys.executable,
                   help="python with torch for benchmarks/reference_torch.py")
    p.add_argument("--reference-json", default=None,
                   help="use this earlier reference_torch.py JSON instead of running it")
    p.add_argument("--reference-batches", default="1,8")
    p.add_argument("--reference-repeats", type=int, default=None,
                   help="inference repeats of the reference (default: --repeats)")
    p.add_argument("--reference-train-repeats", type=int, default=5)
    p.add_argument("--reference-timeout", type=float, default=None,
                   help="seconds each reference run may take (default: no limit)")


def run_reference(args) -> dict:
    """{str(size): reference_torch.py's JSON (+ ok, command, wall_s) or a failure}."""
    if args.reference_json:
        ref = json.loads(Path(args.reference_json).read_text())
        return {str(ref.get("size")): ref}
    device = args.device if args.device != "auto" else ("cuda" if has_nvidia_gpu() else "cpu")
    results = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ref.json"
            cmd = [args.reference_python, "-m", "benchmarks.reference_torch",
                   "--ref", str(Path(args.reference).resolve()), "--device", device,
                   "--ngf", str(args.ngf), "--size", str(size), "--batch", args.reference_batches,
                   "--warmup", str(args.warmup),
                   "--repeats", str(args.reference_repeats or args.repeats),
                   "--train-batch", "1", "--train-repeats", str(args.reference_train_repeats),
                   "--json", str(out)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            print("reference:", shlex.join(cmd), flush=True)
            t0 = time.perf_counter()
            try:   # inherits the CPU affinity
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False,
                                      timeout=args.reference_timeout)
            except subprocess.TimeoutExpired:
                results[str(size)] = {"ok": False, "command": shlex.join(cmd),
                                      "error": f"timed out after {args.reference_timeout} s"}
                continue
            if proc.returncode or not out.exists():
                results[str(size)] = {"ok": False, "command": shlex.join(cmd),
                                      "error": (proc.stderr or proc.stdout)[-3000:]}
                print(f"reference at {size} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            ref = json.loads(out.read_text())
            ref.update(ok=True, command=shlex.join(cmd), wall_s=time.perf_counter() - t0)
            print(proc.stdout, flush=True)
            results[str(size)] = ref
    return results


def _ratio(ours: dict, theirs: float) -> dict:
    return {"ours_images_per_s": ours["images_per_s"], "reference_images_per_s": theirs,
            "ratio": ours["images_per_s"] / theirs}


def compare(results, reference) -> dict:
    """our / their images/s for inference (per batch) and training (batch 1 and our best)."""
    out = {}
    for size_key, ref in reference.items():
        if not ref.get("ok", True) or "batches" not in ref:
            continue
        ours = [r for r in results if r.get("ok") and r.get("size") == int(size_key)]
        infer = [r for r in ours if r["kind"] == "infer"]
        trains = [r for r in ours if r["kind"] == "train"]
        entry = {"reference_commit": ref.get("commit"), "reference_threads": ref.get("threads"),
                 "inference": {}, "training": {}}
        for b, rr in ref["batches"].items():
            same = [r for r in infer if r["batch"] == int(b)]
            f32 = [r for r in same if r["dtype"] == "float32"]
            if f32:
                entry["inference"][f"batch_{b}"] = _ratio(f32[0], rr["images_per_s"])
            if same:
                top = max(same, key=lambda r: r["images_per_s"])
                if top["dtype"] != "float32":
                    entry["inference"][f"batch_{b}_best_dtype"] = {
                        "dtype": top["dtype"], "ratio": top["images_per_s"] / rr["images_per_s"]}
        tr = ref.get("train")
        if tr and trains:
            b1 = [r for r in trains if r["batch"] == tr["batch"] and r["dtype"] == "float32"]
            if b1:
                entry["training"][f"batch_{tr['batch']}_float32"] = _ratio(b1[0], tr["images_per_s"])
            top = max(trains, key=lambda r: r["images_per_s"])
            entry["training"]["ours_best"] = {"batch": top["batch"], "dtype": top["dtype"],
                                              **_ratio(top, tr["images_per_s"])}
            entry["training"]["note"] = TRAINING_NOTE
        out[size_key] = entry
    return out


def print_comparison(comparison):
    for size, c in comparison.items():
        print(f"\nside-by-side at {size} (ours / reference, images/s):")
        for k, v in c["inference"].items():
            if "ours_images_per_s" in v:
                print(f"  inference {k:<10} {v['ours_images_per_s']:9.2f} / "
                      f"{v['reference_images_per_s']:9.2f} = {v['ratio']:.2f}x")
            else:
                print(f"  inference {k:<10} ({v['dtype']}) {v['ratio']:.2f}x")
        for k, v in c["training"].items():
            if isinstance(v, dict):
                extra = f" (batch {v['batch']} {v['dtype']})" if "batch" in v else ""
                print(f"  training {k:<18}{extra} {v['ours_images_per_s']:9.2f} / "
                      f"{v['reference_images_per_s']:9.2f} = {v['ratio']:.2f}x")
