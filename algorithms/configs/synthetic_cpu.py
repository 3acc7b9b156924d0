"""The CPU demo: every registered algorithm plus the random baseline on the synthetic suite.

Random-initialised backbones (``pretrained=False``: no downloads), small images and small fixed
schedules (epochs or iterations, never a time budget: the same spec and seed train the same
schedule on any machine, and the wall-clock cap is a safety cap only), so that the original five
(PatchCore, FastFlow, Reverse Distillation, EfficientAD, random) train and evaluate on the 9
synthetic categories of ``make demo`` in about 5 minutes on 2 idle CPU cores (measured figures in
``benchmarks/RESULTS.md``)::

    python -m algorithms run --config algorithms/configs/synthetic_cpu.py --device cpu --out var/runs/demo

Each algorithm's settings are its record's ``demo`` (``AlgorithmInfo`` in
``algorithms/<key>/__init__.py``). One without them runs its ``tiny`` hyperparameters for
``tiny_epochs`` epochs (a 300 s safety cap).
"""

from algorithms.registry import get_algorithm_info, list_algorithms


def _demo_entry(key: str) -> dict:
    info = get_algorithm_info(key)
    if info.demo:
        return {"algorithm": key, **info.demo}
    return {"algorithm": key, "params": dict(info.tiny), "epochs": info.tiny_epochs, "train_time_limit_s": 300,
            "batch_size": 8}  # fmt: skip


# Methods first, then the baselines.
models = [_demo_entry(key) for key in sorted(list_algorithms(), key=lambda k: get_algorithm_info(k).is_baseline)]
categories = ["synthetic"]
seeds = [0]
# Saved maps (float32, as evaluated): the result pages draw their gallery of found and missed defects from them.
save_predictions = True
