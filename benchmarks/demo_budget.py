"""Per-method cost of the CPU demo on one synthetic category: wall and CPU seconds (train + predict).

Usage (one thread: on a shared machine OpenMP's spinning threads inflate CPU time several-fold)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/demo_budget.py synthetic/woven \
        patchcore 'fastflow:{"params":{"input_size":96}}' ...

Each argument is an algorithm key, optionally with JSON overrides of its demo entry
(``INFO.demo``); the cap is lifted to the 900 s safety cap. The suite is generated at
``make demo``'s sizes into ``--data`` (default var/data/demo_budget) when absent.
"""

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "var/data/demo_budget"
OUT = ROOT / "var/runs/demo_budget"


def cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    from algorithms.configs.synthetic_cpu import _demo_entry
    from algorithms.data import generate_suite
    from algorithms.runner import run_config

    if not DATA.is_dir():
        generate_suite(DATA, seed=0, image_size=128, n_train=100, n_test_good=25, n_test_defect=35)
    cat = sys.argv[1]
    for spec in sys.argv[2:]:
        key, _, over = spec.partition(":")
        entry = _demo_entry(key)
        over = json.loads(over) if over else {}
        entry = {
            **entry,
            **{k: v for k, v in over.items() if k != "params"},
            "params": {**entry["params"], **over.get("params", {})},
            "train_time_limit_s": 900,
        }
        t0, c0 = time.perf_counter(), cpu()
        r = run_config(
            {"models": [entry], "categories": [cat], "name": "t"},
            device="cpu",
            out_dir=str(OUT),
            roots={"synthetic": str(DATA)},
        )[0]
        m = r["metrics"][r["primary_variant"]] if r["status"] == "ok" else {}
        t = r["timings"]
        shown = " ".join(f"{k} {m.get(k, float('nan')):.3f}" for k in ("image_auroc", "pixel_auroc", "pl"))
        print(f"{spec[:60]:60s} wall {time.perf_counter() - t0:6.1f} cpu {cpu() - c0:6.1f} "
              f"epochs {t.get('epochs')}/{t.get('epochs_planned')} {shown} {r['status']} {r.get('error', '')[:200]}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
