"""VisionAD algorithm library: one small API, a registry, datasets, run specifications and a runner.

No Django. Importing this package is cheap and torch-free: algorithm packages are discovered on
the first registry query and their detectors (the torch code) are imported only when a model is
built or loaded, so ``import algorithms``, ``algorithms.data``, the metadata and ``RunSpec``
validation never pull in torch.
"""

from .info import AlgorithmInfo, Family, Schedule
from .registry import (
    UnknownAlgorithmError,
    create_algorithm,
    get_algorithm_info,
    list_algorithms,
    load_algorithm,
    register_algorithm,
)
from .runspec import ConfigError, RunSpec

__all__ = [
    "AlgorithmInfo",
    "ConfigError",
    "Family",
    "RunSpec",
    "Schedule",
    "UnknownAlgorithmError",
    "create_algorithm",
    "get_algorithm_info",
    "list_algorithms",
    "load_algorithm",
    "register_algorithm",
]
