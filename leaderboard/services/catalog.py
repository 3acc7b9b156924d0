"""Catalog writes: datasets, categories and suites from ``algorithms.data``; methods from the registry.

Both sources are torch-free: ``algorithms.data`` lists suites and categories, and the registry
reads each algorithm's ``AlgorithmInfo`` without importing its model code. A new algorithm
appears on the site after ``manage.py sync_catalog --methods`` (or ``setup_demo``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from django.conf import settings
from django.db import transaction

from ..cache import leaderboard_cache_invalidate
from ..models import Category, Dataset, Method, Suite

logger = logging.getLogger(__name__)

#: Display metadata for the dataset families we know; unknown ones get a title-cased key.
DATASET_INFO: dict[str, dict] = {
    "mvtec": {
        "name": "MVTec AD",
        "order": 1,
        "url": "https://www.mvtec.com/company/research/datasets/mvtec-ad",
        "description": "15 categories of industrial objects and textures (Bergmann et al., CVPR 2019).",
    },
    "visa": {
        "name": "VisA",
        "order": 2,
        "url": "https://github.com/amazon-science/spot-diff",
        "description": "12 categories of complex objects, several per image (Zou et al., ECCV 2022).",
    },
    "synthetic": {
        "name": "Synthetic",
        "order": 3,
        "url": "",
        "description": "Generated textures with exact defect masks; used by the demo and the tests.",
    },
    "folder": {"name": "Folder", "order": 9, "url": "", "description": "A dataset in the generic folder layout."},
    "blind": {
        "name": "Blind",
        "order": 4,
        "url": "",
        "description": "Synthetic categories generated on this server with a secret seed; the ground truth "
        "never leaves the server.",
        "ground_truth_public": False,
    },
}

#: Display metadata for the suites; the order puts VADI first.
SUITE_INFO: dict[str, dict] = {
    "vadi": {
        "name": "VADI (MVTec AD + VisA)",
        "order": 0,
        "description": "The 27 categories of MVTec AD (15) and VisA (12), every category weighted equally.",
    },
    "mvtec": {"name": "MVTec AD", "order": 1, "description": "The 15 categories of MVTec AD."},
    "visa": {"name": "VisA", "order": 2, "description": "The 12 categories of VisA."},
    "synthetic": {
        "name": "Synthetic",
        "order": 3,
        "description": "Generated categories with exact masks (the demo suite).",
    },
    "blind": {
        "name": "Blind",
        "order": 4,
        "description": "Synthetic textures and objects (easy and hard) generated on this server with a secret "
        "seed. Test images are published without labels; ground truth never leaves the server.",
        "is_blind": True,
    },
}


def _dataset_of(key: str) -> str:
    dataset, sep, name = key.partition("/")
    if not sep or not dataset or not name:
        raise ValueError(f"category key {key!r} is not of the form '<dataset>/<category>'")
    return dataset


def _on_disk(roots: Mapping[str, object], key: str) -> bool:
    """Whether the category's folder exists under its dataset root (``<root>/<category>``)."""
    dataset, _, name = key.partition("/")
    root = roots.get(dataset)
    return bool(root) and (Path(str(root)) / name).is_dir()


@transaction.atomic
def catalog_sync(*, suites: Iterable[str] | None = None, roots: Mapping[str, object] | None = None) -> None:
    """Create or update the Dataset, Category and Suite rows of ``suites`` (default: all of them).

    Test-image ids are opaque (``algorithms.data.ids``, keyed by ``VADI_TEST_ID_KEY``): the
    sorted ids in ``test_ids``, the id -> path table in ``test_files``. They are read from disk only
    for categories whose folder exists under their
    dataset root; a dataset or category that is absent (MVTec AD and VisA usually are on a
    development machine) keeps the ids it had. A category folder that exists but is malformed
    raises ``DatasetError`` (a ``ValueError``) naming the problem, and nothing is written.
    """
    from algorithms import data

    known = data.SUITES
    suite_keys = list(known) if suites is None else list(suites)
    unknown = [key for key in suite_keys if key not in known]
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(map(repr, unknown))}; expected some of: {', '.join(known)}")
    roots = dict(settings.DATASET_ROOTS if roots is None else roots)

    categories: dict[str, Category] = {}
    datasets: dict[str, Dataset] = {}
    for suite_key in suite_keys:
        keys = data.list_categories(suite_key)
        for key in keys:
            if key in categories:
                continue
            dataset_key = _dataset_of(key)
            if dataset_key not in datasets:
                info = DATASET_INFO.get(dataset_key, {"name": dataset_key.title(), "order": 8})
                datasets[dataset_key], _ = Dataset.objects.update_or_create(
                    key=dataset_key,
                    defaults={
                        "name": info["name"],
                        "order": info["order"],
                        "url": info.get("url", ""),
                        "description": info.get("description", ""),
                        "ground_truth_public": info.get("ground_truth_public", True),
                    },
                )
            defaults = {"dataset": datasets[dataset_key], "name": key.partition("/")[2]}
            if _on_disk(roots, key):
                table = data.opaque_id_table(
                    settings.VADI_TEST_ID_KEY, key, data.load_category(key, roots=roots).test_ids
                )
                defaults["test_ids"] = list(table)
                defaults["test_files"] = table
            categories[key], _ = Category.objects.update_or_create(key=key, defaults=defaults)
        info = SUITE_INFO.get(suite_key, {"name": suite_key.title(), "order": 8, "description": ""})
        suite, _ = Suite.objects.update_or_create(
            key=suite_key,
            defaults={
                "name": info["name"],
                "order": info["order"],
                "description": info["description"],
                "is_blind": info.get("is_blind", False),
            },
        )
        suite.categories.set([categories[key] for key in keys])
    leaderboard_cache_invalidate()


@transaction.atomic
def method_sync_from_registry() -> list[Method]:
    """Create or update one Method per registered algorithm (key = registry key) from its ``AlgorithmInfo``."""
    from algorithms import get_algorithm_info, list_algorithms

    methods = []
    for name in list_algorithms():
        info = get_algorithm_info(name)
        method = Method.objects.filter(key=name).first() or Method(key=name)
        method.name = info.display_name
        method.family = info.family.value
        method.secondary_family = info.secondary_family.value if info.secondary_family else ""
        method.description = info.description
        method.deviations = info.deviations
        method.paper_title = info.paper_title
        method.paper_url = info.paper_url
        method.code_url = info.code_url
        method.code_licence = info.code_licence
        method.schedule = info.schedule.to_json()
        method.map_variants = list(info.map_variants)
        method.algorithm_key = name
        method.is_baseline = info.is_baseline
        method.full_clean()
        method.save()
        methods.append(method)
    leaderboard_cache_invalidate()
    return methods
