"""Result lists and the per-page result tables: filtered, grouped, with their sources joined.

``result_list`` serves the API and the downloads, as the viewer may see them
(``visibility.result_visible_q``); the ``*_table`` functions shape rows for one page each (a
method, a category, a run or submission), and ``method_timings`` reads the training and
inference times that a method's visible benchmark runs measured.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.db.models import BooleanField, ExpressionWrapper, QuerySet

from ..models import BenchmarkJob, BenchmarkRun, Method, Result, Submission
from .leaderboard import provenance_check, table_results_q
from .metrics import metric_get
from .visibility import Viewer, published_result_q, result_visible_q, run_visible_q


def result_list(
    *,
    viewer: Viewer,
    method: str | None = None,
    category: str | None = None,
    metric: str | None = None,
    provenance: str | None = None,
    evaluator_version: str | None = None,
    dataset: str | None = None,
    submission: int | None = None,
    current_only: bool = True,
) -> QuerySet[Result]:
    """The results ``viewer`` may see, filtered; each annotated with ``published`` (from a published source).

    Everyone sees published results (of published runs and submissions); owners also their own
    submissions' results; staff all. Filters take keys (method key, category key, metric key,
    dataset key, submission id). Unknown metric or provenance values raise ``ValueError`` naming the valid ones.
    """
    qs = (
        Result.objects.filter(result_visible_q(viewer))
        .annotate(published=ExpressionWrapper(published_result_q(), output_field=BooleanField()))
        .select_related("method", "category", "category__dataset")
    )
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
    if submission is not None:
        qs = qs.filter(submission_id=submission)
    return qs.order_by("method__name", "category__dataset__order", "category__key", "metric", "variant", "-created_at")


@dataclass(frozen=True)
class MethodResults:
    """Every result of one method that the viewer may see, arranged for its page."""

    results: tuple[Result, ...]  # current, history and unpublished, in ``result_list`` order (the download)
    current_table: tuple[dict[str, Any], ...]  # primary variant: one row per category x provenance x evaluator
    current_variants: tuple[Result, ...]  # current values of the non-primary map variants
    history: tuple[Result, ...]  # superseded published results
    unpublished: tuple[Result, ...]  # never published (private, held, running): owners and staff only


def method_result_table(*, method_key: str, viewer: Viewer) -> MethodResults:
    """The method page's tables: current primary-variant values grouped per category, the rest listed."""
    results = tuple(
        result_list(viewer=viewer, method=method_key, current_only=False).select_related("benchmark_run", "submission")
    )
    current = [r for r in results if r.is_current and r.published]
    by_category: dict[str, dict] = defaultdict(dict)
    for r in current:
        if r.is_primary_variant:
            by_category[r.category.key].setdefault((r.provenance, r.evaluator_version), {})[r.metric] = r
    table = tuple(
        {"category": cat, "provenance": prov, "evaluator_version": ev, "values": values}
        for cat, groups in sorted(by_category.items())
        for (prov, ev), values in sorted(groups.items())
    )
    return MethodResults(
        results=results,
        current_table=table,
        current_variants=tuple(r for r in current if not r.is_primary_variant),
        history=tuple(r for r in results if not r.is_current and r.published),
        unpublished=tuple(r for r in results if not r.published),
    )


def category_result_table(*, category_key: str) -> list[dict[str, Any]]:
    """A category's published current primary-variant values: one row per method x provenance x evaluator.

    A table of the leaderboard: the same for everyone (``leaderboard.table_results_q``).
    """
    table: dict[tuple, dict] = {}
    rows = (
        Result.objects.filter(table_results_q(), category__key=category_key, is_primary_variant=True)
        .select_related("method")
        .order_by("method__name", "metric", "variant", "-created_at")
    )
    for r in rows:
        table.setdefault((r.method.name, r.method.key, r.provenance, r.evaluator_version), {})[r.metric] = r
    return [
        {"method": name, "method_key": mkey, "provenance": prov, "evaluator_version": ev, "values": values}
        for (name, mkey, prov, ev), values in sorted(table.items())
    ]


def source_result_table(*, benchmark_run: BenchmarkRun | None = None, submission: Submission | None = None):
    """Every result of one run or submission (current or not): a row per category x variant x evaluator.

    The caller has checked that the source is visible to whoever asks (``jobs.submission_get``,
    ``jobs.benchmark_run_get``): whoever may see a run or a submission may see all its values.
    """
    if (benchmark_run is None) == (submission is None):
        raise ValueError("source_result_table needs exactly one of benchmark_run= or submission=")
    source = {"benchmark_run": benchmark_run} if benchmark_run is not None else {"submission": submission}
    results = Result.objects.filter(**source).select_related("category").order_by("category__key", "metric", "variant")
    grouped: dict[tuple, dict] = {}
    for r in results:
        grouped.setdefault((r.category.key, r.variant, r.evaluator_version), {})[r.metric] = r
    return [
        {"category": cat, "variant": variant, "evaluator_version": ev, "values": values}
        for (cat, variant, ev), values in grouped.items()
    ]


def method_timings(*, method: Method, viewer: Viewer) -> list[dict[str, Any]]:
    """Training and inference times per category from the method's visible benchmark runs that measured them."""
    rows = []
    runs = BenchmarkRun.objects.filter(run_visible_q(viewer), method=method)
    jobs = (
        BenchmarkJob.objects.filter(run__in=runs)
        .exclude(timings={})
        .select_related("category", "run")
        .order_by("-run__created_at", "category__key")
    )
    for job in jobs:
        t = job.timings or {}
        rows.append(
            {
                "run": job.run,
                "category": job.category.key,
                "epochs": t.get("epochs"),
                "epochs_planned": t.get("epochs_planned"),
                "schedule_complete": t.get("schedule_complete", not t.get("budget_exhausted", False)),
                "peak_memory_mb": t.get("peak_memory_mb"),
                "params_total": ((job.output or {}).get("model") or {}).get("params_total"),
                "params_trainable": ((job.output or {}).get("model") or {}).get("params_trainable"),
                "train_seconds": t.get("train_seconds"),
                "train_seconds_per_image": t.get("train_seconds_per_image"),
                "inference_seconds": t.get("inference_seconds"),
                "inference_seconds_per_image": t.get("inference_seconds_per_image"),
                "hardware": (job.run.environment or {}).get("hardware", ""),
            }
        )
    return rows
