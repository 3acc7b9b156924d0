"""The smallest config, for tests: every registered algorithm with its ``tiny`` hyperparameters.

64 px, random-initialised small backbones, ``tiny_epochs`` epochs, a 30 s cap each, on one
synthetic category. Tests point ``roots`` at a freshly generated synthetic suite.
"""

from algorithms.registry import get_algorithm_info, list_algorithms


def _tiny_entry(key: str) -> dict:
    info = get_algorithm_info(key)
    return {"algorithm": key, "params": dict(info.tiny), "epochs": info.tiny_epochs, "train_time_limit_s": 30,
            "batch_size": 4}  # fmt: skip


models = [_tiny_entry(key) for key in list_algorithms()]
categories = ["synthetic/woven"]
seeds = [0]
