"""The CPU demo: every registered algorithm plus the random baseline on the synthetic suite.

Random-initialised backbones (``pretrained=False``: no downloads), small images, small epoch
counts and training budgets, so that all algorithms on the 9 synthetic categories train and
evaluate in about 8 minutes on 2 CPU cores (measured figures in ``benchmarks/RESULTS.md``)::

    python -m algorithms run --config algorithms/configs/synthetic_cpu.py --device cpu --out var/runs/demo

Algorithms registered later, without an entry in ``SMALL`` below, run with their registry
``tiny`` hyperparameters for ``tiny_epochs`` epochs under a 20 s budget.
"""

from algorithms.configs.defaults import model_defaults
from algorithms.registry import get_algorithm_info, list_algorithms

#: Per-algorithm CPU settings: overrides on top of the registry's ``tiny`` hyperparameters
#: (small backbones, ``pretrained=False``), epochs, budget (s), batch size.
SMALL = {
    "patchcore": {
        # 160 px (layer-2 grid 20 x 20) instead of 128: small parts of the objects (pcb footprints,
        # washer rims) need the extra resolution. BatchNorm statistics re-estimated from the
        # training images (random-init backbone). Coreset 5 %: between the paper's 10 % and
        # VisionAD's 1 %; the greedy coreset dominates the CPU cost with 200 training images.
        "params": {
            "input_size": 160,
            "backbone": "resnet18",
            "pretrained": False,
            "bn_calibration": True,
            "pretrain_embed_dim": 512,
            "target_embed_dim": 512,
            "coreset_ratio": 0.05,
        },
        "epochs": 1,
        "train_time_limit_s": 60,
        "batch_size": 16,
    },
    "reverse_distillation": {"params": {"input_size": 128}, "epochs": 20, "train_time_limit_s": 8, "batch_size": 8},
    "fastflow": {"params": {"input_size": 128}, "epochs": 20, "train_time_limit_s": 8, "batch_size": 8},
    # EfficientAD: the colleague's CPU recommendation (benchmarks/c2_synthetic_config.py): a 10x
    # learning rate for the few steps the budget allows, and replicate padding of the map border.
    "efficient_ad": {
        "params": {"input_size": 128, "lr": 1e-3, "map_padding": "replicate"},
        "epochs": 20,
        "train_time_limit_s": 8,
        "batch_size": 8,
    },
    "random": {"params": {"input_size": 128}, "epochs": 1, "train_time_limit_s": 10, "batch_size": 16},
}


def _small_entry(name: str) -> dict:
    info = get_algorithm_info(name)
    entry = model_defaults(name)
    if name in SMALL:
        small = SMALL[name]
        params = dict(info.tiny)  # small backbone, pretrained=False; then the demo's choices
        params.update(small["params"])
        entry.update(small, params=params)
    else:
        entry.update(params=dict(info.tiny), epochs=info.tiny_epochs, train_time_limit_s=20, batch_size=8)
    return entry


models = [_small_entry(name) for name in list_algorithms(include_baselines=False)]
models.append(_small_entry("random"))
categories = ["synthetic"]
seed = 0
