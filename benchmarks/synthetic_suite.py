"""Run a config through the runner on the synthetic suite and print a markdown per-category table.

Usage::

    .venv/bin/python benchmarks/synthetic_suite.py [--config algorithms/configs/synthetic_cpu.py]
        [--data var/data/synthetic] [--out var/runs/synthetic_suite] [--device cpu] [--metric image_auroc]

Generates the suite (seed 0, default sizes) into ``--data`` when it is missing, runs every model
of the config on every category (training budgets as the config says), and prints, per metric,
a table with one row per category and one column per model, plus the mean and the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ("image_auroc", "pixel_auroc", "aupro", "pl")


def table(results: list[dict], metric: str) -> str:
    """A markdown table: categories x models for one metric of the primary map variant."""
    models = list(dict.fromkeys(r["model_name"] for r in results))
    categories = list(dict.fromkeys(r["category"] for r in results))
    value = {}
    for r in results:
        if r["status"] == "ok":
            value[(r["category"], r["model_name"])] = r["metrics"][r["primary_variant"]][metric]
    lines = [f"| {metric} | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for category in categories:
        cells = [f"{value[(category, m)]:.3f}" if (category, m) in value else "failed" for m in models]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    means = []
    for m in models:
        vals = [value[(c, m)] for c in categories if (c, m) in value]
        means.append(f"**{sum(vals) / len(vals):.3f}**" if vals else "-")
    lines.append("| mean | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "algorithms/configs/synthetic_cpu.py"))
    parser.add_argument("--data", default=str(ROOT / "var/data/synthetic"))
    parser.add_argument("--out", default=str(ROOT / "var/runs/synthetic_suite"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--metric", action="append", choices=METRICS, help="metric(s) to tabulate (default: all)")
    args = parser.parse_args(argv)

    from algorithms.data import generate_suite
    from algorithms.runner import run_config

    data = Path(args.data)
    if not data.is_dir() or not any(data.iterdir()):
        print(f"generating the synthetic suite into {data} ...", file=sys.stderr)
        generate_suite(data, seed=0)
    start = time.perf_counter()
    results = run_config(args.config, device=args.device, out_dir=args.out, roots={"synthetic": str(data)})
    wall = time.perf_counter() - start
    for metric in args.metric or METRICS:
        print(table(results, metric))
        print()
    train = sum(r["timings"].get("train_seconds", 0.0) for r in results)
    failed = [f"{r['model_name']} {r['category']}: {r['error']}" for r in results if r["status"] != "ok"]
    print(f"{len(results)} runs, wall time {wall:.0f} s (training {train:.0f} s), device {args.device}")
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
