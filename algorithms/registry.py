"""Algorithm registry: ``register_algorithm`` decorator, ``create_algorithm`` factory, metadata.

Modelled on timm's explicit registry. Built-in algorithms live in the modules listed in
``BUILTIN_MODULES``; they are imported on the first registry query, so that importing the
package (or ``algorithms.data``) stays cheap. To add an algorithm: write one module that
decorates its class with ``@register_algorithm(...)`` and add the module to ``BUILTIN_MODULES``
(see ``docs/adding-an-algorithm.md``).
"""

from __future__ import annotations

import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .base import AnomalyDetector

__all__ = [
    "BUILTIN_MODULES",
    "AlgorithmInfo",
    "UnknownAlgorithmError",
    "create_algorithm",
    "get_algorithm_class",
    "get_algorithm_info",
    "list_algorithms",
    "register_algorithm",
]

#: Modules whose import registers the built-in algorithms (one line per algorithm).
BUILTIN_MODULES: tuple[str, ...] = (
    "algorithms.random_baseline",
    "algorithms.patchcore",
    "algorithms.reverse_distillation",
    "algorithms.fastflow",
    "algorithms.efficient_ad",
)


class UnknownAlgorithmError(KeyError):
    """Raised for a name that no registered algorithm has."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown algorithm"


@dataclass(frozen=True)
class AlgorithmInfo:
    """Metadata that travels with a registered algorithm."""

    name: str
    display_name: str
    family: str
    paper_title: str = ""
    paper_url: str = ""
    code_url: str = ""
    description: str = ""
    default_input_size: int = 256
    #: Hyperparameter overrides for fast CPU tests (small backbone, pretrained=False, 64 px).
    tiny: dict[str, Any] = field(default_factory=dict)
    #: True when training is a single pass (memory-bank methods): the runner uses one epoch.
    one_shot: bool = False
    is_baseline: bool = False
    #: Epochs of the publication's schedule (1 for one-shot methods).
    default_epochs: int = 1
    #: Epochs the conformance test trains the ``tiny`` configuration for.
    tiny_epochs: int = 1


_REGISTRY: dict[str, tuple[type[AnomalyDetector], AlgorithmInfo]] = {}
_loaded = False


def register_algorithm(name: str, **info: Any):
    """Class decorator registering an ``AnomalyDetector`` subclass under a snake_case ``name``."""

    if not name or name != name.lower() or not name.replace("_", "").isalnum():
        raise ValueError(f"algorithm names are snake_case identifiers, got {name!r}")

    def decorator(cls: type[AnomalyDetector]) -> type[AnomalyDetector]:
        if name in _REGISTRY and _REGISTRY[name][0] is not cls:
            raise ValueError(f"an algorithm named {name!r} is already registered ({_REGISTRY[name][0].__qualname__})")
        meta = AlgorithmInfo(name=name, **info)
        cls.algorithm_name = name
        _REGISTRY[name] = (cls, meta)
        return cls

    return decorator


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    _loaded = True


def list_algorithms(pattern: str = "*", *, include_baselines: bool = True) -> list[str]:
    """Sorted names of the registered algorithms matching a shell-style ``pattern``."""
    _ensure_loaded()
    return sorted(
        n
        for n, (_, info) in _REGISTRY.items()
        if fnmatch.fnmatch(n, pattern) and (include_baselines or not info.is_baseline)
    )


def _lookup(name: str) -> tuple[type[AnomalyDetector], AlgorithmInfo]:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def get_algorithm_class(name: str) -> type[AnomalyDetector]:
    return _lookup(name)[0]


def get_algorithm_info(name: str) -> AlgorithmInfo:
    return _lookup(name)[1]


def create_algorithm(name: str, *, tiny: bool = False, **overrides: Any) -> AnomalyDetector:
    """Build a registered algorithm from its publication defaults plus ``overrides``.

    ``tiny=True`` applies the algorithm's test overrides first (small, random-init, 64 px).
    Unknown hyperparameters raise ``TypeError`` naming the algorithm.
    """
    cls, info = _lookup(name)
    params = dict(info.tiny) if tiny else {}
    params.update(overrides)
    try:
        return cls(**params)
    except TypeError as exc:
        raise TypeError(f"{name}: {exc}") from exc
