"""Seconds per training epoch and per test image of each registered algorithm, on a given device.

The measurement that replaces the GPU ESTIMATES of ``benchmarks/capacity_plan.py``: run it on a
GPU worker, then feed its JSON to the plan::

    .venv/bin/python benchmarks/epoch_timing.py --device cuda:0 --out var/epoch_timing.json
    .venv/bin/python benchmarks/capacity_plan.py --measured var/epoch_timing.json

Each algorithm trains with its publication defaults (batch size from ``algorithms.configs.defaults``)
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
    from algorithms.configs.defaults import model_defaults
    from algorithms.data import generate_suite
    from algorithms.registry import get_algorithm_info, list_algorithms
    from algorithms.runner import run_category

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--images", type=int, default=242, help="training images (MVTec AD average: 242)")
    parser.add_argument("--test-images", type=int, default=115, help="test images (MVTec AD average: 115)")
    parser.add_argument("--side", type=int, default=1024, help="image side in px (MVTec AD: mostly 1024)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--algorithms", nargs="*", default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = args.algorithms or list_algorithms(include_baselines=False)
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        good = max(1, args.test_images // 5)
        generate_suite(tmp, seed=0, categories=["leather"], image_size=args.side, n_train=args.images,
                       n_test_good=good, n_test_defect=args.test_images - good)  # fmt: skip
        print("| algorithm | device | epochs | ms / train image | pre-eval s / 1000 train images | ms / test image |")
        print("|---|---|---|---|---|---|")
        for name in names:
            entry = model_defaults(name)
            params = dict(entry["params"])
            if "pretrained" in get_algorithm_info(name).tiny:
                params["pretrained"] = False
            out = run_category(
                algorithm=name, params=params, category="synthetic/leather", roots={"synthetic": tmp},
                device=args.device, epochs=args.epochs, train_time_limit_s=10**9, batch_size=entry["batch_size"],
            )  # fmt: skip
            if out["status"] != "ok":
                print(f"| {name} | failed: {out['error']} |")
                continue
            timings = out["timings"]
            pre_eval = sum(h.get("pre_eval_seconds", 0.0) for h in out["history"])
            epochs = timings["epochs"]
            train_ms = 1000 * (timings["train_seconds"] - pre_eval) / (epochs * timings["n_train"])
            row = {
                "train_ms_per_image": train_ms,
                "pre_eval_s_per_1000_train": 1000 * pre_eval / timings["n_train"],
                "test_ms_per_image": 1000 * timings["inference_seconds_per_image"],
                "device": args.device,
                "hardware": out["environment"].get("hardware", ""),
            }
            measured[name] = row
            print(f"| {name} | {args.device} | {epochs} | {train_ms:.1f} | {row['pre_eval_s_per_1000_train']:.1f} | "
                  f"{row['test_ms_per_image']:.1f} |")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
