"""Catalog reads: datasets, categories, suites and methods."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from algorithms.info import VISIONAD_PAPER_ALGORITHMS

from ..models import Category, Dataset, Method, Suite
from .visibility import Viewer, method_visible_q


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.annotate(n_categories=Count("categories")).order_by("order", "key")


def dataset_get(*, key: str) -> Dataset:
    return Dataset.objects.get(key=key)


def category_list(*, dataset_key: str | None = None, suite_key: str | None = None) -> QuerySet[Category]:
    """Categories (without their id lists loaded), with the dataset joined."""
    qs = Category.objects.select_related("dataset").defer("test_ids", "test_files").order_by("dataset__order", "key")
    if dataset_key:
        qs = qs.filter(dataset__key=dataset_key)
    if suite_key:
        qs = qs.filter(suites__key=suite_key)
    return qs


def category_get(*, key: str) -> Category:
    return Category.objects.select_related("dataset").defer("test_files").get(key=key)


class GroundTruthNotPublic(Exception):
    """The category belongs to a blind dataset: its id -> file-name table is not published."""


def category_test_files(*, key: str) -> dict[str, str]:
    """``{published id: file name}`` of a category whose ground truth is public.

    Raises ``Category.DoesNotExist``, or :class:`GroundTruthNotPublic` for a blind category
    (its file names hold the labels: ``test/good/...``).
    """
    category = Category.objects.select_related("dataset").get(key=key)
    if not category.dataset.ground_truth_public:
        raise GroundTruthNotPublic(key)
    return dict(category.test_files or {})


def suite_exists(*, key: str) -> bool:
    return Suite.objects.filter(key=key).exists()


def suite_choices() -> list[tuple[str, str]]:
    """``(key, name)`` of every suite, in display order (VADI first)."""
    return list(Suite.objects.order_by("order", "key").values_list("key", "name"))


def suite_datasets(*, suite_key: str) -> list[Dataset]:
    """The datasets that have a category in the suite, in display order."""
    return list(Dataset.objects.filter(categories__suites__key=suite_key).distinct().order_by("order", "key"))


def suite_list() -> QuerySet[Suite]:
    categories = Category.objects.only("id", "key").order_by("dataset__order", "key")
    return Suite.objects.prefetch_related(Prefetch("categories", queryset=categories)).order_by("order", "key")


def method_list(*, viewer: Viewer, owner=None, reproducible: bool = False) -> QuerySet[Method]:
    """The methods ``viewer`` may see (``visibility.method_visible_q``), by name.

    With ``owner``, only the ones that user owns (their uploads); with ``reproducible``, only
    the registered algorithms our workers can re-train.
    """
    qs = Method.objects.filter(method_visible_q(viewer)).order_by("name")
    if owner is not None:
        qs = qs.filter(owner=owner)
    if reproducible:
        qs = qs.exclude(algorithm_key="")
    return qs


def visionad_paper_coverage(methods) -> tuple[int, int, list[str]]:
    """``(held, 16, missing keys)``: how many of the VisionAD paper's algorithms ``methods`` reproduce."""
    held = {m.algorithm_key for m in methods} & VISIONAD_PAPER_ALGORITHMS
    return len(held), len(VISIONAD_PAPER_ALGORITHMS), sorted(VISIONAD_PAPER_ALGORITHMS - held)


def method_get(*, key: str, viewer: Viewer) -> Method:
    """The method ``key`` if ``viewer`` may see it; ``Method.DoesNotExist`` otherwise (hidden = absent)."""
    return method_list(viewer=viewer).get(key=key)
