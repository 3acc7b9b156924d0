"""Datasets: MVTec AD, VisA (both on-disk layouts), user folders and the synthetic industrial suite.

Algorithms get images only (:meth:`Category.train_images`, :meth:`Category.test_images`);
evaluation gets labels and masks through :meth:`Category.ground_truth`. Nothing here imports
torch: :func:`algorithms.data.loaders.make_loader` is the torch adapter.

>>> from algorithms.data import load_category
>>> category = load_category("synthetic/woven", roots={"synthetic": "var/data/synthetic"})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .core import (
    IMAGE_SUFFIXES,
    Category,
    DatasetError,
    GroundTruth,
    ImageList,
    read_image,
    read_mask,
)
from .ids import opaque_id, opaque_id_table
from .registry import (
    BLIND_CATEGORIES,
    BLIND_SUITES,
    DATASETS,
    MVTEC_CATEGORIES,
    SUITES,
    SYNTHETIC_CATEGORIES,
    VISA_CATEGORIES,
    dataset_roots,
    list_categories,
    load_category,
)

__all__ = [
    "BLIND_CATEGORIES",
    "BLIND_SUITES",
    "DATASETS",
    "IMAGE_SUFFIXES",
    "MVTEC_CATEGORIES",
    "SUITES",
    "SYNTHETIC_CATEGORIES",
    "VISA_CATEGORIES",
    "Category",
    "DatasetError",
    "GroundTruth",
    "ImageList",
    "dataset_roots",
    "generate_suite",
    "list_categories",
    "load_category",
    "make_loader",
    "opaque_id",
    "opaque_id_table",
    "read_image",
    "read_mask",
]


def __getattr__(name: str) -> Any:
    # Lazy: ``make_loader`` imports torch, and ``python -m algorithms.data.synthetic`` must not
    # find its module already imported by the package.
    if name == "make_loader":
        from .loaders import make_loader

        return make_loader
    if name == "generate_suite":
        from .synthetic import generate_suite

        return generate_suite
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
