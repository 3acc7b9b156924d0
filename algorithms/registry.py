"""The algorithm registry: discovery, ``register_algorithm``, and the factory that builds and loads.

Modelled on timm's registry and factory. An algorithm is a package with a fixed layout::

    algorithms/<key>/
        __init__.py   the paper in the docstring, and INFO = AlgorithmInfo(...) (no torch here)
        model.py      the pure torch.nn.Module(s): the network, no training logic
        detector.py   the AnomalyDetector subclass, decorated with @register_algorithm(INFO)

**Discovery, not a hand-kept list.** On the first query, every subpackage of ``algorithms/``
that has a ``detector`` module is an algorithm: its ``__init__.py`` is imported and its ``INFO``
registered. So is every package named by an entry point of the group ``visionad.algorithms``
(third-party algorithms installed with pip; same layout). Reading metadata
(:func:`list_algorithms`, :func:`get_algorithm_info`) never imports a detector, so it never
imports torch: the web process and config files use it freely. The detector module is imported
the first time its class is needed (:func:`get_algorithm_class`, :func:`create_algorithm`,
:func:`load_algorithm`), and its ``@register_algorithm(INFO)`` binds the class to the record.

A script or notebook may also register a class directly: ``register_algorithm(INFO)(MyDetector)``.

Errors are loud: a package with a detector module but no ``INFO``, a detector that registers no
class, two records under one key, all raise ``AlgorithmPackageError`` naming the file.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import pkgutil
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .checkpoint import read_checkpoint_config
from .info import AlgorithmInfo

if TYPE_CHECKING:  # pragma: no cover
    from .base import AnomalyDetector

__all__ = [
    "ENTRY_POINT_GROUP",
    "AlgorithmPackageError",
    "UnknownAlgorithmError",
    "add_algorithm_package",
    "builtin_algorithm_packages",
    "create_algorithm",
    "discover_algorithms",
    "get_algorithm_class",
    "get_algorithm_info",
    "list_algorithms",
    "load_algorithm",
    "register_algorithm",
    "unregister_algorithm",
]

#: Entry-point group through which installed packages contribute algorithms (value: the package).
ENTRY_POINT_GROUP = "visionad.algorithms"
#: The module of an algorithm package that holds (and registers) its detector class.
DETECTOR_MODULE = "detector"


class UnknownAlgorithmError(KeyError):
    """Raised for a key that no registered algorithm has."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown algorithm"


class AlgorithmPackageError(RuntimeError):
    """An algorithm package breaks the recipe (no INFO, no registered class, a duplicate key)."""


_INFOS: dict[str, AlgorithmInfo] = {}
_DETECTORS: dict[str, str] = {}  # key -> the module whose import registers the class
_CLASSES: dict[str, type[AnomalyDetector]] = {}
_discovered = False


def _add_info(info: AlgorithmInfo, *, detector_module: str) -> None:
    if not isinstance(info, AlgorithmInfo):
        raise TypeError(f"expected an algorithms.info.AlgorithmInfo, got {type(info).__name__}")
    existing = _INFOS.get(info.key)
    if existing is not None and existing is not info and existing != info:
        raise AlgorithmPackageError(
            f"two algorithms are registered as {info.key!r}: from {_DETECTORS[info.key]} and from {detector_module}"
        )
    _INFOS[info.key] = info
    _DETECTORS.setdefault(info.key, detector_module)


def register_algorithm(info: AlgorithmInfo):
    """Class decorator: register an ``AnomalyDetector`` subclass under ``info.key``.

    Use it in the algorithm's ``detector.py`` with the package's record::

        from . import INFO

        @register_algorithm(INFO)
        class MyDetector(AnomalyDetector): ...
    """
    if not isinstance(info, AlgorithmInfo):
        raise TypeError(
            "register_algorithm takes the algorithm's AlgorithmInfo record (see docs/adding-an-algorithm.md), "
            f"got {info!r}"
        )

    def decorator(cls: type[AnomalyDetector]) -> type[AnomalyDetector]:
        current = _CLASSES.get(info.key)
        if current is not None and current is not cls:
            raise AlgorithmPackageError(
                f"an algorithm named {info.key!r} is already registered ({current.__module__}.{current.__qualname__})"
            )
        _add_info(info, detector_module=cls.__module__)
        cls.algorithm_name = info.key
        _CLASSES[info.key] = cls
        return cls

    return decorator


def unregister_algorithm(key: str) -> None:
    """Forget ``key`` (tests and notebooks that registered a temporary algorithm)."""
    for table in (_INFOS, _DETECTORS, _CLASSES):
        table.pop(key, None)


