"""The results of a run: the printed table, the JSON file, the Markdown table.

Every case module gives its rows (``table_rows``: a label and a dict of figures);
the columns are the same for every kind: median and minimum time, images/s,
GFLOP per image, achieved TFLOP/s, the FLOP floor and the share of the device's
peak it reaches, XLA's temporary bytes and the peak device memory (or, where the
backend has none, the process's peak RSS).
"""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = ("what", "size", "dtype", "B", "median ms", "min ms", "img/s", "GFLOP/img",
           "TFLOP/s", "floor ms", "% peak", "temp MB", "peak MB")


def _fmt(value, spec, none="-"):
    return none if value is None else format(value, spec)


def cells(label: str, result: dict, figures: dict) -> list[str]:
    """One row of the table: :data:`COLUMNS` as text."""
    temp = (figures.get("compiled_memory") or {}).get("temp_bytes")
    peak = result.get("peak_device_bytes") or result.get("peak_rss_bytes")
    fpi = figures.get("flops_per_image")
    floor = figures.get("floor_s")
    frac = figures.get("fraction_of_floor")
    timed = "median_s" in figures
    return [label, str(result["size"]), result["dtype"], str(result["batch"]),
            _fmt(figures.get("median_s") and figures["median_s"] * 1e3, ".2f",
                 "-" if timed else "(compile only)"),
            _fmt(figures.get("min_s") and figures["min_s"] * 1e3, ".2f"),
            _fmt(figures.get("images_per_s"), ".2f"), _fmt(fpi and fpi / 1e9, ".2f"),
            _fmt(figures.get("achieved_tflops"), ".4f"), _fmt(floor and floor * 1e3, ".3f"),
            _fmt(frac and 100 * frac, ".1f"), _fmt(temp and temp / 2 ** 20, ".1f"),
            _fmt(peak and peak / 2 ** 20, ".0f")]


def rows(results, registry) -> list[list[str]]:
    out = []
    for r in results:
        if not r.get("ok"):
            out.append([r["kind"], str(r.get("size")), str(r.get("dtype")), str(r.get("batch")),
                        f"FAILED: {(r.get('error') or '')[:80]}"] + [""] * 8)
            continue
        for label, figures in registry[r["kind"]].table_rows(r):
            out.append(cells(label, r, figures))
    return out


def print_table(results, peaks, registry):
    print()
    for d, (p, how) in peaks.items():
        print(f"peak {d}: {p:.3f} TFLOP/s ({how})")
    widths = (22, 5, 9, 4, 15, 9, 10, 10, 9, 10, 7, 9, 9)
    print("".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, w) in enumerate(zip(COLUMNS, widths))))
    print("-" * sum(widths))
    for row in rows(results, registry):
        if row[4].startswith("FAILED"):
            print(f"{row[0]:<22}{row[1]:>5}{row[2]:>9}{row[3]:>4}  {row[4]}")
            continue
        print("".join(f"{c:>{w}}" if i else f"{c[:w - 1]:<{w}}"
                      for i, (c, w) in enumerate(zip(row, widths))))
    for r in results:
        details = getattr(registry[r["kind"]], "print_details", None)
        if r.get("ok") and details:
            details(r)


def markdown(results, registry, title: str | None = None, notes=()) -> str:
    """The same rows as a Markdown table (with a title and notes above it)."""
    lines = [f"# {title}", ""] if title else []
    lines += [f"- {n}" for n in notes] + ([""] if notes else [])
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |"
              for row in rows(results, registry)]
    return "\n".join(lines) + "\n"


def write_json(path, report: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {path}")
    return path
