"""The smallest config, for tests: every registered algorithm with its ``tiny`` overrides.

64 px, random-initialised small backbones, ``tiny_epochs`` epochs, a 30 s budget each, on one
synthetic category. Tests point ``roots`` at a freshly generated synthetic suite.
"""

from algorithms.configs.defaults import model_defaults
from algorithms.registry import get_algorithm_info, list_algorithms


def _tiny_entry(name: str) -> dict:
    info = get_algorithm_info(name)
    return dict(
        model_defaults(name),
        params=dict(info.tiny),
        epochs=info.tiny_epochs,
        train_time_limit_s=30,
        batch_size=4,
    )


models = [_tiny_entry(name) for name in list_algorithms()]
categories = ["synthetic/woven"]
seed = 0
