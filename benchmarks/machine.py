"""The machine a benchmark runs on: platform and CPU set-up, load average, versions, git.

:func:`setup_platform` must run before JAX creates its backend (before any array
is made): it picks the platform and pins the process to N CPUs. Everything else
describes the run for the JSON: who, where, which versions, how loaded.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import flax
import jax
import jaxlib
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]
THREADS_NOTE = (
    "JAX 0.10 XLA:CPU has no intra-op thread-count option (intra_op_parallelism_threads "
    "is not an XLA flag: '--intra_op_parallelism_threads' aborts as unknown, without "
    "dashes it is ignored); --threads N pins this process and the reference to N CPUs "
    "with sched_setaffinity, and the reference also gets torch.set_num_threads(N)")
LOADAVG_NOTE = (
    "1/5/15-minute load averages of the whole machine; while a case runs they include "
    "this benchmark's own threads (about 2 on a busy 2-CPU run), so loadavg_start is the "
    "one that tells whether others were using the machine")


def setup_platform(device: str = "auto", threads: int | None = None):
    """JAX platform ("cpu", "cuda"; "auto": JAX's choice) and CPU pinning (``threads``)."""
    if device != "auto":
        os.environ["JAX_PLATFORMS"] = device   # inherited by isolated cases
        jax.config.update("jax_platforms", device)
    if threads:
        cpus = sorted(os.sched_getaffinity(0))
        if threads > len(cpus):
            print(f"--threads {threads}: only {len(cpus)} CPUs available", file=sys.stderr)
        os.sched_setaffinity(0, cpus[:threads])
        if threads == 1:   # read when the CPU backend is created
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()


def loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def has_nvidia_gpu() -> bool:
    """``nvidia-smi -L`` succeeds (asked without touching JAX's backend)."""
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                              check=False).returncode == 0
    except OSError:
        return False


def git_state():
    """Commit of the checkout and the tracked files changed in the working tree."""
    def git(*args):
        proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None
    changed = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "modified": [line[3:] for line in changed.splitlines()] if changed else []}


def describe(command, **extra) -> dict:
    """Date, command, host, CPU, device, versions and git state of this run."""
    dev = jax.local_devices()[0]
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, *command]),
        "host": platform.node(), "machine": platform.machine(),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "cpus_used": sorted(os.sched_getaffinity(0)),
        "threads_note": THREADS_NOTE,
        "platform": dev.platform, "device_kind": dev.device_kind,
        "device_count": jax.device_count(),
        "python": platform.python_version(), "jax": jax.__version__,
        "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
        "numpy": np.__version__, "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "git": git_state(), "loadavg_note": LOADAVG_NOTE, **extra,
    }


def headline(info: dict) -> str:
    """One line: date, CPU, device, versions, load."""
    return (f"{info['date']}  {info['cpu_model']} x{info['cpu_count']} (using "
            f"{len(info['cpus_used'])})  {info['platform']}:{info['device_kind']}  "
            f"jax {info['jax']}  flax {info['flax']}  load {info.get('loadavg_start')}")
