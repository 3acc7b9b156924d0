"""Seconds per training epoch and per test image of each registered algorithm, on a given device.

The measurement that replaces the GPU ESTIMATES of ``benchmarks/capacity_plan.py``: run it on a
GPU worker, then feed its JSON to the plan::

    .venv/bin/python benchmarks/epoch_timing.py --device cuda:0 --out var/epoch_timing.json
    .venv/bin/python benchmarks/capacity_plan.py --measured var/epoch_timing.json

Each algorithm trains with its publication defaults (batch size from its registry schedule)
but ``pretrained=False`` (the same arithmetic as with the weights, and no download) for
``--epochs`` epochs on one generated category the size of an average MVTec AD category (242 train
and 115 test images, 1024 px, decoded and resized by the runner's loader as in a real job), through
``algorithms.runner.run_category``, the function a benchmark job runs. Printed and written per
algorithm: ms per training image (data loading included), memory-bank/pre-evaluation seconds per
1000 training images, ms per test image.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    from algorithms.data import generate_suite
    from algorithms.registry import get_algorithm_info, list_algorithms
    from algorithms.runner import run_category
    from algorithms.runspec import RunSpec

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--images", type=int, default=242, help="training images (MVTec AD average: 242)")
    parser.add_argument("--test-images", type=int, default=115, help="test images (MVTec AD average: 115)")
    parser.add_argument("--side", type=int, default=1024, help="image side in px (MVTec AD: mostly 1024)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--algorithms", nargs="*", default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = args.algorithms or [n for n in list_algorithms() if not get_algorithm_info(n).is_baseline]
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        good = max(1, args.test_images // 5)
        generate_suite(tmp, seed=0, categories=["leather"], image_size=args.side, n_train=args.images,
                       n_test_good=good, n_test_defect=args.test_images - good)  # fmt: skip
        print("| algorithm | device | epochs | ms / train image | pre-eval s / 1000 train images | ms / test image |")
        print("|---|---|---|---|---|---|")
        for name in names:
            info = get_algorithm_info(name)
            params = {"pretrained": False} if "pretrained" in info.tiny else {}
            epochs = 1 if info.schedule.epochs == 1 else args.epochs  # one-shot methods: one pass
            spec = RunSpec.from_entry(
                {
                    "algorithm": name,
                    "categories": ["synthetic/leather"],
                    "params": params,
                    "epochs": epochs,
                    "train_time_limit_s": 10**7,
                    "device": args.device,
                },
                expand=list,
            )  # fmt: skip (the publication batch size comes from the registry)
            out = run_category(spec, "synthetic/leather", roots={"synthetic": tmp})
            if out["status"] != "ok":
                print(f"| {name} | failed: {out['error']} |")
                continue
            timings = out["timings"]
            pre_eval = sum(h.get("pre_eval_seconds", 0.0) for h in out["history"])
            n_train, done = timings["n_train"], timings["epochs"]
            train_ms = 1000 * (timings["train_seconds"] - pre_eval) / (done * n_train)
            row = {
                "train_ms_per_image": train_ms,
                "pre_eval_s_per_1000_train": 1000 * pre_eval / n_train,
                "test_ms_per_image": 1000 * timings["inference_seconds_per_image"],
                "device": args.device,
                "hardware": out["environment"].get("hardware", ""),
            }
            measured[name] = row
            print(f"| {name} | {args.device} | {done} | {train_ms:.1f} | {row['pre_eval_s_per_1000_train']:.1f} | "
                  f"{row['test_ms_per_image']:.1f} |")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