def add_algorithm_package(package: str) -> AlgorithmInfo:
    """Register the algorithm package ``package`` (dotted path) from its ``INFO``; returns the record.

    Imports only the package's ``__init__.py``; the detector module is imported when its class
    is first needed. Raises ``AlgorithmPackageError`` when the package breaks the layout.
    """
    module = importlib.import_module(package)
    where = getattr(module, "__file__", None) or package
    if importlib.util.find_spec(f"{package}.{DETECTOR_MODULE}") is None:
        raise AlgorithmPackageError(f"{package} ({where}) has no {DETECTOR_MODULE} module (detector.py)")
    info = getattr(module, "INFO", None)
    if not isinstance(info, AlgorithmInfo):
        raise AlgorithmPackageError(
            f"{package} has a detector module but its __init__.py ({where}) defines no "
            "INFO = AlgorithmInfo(...) (see docs/adding-an-algorithm.md)"
        )
    _add_info(info, detector_module=f"{package}.{DETECTOR_MODULE}")
    return info


def builtin_algorithm_packages() -> list[str]:
    """Dotted names of the subpackages of ``algorithms/`` that have a detector module (nothing imported)."""
    root = Path(__file__).resolve().parent
    found = []
    for module in pkgutil.iter_modules([str(root)]):
        if module.ispkg and any(m.name == DETECTOR_MODULE for m in pkgutil.iter_modules([str(root / module.name)])):
            found.append(f"{__package__}.{module.name}")
    return sorted(found)


def discover_algorithms(*, force: bool = False) -> None:
    """Register the built-in algorithm packages and those of installed entry points (once).

    Called by every registry query; ``force=True`` looks again (after installing a plugin).
    """
    global _discovered
    if _discovered and not force:
        return
    for package in builtin_algorithm_packages():
        add_algorithm_package(package)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        info = add_algorithm_package(entry_point.value)
        if info.key != entry_point.name:
            raise AlgorithmPackageError(
                f"entry point {entry_point.name!r} of group {ENTRY_POINT_GROUP!r} names package {entry_point.value}, "
                f"whose INFO.key is {info.key!r}: they must be equal"
            )
    _discovered = True


def list_algorithms(pattern: str = "*", *, include_baselines: bool = True) -> list[str]:
    """Sorted keys of the registered algorithms matching a shell-style ``pattern`` (imports no detector)."""
    discover_algorithms()
    return sorted(
        key
        for key, info in _INFOS.items()
        if fnmatch.fnmatch(key, pattern) and (include_baselines or not info.is_baseline)
    )


def get_algorithm_info(key: str) -> AlgorithmInfo:
    """The ``AlgorithmInfo`` record of ``key`` (imports no detector); ``UnknownAlgorithmError`` if none."""
    discover_algorithms()
    try:
        return _INFOS[key]
    except (KeyError, TypeError):
        available = ", ".join(sorted(_INFOS)) or "none"
        raise UnknownAlgorithmError(f"unknown algorithm {key!r}; available: {available}") from None


def get_algorithm_class(key: str) -> type[AnomalyDetector]:
    """The registered ``AnomalyDetector`` subclass of ``key`` (imports its detector module)."""
    get_algorithm_info(key)
    if key not in _CLASSES:
        module = _DETECTORS[key]
        importlib.import_module(module)
        if key not in _CLASSES:
            raise AlgorithmPackageError(
                f"{module} registers no class for {key!r}: decorate its AnomalyDetector subclass with "
                "@register_algorithm(INFO)"
            )
    return _CLASSES[key]


def create_algorithm(key: str, *, tiny: bool = False, **overrides: Any) -> AnomalyDetector:
    """Build a registered algorithm from its publication defaults plus ``overrides``.

    ``tiny=True`` applies the record's ``tiny`` hyperparameters first (small, random-init, 64 px).
    Unknown hyperparameters raise ``TypeError`` naming the algorithm.
    """
    cls = get_algorithm_class(key)
    params = dict(get_algorithm_info(key).tiny) if tiny else {}
    params.update(overrides)
    try:
        return cls(**params)
    except TypeError as exc:
        raise TypeError(f"{key}: {exc}") from exc


def load_algorithm(path: str | Path, *, map_location: Any = "cpu") -> AnomalyDetector:
    """Rebuild any saved algorithm from the directory ``save(path)`` wrote (``config.json`` + ``state.pt``).

    The class comes from the registry by the key recorded in ``config.json``
    (``algorithms.checkpoint``). Raises ``FileNotFoundError`` when there is no saved algorithm
    at ``path``.
    """
    key = read_checkpoint_config(path)["algorithm"]
    return get_algorithm_class(key).load(path, map_location=map_location)
