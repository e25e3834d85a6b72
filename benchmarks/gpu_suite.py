"""One command for a GPU: the figures of BENCHMARKS.md's GPU section, or a model in M minutes.

Run through ``benchmarks/gpu_suite.sh`` (from anywhere)::

    benchmarks/gpu_suite.sh                  # OUT/gpu_suite.json + OUT/gpu_suite.md, <= 8 min
    benchmarks/gpu_suite.sh --train configs/learning.py --minutes 5 [--photos DIR] \\
        [--config.KEY=VALUE ...]             # OUT/generator/ (float16, <= 16 MB per file)
    benchmarks/gpu_suite.sh --dry-run [--train ...]    # the same on CPU, tiny, seconds

The benchmark, in this order, each case skipped once ``--budget-minutes`` have passed:

1. the official PyTorch code on the same device (``benchmarks/reference_torch.py``),
   where ``--reference`` (default ``ref/Shift-Net_pytorch``) exists and
   ``--reference-python`` can import torch; otherwise recorded as skipped, with why;
2. generator inference: batch 1, 8, 64; float32 and bfloat16; 256 and 512;
3. the training step of the paper's config at 256: batch 1, 8, 32, 64, both dtypes,
   achieved TFLOP/s against the device's peak (``benchmarks/measure.py``), and the
   loader feeding the step (``keeps_up``);
4. peak device memory (``peak_bytes_in_use``) per case (the process high-water mark
   so far, cases in increasing size) and at the end; XLA's temp bytes per case.

``--dry-run``: CPU, ngf 4, 5 levels, 32x32, batches 1-2, 1-2 repeats; ``--train``
with it trains the tiny model and writes shards of 50 kB, so every path runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import bench, machine, measure, report, side_by_side, train_budget
from benchmarks.cases import REGISTRY
from shiftnet_jax.train.loop import TrainingDiverged

FULL = {"model": ["--ngf", "64", "--num-downs", "8"], "infer_sizes": "256,512",
        "infer_batches": "1,8,64", "train_size": "256", "train_batches": "1,8,32,64",
        "train_dtypes": "float32,bfloat16",
        "timing": ["--repeats", "10", "--warmup", "2", "--train-repeats", "5",
                   "--loader-steps", "5"], "max_file_bytes": train_budget.MAX_FILE_BYTES}
DRY = {"model": ["--ngf", "4", "--num-downs", "5", "--conv-impl", "lax", "--quick"],
       "infer_sizes": "32", "infer_batches": "1,2", "train_size": "32", "train_batches": "2",
       "train_dtypes": "float32",   # compiling a training step is most of the dry run
       "timing": ["--repeats", "2", "--warmup", "1", "--train-repeats", "2",
                  "--loader-steps", "1"], "max_file_bytes": 50_000}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="output folder (default bench_out/gpu_<time>)")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: seconds")
    p.add_argument("--budget-minutes", type=float, default=7.5,
                   help="cases not started by then are skipped (the suite's limit: 8 min)")
    p.add_argument("--reference", default="ref/Shift-Net_pytorch")
    p.add_argument("--reference-python", default=None,
                   help="python with torch (default: $REFPY, .venv-ref/bin/python, this one)")
    p.add_argument("--reference-json", default=None, help="an earlier reference_torch.py JSON")
    p.add_argument("--train", default=None, metavar="CONFIG", help="train CONFIG instead")
    p.add_argument("--minutes", type=float, default=5.0, help="--train: the wall-clock budget")
    p.add_argument("--photos", default=None,
                   help="--train: a folder of photos in the working tree (held-out regions)")
    args, rest = p.parse_known_args(argv)
    overrides = []
    for item in rest:
        key, eq, value = item.partition("=")
        if not key.startswith("--config.") or not eq:
            p.error(f"unrecognised argument {item!r} (config fields: --config.KEY=VALUE)")
        overrides.append((key[len("--config."):], value))
    args.overrides = overrides
    args.out = Path(args.out or f"bench_out/gpu_{time.strftime('%Y%m%d-%H%M%S')}")
    return args


def reference_python(opts) -> str:
    if opts.reference_python:
        return opts.reference_python
    local = machine.ROOT / ".venv-ref" / "bin" / "python"
    return os.environ.get("REFPY") or (str(local) if local.exists() else sys.executable)


def reference_missing(opts, python: str) -> str | None:
    """Why the reference cannot run here (None: it can)."""
    if opts.reference_json:
        return None
    if not (machine.ROOT / opts.reference).is_dir() and not Path(opts.reference).is_dir():
        return f"no reference checkout at {opts.reference}"
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, check=False)
    return None if probe.returncode == 0 else f"{python} cannot import torch"


def run_suite(opts) -> int:
    plan = DRY if opts.dry_run else FULL
    deadline = time.perf_counter() + 60.0 * opts.budget_minutes
    common = [*plan["model"], *plan["timing"]] + (["--device", "cpu"] if opts.dry_run else [])
    infer = bench.parse_args([*common, "--only", "infer", "--sizes", plan["infer_sizes"],
                              "--batches", plan["infer_batches"], "--dtypes", "float32,bfloat16"])
    train = bench.parse_args([*common, "--only", "train", "--sizes", plan["train_size"],
                              "--train-batches", plan["train_batches"],
                              "--dtypes", plan["train_dtypes"]])
    machine.setup_platform(infer.device)
    python = reference_python(opts)
    why = reference_missing(opts, python)
    if why:
        reference = {plan["train_size"]: {"ok": False, "skipped": True, "error": why}}
        print(f"reference skipped: {why}", flush=True)
    else:   # before JAX allocates the device's memory
        ref_args = bench.parse_args([*common, "--sizes", plan["train_size"],
                                     "--reference", opts.reference, "--reference-python", python,
                                     "--reference-batches", "1,8", "--reference-timeout", "150"]
                                    + (["--reference-json", opts.reference_json]
                                       if opts.reference_json else []))
        reference = side_by_side.run_reference(ref_args)
    peaks = measure.resolve_peaks(infer.dtypes, matmul_side=512 if opts.dry_run else 2048)
    parts = [bench.run(infer, ["(gpu_suite infer)"], deadline=deadline, peaks=peaks),
             bench.run(train, ["(gpu_suite train)"], deadline=deadline, peaks=peaks)]
    results = parts[0]["results"] + parts[1]["results"]
    peak, note = measure.device_peak_bytes()
    suite = {"environment": {**parts[0]["environment"],
                             "command": " ".join(["benchmarks/gpu_suite.sh", *sys.argv[1:]]),
                             "loadavg_end": parts[1]["environment"]["loadavg_end"]},
             "dry_run": opts.dry_run, "budget_minutes": opts.budget_minutes,
             "peaks_tflops": parts[1]["peaks_tflops"], "results": results,
             "reference": reference, "comparison": side_by_side.compare(results, reference),
             "peak_device_bytes": peak, "peak_device_bytes_note": note,
             "peak_rss_bytes": measure.peak_rss_bytes()}
    report.write_json(opts.out / "gpu_suite.json", suite)
    (opts.out / "gpu_suite.md").write_text(markdown(suite))
    print(f"wrote {opts.out / 'gpu_suite.md'}")
    failed = [r for r in results if not r.get("ok") and not r.get("skipped")]
    skipped = [r for r in results if r.get("skipped")]
    if skipped:
        print(f"{len(skipped)} case(s) skipped: the {opts.budget_minutes}-minute budget was spent")
    return 1 if failed else 0


def markdown(suite: dict) -> str:
    env = suite["environment"]
    notes = [f"{env['date']}, {env['device_kind']} x{env['device_count']} ({env['platform']}), "
             f"{env['cpu_model']} x{env['cpu_count']}, jax {env['jax']}, commit "
             f"{(env['git']['commit'] or '?')[:7]}; load {env['loadavg_start']} -> "
             f"{env['loadavg_end']}" + (" — DRY RUN (CPU, tiny sizes)" if suite["dry_run"] else ""),
             f"command: `{env['command']}`"]
    notes += [f"peak {d}: {p['value']:.3f} TFLOP/s ({p['source']})"
              for d, p in suite["peaks_tflops"].items()]
    peak = suite["peak_device_bytes"]
    notes.append("peak device memory: " + (f"{peak / 2 ** 30:.2f} GiB" if peak else
                                           f"n/a ({suite['peak_device_bytes_note']})"))
    for size, ref in suite["reference"].items():
        if not ref.get("ok", True):
            notes.append(f"reference at {size}: not run ({ref.get('error', '')[:200]})")
    for size, c in suite["comparison"].items():
        ratios = [f"{k} {v['ratio']:.2f}x" for part in ("inference", "training")
                  for k, v in c[part].items() if isinstance(v, dict)]
        notes.append(f"ours / reference at {size}: " + ", ".join(ratios))
    text = report.markdown(suite["results"], REGISTRY, title="GPU suite", notes=notes)
    feeds = [r for r in suite["results"] if r.get("ok") and "loader" in r]
    if feeds:
        text += ("\n## The loader feeding the step\n\n| B | dtype | step alone img/s | "
                 "step + loader img/s | loader alone img/s | keeps up |\n|---|---|---|---|---|---|\n")
        text += "".join(
            f"| {r['batch']} | {r['dtype']} | {r['images_per_s']:.1f} | "
            f"{r['loader']['train_with_loader_images_per_s']:.1f} | "
            f"{r['loader']['loader_only_images_per_s']:.1f} | {r['loader']['keeps_up']} |\n"
            for r in feeds)
    return text


def run_training(opts) -> int:
    if opts.dry_run:
        machine.setup_platform("cpu")
    config = train_budget.load(opts.train, opts.overrides, photos=opts.photos,
                               tiny=opts.dry_run)
    plan = DRY if opts.dry_run else FULL
    summary = train_budget.train(config, opts.minutes, opts.out,
                                 max_file_bytes=plan["max_file_bytes"])
    summary["dry_run"] = opts.dry_run
    summary["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    (opts.out / "metrics.json").write_text(json.dumps(summary, indent=1, default=str))
    train_budget.print_summary(summary)
    print(f"wrote {opts.out}/generator, {opts.out}/metrics.json")
    return 0


def main(argv=None) -> int:
    opts = parse(argv)
    try:
        return run_training(opts) if opts.train else run_suite(opts)
    except (ValueError, FileNotFoundError, TrainingDiverged) as e:   # config, data, output folder
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
