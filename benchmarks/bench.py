#!/usr/bin/env python
"""Shift-Net JAX benchmark suite: inference, training step, the shift, the layers; side-by-side.

One command measures (warm-up, ``block_until_ready``, medians over ``--repeats``) the
cases of ``--only`` (``benchmarks/cases/``: ``infer``, ``train``, ``shift``, ``profile``).
For every figure: FLOPs from XLA's cost analysis, achieved TFLOP/s, the physical
floor (FLOPs / peak: the device's datasheet peak on accelerators,
``benchmarks/measure.py``; on CPU the measured rate of a large matmul, said so in the
output; ``--peak-tflops`` overrides), compiled memory sizes and the device's
``peak_bytes_in_use`` where the backend has it.

Side-by-side: ``--reference ref/Shift-Net_pytorch --reference-python .venv-ref/bin/python``
runs ``benchmarks/reference_torch.py`` first (before JAX touches the device), on the
same machine and CPUs, and reports our/their throughput ratios.

Examples::

    python benchmarks/bench.py --device cpu --threads 2 --sizes 256 --dtypes float32 \\
        --batches 1,8 --train-batches 1,4 --json bench_out/cpu.json \\
        --reference ref/Shift-Net_pytorch --reference-python .venv-ref/bin/python
    python benchmarks/bench.py --device cuda --sizes 256,512 --dtypes float32,bfloat16 \\
        --batches 1,8,64 --json bench_out/h100.json
    python benchmarks/bench.py --quick --ngf 4 --num-downs 5 --sizes 32 --batches 1 \\
        --json /tmp/smoke.json          # seconds; what tests/test_benchmarks.py runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):   # run as a file: the repository root holds `benchmarks`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import machine, measure, report, side_by_side, workloads  # noqa: E402
from benchmarks.cases import DEFAULT_KINDS, REGISTRY  # noqa: E402

RESULT_TAG = "BENCH_CASE_RESULT "
ORIGINAL_PREALLOCATE = os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")


def ints(text):
    return [int(s) for s in str(text).split(",") if s.strip()]


def names(text):
    return [s.strip() for s in str(text).split(",") if s.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=None, help="write all results here")
    p.add_argument("--markdown", default=None, help="write the table as Markdown here")
    p.add_argument("--sizes", default="256", help="image sides, e.g. 256,512")
    p.add_argument("--dtypes", default="float32", help="float32,bfloat16")
    p.add_argument("--repeats", type=int, default=10, help="timed runs per figure (median)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs after compiling")
    p.add_argument("--only", default=",".join(DEFAULT_KINDS),
                   help=f"comma-separated subset of {','.join(REGISTRY)}")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 repeats, 1 warm-up, 2 loader steps, small peak matmul")
    p.add_argument("--peak-tflops", default=None,
                   help="device peak for the floor: one number, or dtype=value pairs "
                        "'bfloat16=989,float32=67' (default: the device's datasheet peak, "
                        "a measured matmul on CPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="JAX platform and the reference's device")
    p.add_argument("--threads", type=int, default=None,
                   help="restrict this process and the reference to N CPUs "
                        "(sched_setaffinity; torch.set_num_threads(N) for the reference)")
    p.add_argument("--isolate", action="store_true",
                   help="run every case in a fresh subprocess: per-case peak device "
                        "memory / peak RSS instead of the process high-water mark")
    p.add_argument("--_case", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_peaks", default=None, help=argparse.SUPPRESS)
    workloads.add_model_arguments(p)
    side_by_side.add_arguments(p)
    for module in REGISTRY.values():
        module.add_arguments(p)
    return p


def parse_args(argv=None):
    p = parser()
    args = p.parse_args(argv)
    args.sizes, args.dtypes, args.only = ints(args.sizes), names(args.dtypes), names(args.only)
    bad = sorted(set(args.only) - set(REGISTRY))
    if bad:
        p.error(f"--only: unknown {bad}; choose from {', '.join(REGISTRY)}")
    bad = sorted(set(args.dtypes) - {"float32", "bfloat16"})
    if bad:
        p.error(f"--dtypes: unknown {bad}")
    args.batches = ints(args.batches)
    args.train_batches = ints(args.train_batches) if args.train_batches else args.batches
    if args.quick:
        args.repeats, args.warmup = min(args.repeats, 2), min(args.warmup, 1)
        args.loader_steps = min(args.loader_steps, 2)
    if args.train_repeats is None:
        args.train_repeats = args.repeats
    args.shift_sizes = (ints(args.shift_sizes) if args.shift_sizes is not None
                        else sorted(set(args.sizes) | {1024}))
    args.shift_batches, args.shift_tiles = ints(args.shift_batches), ints(args.shift_tiles)
    return args


def run_case(args, case, peaks) -> dict:
    """One case, its failure caught (one failing figure must not lose the others)."""
    t0 = time.perf_counter()
    res = {"loadavg_before": machine.loadavg()}
    try:
        res.update(REGISTRY[case["kind"]].run(args, case, peaks))
        res["ok"] = True
    except Exception as e:  # noqa: BLE001
        res.update(ok=False, error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc()[-3000:])
    peak, note = measure.device_peak_bytes()
    res.update(peak_device_bytes=peak, peak_rss_bytes=measure.peak_rss_bytes(),
               loadavg_after=machine.loadavg(), wall_s=time.perf_counter() - t0)
    res["peak_device_bytes_note"] = note or (
        "per case (fresh process)" if args._case else
        "process high-water mark so far (not reset between cases; --isolate for per case)")
    return {**case, **res}


def run_isolated(case, peaks, argv) -> dict:
    """The case in a fresh interpreter (per-case peak memory / RSS)."""
    skip = {"--json", "--markdown", "--reference", "--reference-json", "--reference-python",
            "--_case", "--_peaks"}
    child, it = [], iter(argv)
    for a in it:
        if a.split("=", 1)[0] in skip:
            if "=" not in a:
                next(it, None)
            continue
        if a != "--isolate":
            child.append(a)
    cmd = [sys.executable, "-m", "benchmarks.bench", *child,
           "--_case", json.dumps(case), "--_peaks", json.dumps(peaks)]
    env = dict(os.environ)
    env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    if ORIGINAL_PREALLOCATE is not None:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = ORIGINAL_PREALLOCATE
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=machine.ROOT,
                          check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    return {**case, "ok": False, "error": f"subprocess exit {proc.returncode}",
            "traceback": (proc.stderr or proc.stdout)[-3000:]}


def run(args, argv, *, deadline: float | None = None, peaks: dict | None = None) -> dict:
    """Every case of ``args.only``; the report (environment, peaks, results, comparison).

    ``deadline`` (a ``time.perf_counter()`` value): cases not started by then are
    recorded as skipped. ``peaks``: from an earlier run (default: resolved here).
    """
    load_at_start = machine.loadavg()   # before anything of ours (or the reference) runs
    reference = {}
    if args.reference or args.reference_json:
        reference = side_by_side.run_reference(args)   # before JAX allocates the device
    if args.isolate:
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"   # this process only
    peaks = peaks or measure.resolve_peaks(args.dtypes, given=args.peak_tflops,
                                           matmul_side=512 if args.quick else 2048)
    info = machine.describe(["benchmarks/bench.py", *argv], loadavg_start=load_at_start,
                            threads_flag=args.threads, conv_impl=workloads.conv_impl(args),
                            ngf=args.ngf, num_downs=args.num_downs, variant=args.variant,
                            shift_layer=args.shift_layer, repeats=args.repeats,
                            train_repeats=args.train_repeats, warmup=args.warmup)
    print(machine.headline(info), flush=True)
    results = []
    for kind in args.only:
        for case in REGISTRY[kind].build(args):
            label = " ".join(f"{k}={v}" for k, v in case.items())
            if deadline is not None and time.perf_counter() > deadline:
                results.append({**case, "ok": False, "skipped": True,
                                "error": "skipped: the run's time budget was spent"})
                print(f"... {label}  skipped (time budget)", flush=True)
                continue
            print(f"... {label}  (load {machine.loadavg()})", flush=True)
            r = run_isolated(case, peaks, argv) if args.isolate else run_case(args, case, peaks)
            if not r.get("ok"):
                print(f"    FAILED: {r.get('error')}\n{r.get('traceback', '')[-1500:]}",
                      file=sys.stderr, flush=True)
            elif "median_s" in r:
                print(f"    median {r['median_s'] * 1e3:.2f} ms  "
                      f"{r.get('images_per_s', 0):.2f} images/s", flush=True)
            results.append(r)
    info["loadavg_end"] = machine.loadavg()
    report.print_table(results, peaks, REGISTRY)
    comparison = side_by_side.compare(results, reference) if reference else {}
    if comparison:
        side_by_side.print_comparison(comparison)
    print(f"\nload average start {info['loadavg_start']} end {info['loadavg_end']}")
    return {"environment": info,
            "peaks_tflops": {d: {"value": v, "source": s} for d, (v, s) in peaks.items()},
            "results": results, "reference": reference, "comparison": comparison}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    machine.setup_platform(args.device, args.threads)
    if args._case:   # a child of --isolate: one case, its result on stdout
        peaks = measure.resolve_peaks(args.dtypes, inherited=args._peaks)
        print(RESULT_TAG + json.dumps(run_case(args, json.loads(args._case), peaks), default=str))
        return 0
    result = run(args, argv)
    if args.json:
        report.write_json(args.json, result)
    if args.markdown:
        Path(args.markdown).write_text(report.markdown(result["results"], REGISTRY))
    return 0 if all(r.get("ok") for r in result["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
