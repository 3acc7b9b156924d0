"""Reverse Distillation, FastFlow and EfficientAD (+ the random baseline) on three synthetic categories.

Random-initialised networks on CPU with a 12 s training budget per algorithm and category: the
settings recommended for the CPU demo (``algorithms/configs/synthetic_cpu.py``). Run with::

    .venv/bin/python benchmarks/synthetic_suite.py --config benchmarks/c2_synthetic_config.py \
        --data /tmp/c2data/synthetic --out /tmp/c2runs
"""

from algorithms.registry import get_algorithm_info


def _entry(name: str, params: dict, *, epochs: int = 50, budget: float = 12.0, batch_size: int = 8) -> dict:
    return {
        "algorithm": name,
        "params": {**get_algorithm_info(name).tiny, **params},
        "epochs": epochs,
        "train_time_limit_s": budget,
        "batch_size": batch_size,
    }


models = [
    _entry("reverse_distillation", {"input_size": 64}),
    _entry("fastflow", {"input_size": 64, "flow_steps": 4}),
    _entry("efficient_ad", {"input_size": 128, "lr": 1e-3, "map_padding": "replicate"}),
    _entry("random", {"input_size": 64}, epochs=1),
]
categories = ["synthetic/woven", "synthetic/pcb", "synthetic/screw"]
seeds = [0]
