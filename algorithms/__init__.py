"""VisionAD algorithm library: one small API, a registry, datasets and a runner (no Django).

Importing this package is cheap: algorithms are registered lazily the first time the registry
is queried, so ``import algorithms.data`` does not pull in torch-heavy model code.
"""

from .registry import (
    AlgorithmInfo,
    UnknownAlgorithmError,
    create_algorithm,
    get_algorithm_info,
    list_algorithms,
    register_algorithm,
)

__all__ = [
    "AlgorithmInfo",
    "UnknownAlgorithmError",
    "create_algorithm",
    "get_algorithm_info",
    "list_algorithms",
    "register_algorithm",
]
