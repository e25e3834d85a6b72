"""One hostile input read in a child process, bounded in time and memory.

The hostile-input generators (``hostile_checkpoints.py``, ``hostile_images.py``) are also
the child's program: the test process runs ``python GENERATOR.py ARGS...``, the child
limits its own address space before it imports or reads anything (a ``preexec_fn``
would fork the multithreaded, JAX-running test process, which can deadlock), reads the
input and prints one JSON line: outcome, message, seconds, peak memory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MEMORY_LIMIT = 1 << 30  # address space of the child
ROOT = Path(__file__).resolve().parents[1]


def run_child(script, args, timeout: float) -> dict:
    """``python script *args`` from the repository root -> its JSON result, plus ``wall``
    (seconds including the start); a child that crashes is ``crashed (exit N)``."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, check=False, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"outcome": f"crashed (exit {proc.returncode})", "message": proc.stderr[-500:], "wall": wall}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    return result


def limit_memory(limit: int = MEMORY_LIMIT):
    """In the child, first: cap its address space, and import the package from this checkout."""
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.path.insert(0, str(ROOT))


def peak_mib() -> float:
    """This process's peak resident memory. ``ru_maxrss`` keeps the high-water mark of the
    process before ``exec`` (a large pytest parent that forked us), so read the kernel's
    per-address-space figure, VmHWM, where there is one."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)


def report(outcome: str, message: str, start: float):
    """The child's one JSON line (``start``: ``time.perf_counter()`` before the read)."""
    print(json.dumps({"outcome": outcome, "message": message, "seconds": time.perf_counter() - start,
                      "peak_mib": peak_mib()}))


def table_cells(result: dict, width: int = 140) -> str:
    """A child's result as the last cells of a Markdown table row: outcome, seconds (the
    child's own, else the wall time), peak MiB, message (``|`` escaped)."""
    message = result["message"].replace("|", "\\|")[:width]
    return (f"{result['outcome']} | {result.get('seconds', result['wall']):.3f} | "
            f"{result.get('peak_mib', float('nan')):.0f} | {message} |")
