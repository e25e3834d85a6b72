"""Timing, XLA's cost and memory analyses, device peaks: what every benchmark case uses.

* :func:`timed` runs a function ``warmup`` times, then ``repeats`` timed runs, each
  followed by ``block_until_ready``; the median, the minimum and every run.
* :func:`compile_and_time` lowers and compiles a function once (compile time
  recorded), reads XLA's FLOP count and memory sizes, then times the executable.
* :func:`add_rates`: images/s, achieved TFLOP/s and the physical floor (FLOPs /
  peak) of one timed figure.
* Peaks: :data:`DEVICE_PEAKS_TFLOPS` (datasheet dense peaks by device kind) for
  accelerators; on CPU the best rate of a large matmul, measured in the run.
"""

from __future__ import annotations

import json
import re
import resource
import statistics
import time

import jax
import jax.numpy as jnp

# Dense (no sparsity) datasheet peaks, TFLOP/s. "float32" is the non-tensor-core
# figure; XLA may run float32 convs and dots as TF32 on tensor cores ("tf32"), so a
# float32 "% of peak" above 100 % means TF32 was used. First matching pattern wins
# (matched against jax's device_kind, e.g. "NVIDIA H100 80GB HBM3", "NVIDIA H200").
DEVICE_PEAKS_TFLOPS = (
    (r"H200", "NVIDIA H200 SXM", {"bfloat16": 989.0, "float32": 67.0, "tf32": 494.0}),
    (r"H100.*PCIe", "NVIDIA H100 PCIe", {"bfloat16": 756.0, "float32": 51.0, "tf32": 378.0}),
    (r"H100.*NVL", "NVIDIA H100 NVL", {"bfloat16": 835.0, "float32": 60.0, "tf32": 418.0}),
    (r"H100", "NVIDIA H100 SXM", {"bfloat16": 989.0, "float32": 67.0, "tf32": 494.0}),
    (r"A100", "NVIDIA A100", {"bfloat16": 312.0, "float32": 19.5, "tf32": 156.0}),
    (r"L40S", "NVIDIA L40S", {"bfloat16": 362.0, "float32": 91.6, "tf32": 183.0}),
    (r"\bL4\b", "NVIDIA L4", {"bfloat16": 121.0, "float32": 30.3, "tf32": 60.0}),
    (r"TPU v4", "TPU v4", {"bfloat16": 275.0}),
    (r"TPU v5 ?(lite|e)", "TPU v5e", {"bfloat16": 197.0}),
    (r"TPU v5", "TPU v5p", {"bfloat16": 459.0}),
    (r"TPU v6", "TPU v6e", {"bfloat16": 918.0}),
)
DEFAULT_GPU = "NVIDIA H100 SXM"   # an unknown GPU is compared with this one (said so)


def timed(fn, warmup: int, repeats: int) -> dict:
    """fn() returns arrays to wait for; warm-up runs, then ``repeats`` timed runs."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    runs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(runs), "min_s": min(runs), "runs_s": runs}


def cost(compiled, lowered=None):
    """(flops, bytes accessed, source) from XLA's cost analysis (list or dict by version)."""
    for source, obj in (("compiled", compiled), ("lowered", lowered)):
        if obj is None:
            continue
        try:
            analysis = obj.cost_analysis()
        except Exception:  # noqa: BLE001, S112 - not every backend/version implements it
            continue
        if isinstance(analysis, (list, tuple)):
            analysis = analysis[0] if analysis else None
        analysis = analysis or {}
        flops = analysis.get("flops")
        if flops and flops > 0:
            return float(flops), float(analysis.get("bytes accessed", 0.0)) or None, source
    return None, None, None


