"""Catalog reads: datasets, categories, suites and methods."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from ..models import Category, Dataset, Method, Suite


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.annotate(n_categories=Count("categories")).order_by("order", "key")


def dataset_get(*, key: str) -> Dataset:
    return Dataset.objects.get(key=key)


def category_list(*, dataset_key: str | None = None, suite_key: str | None = None) -> QuerySet[Category]:
    """Categories (without their id lists loaded), with the dataset joined."""
    qs = Category.objects.select_related("dataset").defer("test_ids").order_by("dataset__order", "key")
    if dataset_key:
        qs = qs.filter(dataset__key=dataset_key)
    if suite_key:
        qs = qs.filter(suites__key=suite_key)
    return qs


def category_get(*, key: str) -> Category:
    return Category.objects.select_related("dataset").get(key=key)


def suite_list() -> QuerySet[Suite]:
    categories = Category.objects.only("id", "key").order_by("dataset__order", "key")
    return Suite.objects.prefetch_related(Prefetch("categories", queryset=categories)).order_by("order", "key")


def method_list() -> QuerySet[Method]:
    return Method.objects.order_by("name")


def method_get(*, key: str) -> Method:
    return Method.objects.get(key=key)
