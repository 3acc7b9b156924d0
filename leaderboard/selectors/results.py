"""Result lists: filtered, with their sources joined (for the API, the method page and downloads)."""

from __future__ import annotations

from django.db.models import QuerySet

from ..models import Result
from .leaderboard import provenance_check, visible_results
from .metrics import metric_get


def result_list(
    *,
    method: str | None = None,
    category: str | None = None,
    metric: str | None = None,
    provenance: str | None = None,
    evaluator_version: str | None = None,
    dataset: str | None = None,
    current_only: bool = True,
) -> QuerySet[Result]:
    """Visible results (reproduced, or from public submissions not held for review), filtered.

    Filters take keys (method key, category key, metric key, dataset key). Unknown metric or
    provenance values raise ``ValueError`` naming the valid ones.
    """
    qs = Result.objects.filter(visible_results()).select_related("method", "category", "category__dataset")
    if current_only:
        qs = qs.filter(is_current=True)
    if method:
        qs = qs.filter(method__key=method)
    if category:
        qs = qs.filter(category__key=category)
    if metric:
        metric_get(metric)
        qs = qs.filter(metric=metric)
    if provenance:
        provenance_check(provenance)
        qs = qs.filter(provenance=provenance)
    if evaluator_version:
        qs = qs.filter(evaluator_version=evaluator_version)
    if dataset:
        qs = qs.filter(category__dataset__key=dataset)
    return qs.order_by("method__name", "category__dataset__order", "category__key", "metric", "variant", "-created_at")
