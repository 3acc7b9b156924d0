"""Run a config through the runner on the synthetic suite and print a markdown per-category table.

Usage::

    .venv/bin/python benchmarks/synthetic_suite.py [--config algorithms/configs/synthetic_cpu.py]
        [--data var/data/synthetic] [--out var/runs/synthetic_suite] [--device cpu] [--metric image_auroc]
        [--sizes default|demo] [--algorithms patchcore,fastflow,...]

Generates the suite (seed 0; ``--sizes default``: the generator's sizes, 256 px, 200 train / 100
test images per category; ``--sizes demo``: what ``make demo`` generates, ``manage.py
setup_demo``'s defaults) into ``--data`` when it is missing, runs every model of the config (or
those of ``--algorithms``) on every category, and prints, per metric, a table with one row per
category and one column per model, then per model the wall time and the process CPU time of its
runs (training + evaluation), the epochs trained / planned, and the machine's load average.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ("image_auroc", "pixel_auroc", "aupro", "pl")
#: What ``make demo`` generates (``manage.py setup_demo``'s defaults).
DEMO_SIZES = {"image_size": 128, "n_train": 100, "n_test_good": 25, "n_test_defect": 35}


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
    parser.add_argument("--sizes", choices=("default", "demo"), default="default",
                        help="suite sizes when generating: the generator's defaults or make demo's")  # fmt: skip
    parser.add_argument("--algorithms", default="", help="only these algorithm keys of the config, comma-separated")
    args = parser.parse_args(argv)

    import os

    from algorithms.data import generate_suite
    from algorithms.runner import run_config
    from algorithms.runspec import load_run_config

    data = Path(args.data)
    if not data.is_dir() or not any(data.iterdir()):
        print(f"generating the synthetic suite ({args.sizes} sizes) into {data} ...", file=sys.stderr)
        generate_suite(data, seed=0, **(DEMO_SIZES if args.sizes == "demo" else {}))
    loaded = load_run_config(args.config)
    wanted = [k for k in args.algorithms.split(",") if k]
    specs = [s for s in loaded.specs if not wanted or s.algorithm in wanted]
    load_before = os.getloadavg()
    start, cpu_start = time.perf_counter(), time.process_time()
    results, per_model = [], {}
    for spec in specs:  # one model at a time: its wall and CPU time
        t0, c0 = time.perf_counter(), time.process_time()
        config = {"models": [{k: v for k, v in spec.to_json().items() if k != "categories"}],
                  "categories": list(spec.categories), "name": loaded.name}  # fmt: skip
        results += run_config(config, device=args.device, out_dir=args.out, roots={"synthetic": str(data)})
        per_model[spec.name] = (time.perf_counter() - t0, time.process_time() - c0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    load_after = os.getloadavg()
    for metric in args.metric or METRICS:
        print(table(results, metric))
        print()
    train = sum(r["timings"].get("train_seconds", 0.0) for r in results)
    failed = [f"{r['model_name']} {r['category']}: {r['error']}" for r in results if r["status"] != "ok"]
    for name, (model_wall, model_cpu) in per_model.items():
        mine = [r for r in results if r["model_name"] == name and r["status"] == "ok"]
        epochs = sorted({f"{r['timings']['epochs']}/{r['timings']['epochs_planned']}" for r in mine})
        capped = sum(1 for r in mine if not r["timings"].get("schedule_complete", True))
        print(f"{name}: wall {model_wall:.0f} s, CPU {model_cpu:.0f} s, epochs trained/planned {', '.join(epochs)}"
              f"{f', schedule incomplete on {capped}' if capped else ''}")  # fmt: skip
    print(f"{len(results)} runs, wall time {wall:.0f} s, process CPU {cpu:.0f} s (training {train:.0f} s), "
          f"device {args.device}, {os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")  # fmt: skip
    for line in failed:
        print(f"FAILED {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
