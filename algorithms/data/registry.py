"""Category keys, suites and dataset roots.

A category key is ``<dataset>/<category>``: ``mvtec/bottle``, ``visa/pcb1``, ``synthetic/woven``,
``folder/<name>``, ``blind/<name>`` (the blind suite: generated on the server with a secret seed,
its ground truth never published). Roots come from explicit overrides, else the environment
(``VADI_MVTEC_ROOT``, ``VADI_VISA_ROOT``, ``VADI_SYNTHETIC_ROOT``, ``VADI_FOLDER_ROOT``,
``VADI_BLIND_ROOT``), else
``<VADI_DATA_ROOT or ./var/data>/<dataset>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .core import Category, DatasetError
from .layouts import read_mvtec_layout, read_visa_category

__all__ = [
    "BLIND_CATEGORIES",
    "BLIND_SUITES",
    "DATASETS",
    "MVTEC_CATEGORIES",
    "SUITES",
    "SYNTHETIC_CATEGORIES",
    "VISA_CATEGORIES",
    "dataset_roots",
    "list_categories",
    "load_category",
    "parse_key",
]

MVTEC_CATEGORIES: tuple[str, ...] = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
    "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)  # fmt: skip
VISA_CATEGORIES: tuple[str, ...] = (
    "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
    "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum",
)  # fmt: skip
#: The synthetic industrial suite (:mod:`algorithms.data.synthetic`): five textures, four objects.
SYNTHETIC_CATEGORIES: tuple[str, ...] = (
    "woven", "grain", "grid", "leather", "brushed_metal", "washer", "screw", "pill", "pcb",
)  # fmt: skip

#: The blind suite: synthetic-generator categories (textures and objects, easy and hard) written on
#: the server with a secret seed; users get images only, the ground truth never leaves the server.
BLIND_CATEGORIES: tuple[str, ...] = ("woven", "grid", "washer", "screw")
#: Suites whose ground truth is not public (no id -> file-name table, v2 bundles only).
BLIND_SUITES: frozenset[str] = frozenset({"blind"})

#: Dataset names with a root; ``folder`` holds user categories, one sub-folder each.
DATASETS: tuple[str, ...] = ("mvtec", "visa", "synthetic", "folder", "blind")
_ENV_VARS = {name: f"VADI_{name.upper()}_ROOT" for name in DATASETS}

SUITES: dict[str, tuple[str, ...]] = {
    "mvtec": tuple(f"mvtec/{c}" for c in MVTEC_CATEGORIES),
    "visa": tuple(f"visa/{c}" for c in VISA_CATEGORIES),
    "vadi": tuple(f"mvtec/{c}" for c in MVTEC_CATEGORIES) + tuple(f"visa/{c}" for c in VISA_CATEGORIES),
    "synthetic": tuple(f"synthetic/{c}" for c in SYNTHETIC_CATEGORIES),
    "blind": tuple(f"blind/{c}" for c in BLIND_CATEGORIES),
}

_KNOWN = {
    "mvtec": MVTEC_CATEGORIES,
    "visa": VISA_CATEGORIES,
    "synthetic": SYNTHETIC_CATEGORIES,
    "blind": BLIND_CATEGORIES,
}


def list_categories(suite: str) -> list[str]:
    """The category keys of a suite (``mvtec``, ``visa``, ``vadi``, ``synthetic``, ``blind``), in display order."""
    try:
        return list(SUITES[suite])
    except (KeyError, TypeError):
        raise DatasetError(f"unknown suite {suite!r}; known suites: {', '.join(SUITES)}") from None


def dataset_roots(overrides: Mapping[str, str | Path] | None = None) -> dict[str, Path]:
    """The root folder of each dataset.

    Parameters
    ----------
    overrides : mapping, optional
        ``{dataset: path}`` for some of ``mvtec``, ``visa``, ``synthetic``, ``folder``; these
        win over the environment. ``None`` values are ignored.

    Returns
    -------
    dict of str to Path
        One entry per dataset in :data:`DATASETS`.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DATASETS))
    if unknown:
        raise DatasetError(f"unknown dataset(s) in root overrides: {unknown}; known: {', '.join(DATASETS)}")
    base = Path(os.environ.get("VADI_DATA_ROOT") or Path("var") / "data")
    roots = {}
    for name in DATASETS:
        value = overrides.get(name) or os.environ.get(_ENV_VARS[name]) or base / name
        roots[name] = Path(value).expanduser()
    return roots


def parse_key(key: str) -> tuple[str, str]:
    """Split and check a category key: ``"mvtec/bottle"`` -> ``("mvtec", "bottle")``."""
    if not isinstance(key, str) or key.count("/") != 1:
        raise DatasetError(f"category key {key!r} must look like '<dataset>/<category>', e.g. 'mvtec/bottle'")
    dataset, name = key.split("/")
    if dataset not in DATASETS:
        raise DatasetError(f"category key {key!r}: unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if dataset in _KNOWN:
        if name not in _KNOWN[dataset]:
            raise DatasetError(f"category key {key!r}: unknown {dataset} category; known: {', '.join(_KNOWN[dataset])}")
    elif not name or name in (".", "..") or name.startswith(".") or "\\" in name:
        raise DatasetError(f"category key {key!r}: {name!r} is not a valid folder name")
    return dataset, name


def load_category(key: str, *, roots: Mapping[str, str | Path] | None = None) -> Category:
    """Scan and validate one category on disk (images are decoded later, lazily).

    Parameters
    ----------
    key : str
        ``<dataset>/<category>``.
    roots : mapping, optional
        Root overrides, as for :func:`dataset_roots`.

    Returns
    -------
    Category

    Raises
    ------
    DatasetError
        For an unknown key, or a missing or malformed root (the message names the path and
        what was expected there).
    """
    dataset, name = parse_key(key)
    root = dataset_roots(roots)[dataset]
    if not root.is_dir():
        raise DatasetError(
            f"{key}: dataset root {root} does not exist (set {_ENV_VARS[dataset]} or VADI_DATA_ROOT, "
            f"or pass roots={{'{dataset}': ...}})"
        )
    if dataset == "visa":
        return read_visa_category(key, root, name)
    layout = "folder" if dataset == "folder" else "mvtec"
    return read_mvtec_layout(key, root / name, layout=layout)
