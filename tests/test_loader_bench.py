"""benchmarks/loader_bench.py runs end to end at a tiny size (the numbers are not checked)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_loader_bench_tiny_run_writes_its_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, "benchmarks/loader_bench.py", "--images", "16", "--batches", "1",
                             "--max-workers", "2", "--step-ngf", "0", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {(r["backend"], r["workers"]) for r in report["loader"]} == {
        (b, n) for b in ("processes", "threads") for n in (1, 2)}
    assert 0 < report["profile"]["held_share"] < 1 and report["bare"] > 0
    assert set(report["projection"]) == {"16", "32"}
    assert "interpreter-bound share" in result.stdout and "projection, 16 cores" in result.stdout