def memory_analysis(compiled) -> dict | None:
    """Argument / output / alias / temp / code bytes of an executable (exact for it)."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - absent on some backends
        return None
    if ma is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "temp_size_in_bytes", "generated_code_size_in_bytes")
    return {f.replace("_size_in_bytes", "_bytes"): getattr(ma, f, None) for f in fields}


def compile_and_time(fn, operands, warmup: int, repeats: int, *, run: bool = True,
                     jitted=None):
    """(figures, compiled): compile ``fn`` for ``operands``, its cost and memory, and
    (``run``) its timing. ``jitted``: an already jitted callable to lower instead."""
    lowered = (jitted or jax.jit(fn)).lower(*operands)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    flops, nbytes, source = cost(compiled, lowered)
    out = {"compile_s": time.perf_counter() - t0, "flops": flops, "flops_source": source,
           "bytes_accessed": nbytes, "compiled_memory": memory_analysis(compiled)}
    if run:
        out.update(timed(lambda: compiled(*operands), warmup, repeats))
    return out, compiled


def device_peak_bytes():
    """(peak_bytes_in_use, None) of the first device, or (None, why not)."""
    dev = jax.local_devices()[0]
    try:
        stats = dev.memory_stats()
    except Exception as e:  # noqa: BLE001
        return None, f"memory_stats() failed: {type(e).__name__}: {e}"
    if not stats or "peak_bytes_in_use" not in stats:
        return None, (f"{dev.platform} backend: memory_stats() returns "
                      f"{'None' if stats is None else 'no peak_bytes_in_use'}; "
                      "see compiled_memory and peak_rss_bytes")
    return int(stats["peak_bytes_in_use"]), None


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def device_peaks(device_kind: str):
    """(table name, {dtype: TFLOP/s}) for a device kind, or (None, {}) if unknown."""
    for pattern, name, peaks in DEVICE_PEAKS_TFLOPS:
        if re.search(pattern, device_kind or ""):
            return name, peaks
    return None, {}


def measure_cpu_peak(dtype_name: str, n: int) -> float:
    """Best achieved TFLOP/s of an n x n x n matmul in this dtype (the CPU 'peak')."""
    dtype = jnp.dtype(dtype_name)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    f = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    return 2.0 * n ** 3 / timed(lambda: f(a, b), 2, 5)["min_s"] / 1e12


def parse_peak_flag(text: str, dtypes) -> dict:
    """``--peak-tflops``: one number for every dtype, or ``bfloat16=989,float32=67``."""
    if "=" in text:
        return {k.strip(): float(v) for k, v in (kv.split("=") for kv in text.split(","))}
    return {d: float(text) for d in dtypes}


def resolve_peaks(dtypes, *, given: str | None = None, inherited: str | None = None,
                  matmul_side: int = 2048) -> dict:
    """{dtype: (peak TFLOP/s, how it was obtained)} for ``dtypes`` and float32.

    ``given``: the ``--peak-tflops`` flag; ``inherited``: the JSON a parent process
    passed to an isolated case (so the CPU matmul is measured once).
    """
    if inherited:
        return {k: tuple(v) for k, v in json.loads(inherited).items()}
    dev = jax.local_devices()[0]
    peaks = {d: (v, "--peak-tflops")
             for d, v in (parse_peak_flag(given, dtypes) if given else {}).items()}
    name, table = device_peaks(dev.device_kind)
    if dev.platform == "gpu" and name is None:
        name, table = DEFAULT_GPU, next(p for _, n, p in DEVICE_PEAKS_TFLOPS if n == DEFAULT_GPU)
        name += f" (device kind {dev.device_kind!r} not in the table: compared with it)"
    for d in [*dtypes, "float32"]:
        if d in peaks:
            continue
        if dev.platform != "cpu" and d in table:
            peaks[d] = (table[d], f"{name} dense datasheet peak (--peak-tflops overrides)")
        elif dev.platform == "cpu":
            how = (f"measured on this CPU: best of 5 {matmul_side}^3 {d} matmuls "
                   "(jnp.dot, f32 accumulation); not a datasheet peak")
            peaks[d] = (measure_cpu_peak(d, matmul_side), how)
    return peaks


def add_rates(result: dict, flops, batch: int, peak) -> dict:
    """Throughput, achieved TFLOP/s and the FLOP floor for one timed figure."""
    median = result["median_s"]
    result["images_per_s"] = batch / median
    if flops:
        result.update(flops=flops, flops_per_image=flops / batch,
                      achieved_tflops=flops / median / 1e12)
    if flops and peak:
        floor = flops / (peak[0] * 1e12)
        result.update(peak_tflops=peak[0], peak_source=peak[1], floor_s=floor,
                      floor_images_per_s=batch / floor, fraction_of_floor=floor / median)
    return result
