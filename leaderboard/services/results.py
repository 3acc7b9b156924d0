"""Result writes: record one metric value, publish a run's or a submission's results.

Tables read only *current* results. ``results_publish`` makes one source (a benchmark run or a
submission) current and supersedes what was current before for the same method, category,
metric, variant, provenance and evaluator version; superseded rows stay as history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..cache import leaderboard_cache_invalidate
from ..models import BenchmarkRun, Category, Method, Provenance, Result, Submission
from ..selectors.metrics import UnknownMetricError, metric_get


def _validate_source(
    *, method: Method, provenance: str, benchmark_run: BenchmarkRun | None, submission: Submission | None
) -> None:
    if provenance not in Provenance.values:
        raise ValidationError({"provenance": f"unknown provenance {provenance!r}; expected one of {Provenance.values}"})
    if provenance == Provenance.REPRODUCED:
        if benchmark_run is None or submission is not None:
            raise ValidationError({"provenance": "a reproduced result needs a benchmark_run and no submission"})
        if benchmark_run.method_id != method.pk:
            raise ValidationError(
                {"method": f"benchmark run {benchmark_run.pk} is for method {benchmark_run.method_id}, not {method.pk}"}
            )
    else:
        if submission is None or benchmark_run is not None:
            raise ValidationError({"provenance": "a server-scored result needs a submission and no benchmark_run"})
        if submission.method_id != method.pk:
            raise ValidationError(
                {"method": f"submission {submission.pk} is for method {submission.method_id}, not {method.pk}"}
            )


@transaction.atomic
def result_record(
    *,
    method: Method,
    category: Category,
    metric: str,
    value: float,
    provenance: str,
    evaluator_version: str,
    variant: str = "default",
    is_primary_variant: bool = True,
    benchmark_run: BenchmarkRun | None = None,
    submission: Submission | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Result:
    """Create or update the result of one source for ``category``/``metric``/``variant``/evaluator.

    The row is keyed like the database's unique constraints (the run or submission, category,
    metric, variant, evaluator version), so recording again (a retried job) updates it instead
    of adding a second one. Everything is validated before anything is written: the metric key
    against the registry, the value (finite, inside the metric's range), the provenance against
    its source and the source against the method. A new row is not current until
    ``results_publish`` runs; re-recording a current row keeps it current and clears the caches.

    Raises
    ------
    django.core.exceptions.ValidationError
        Naming the field at fault.
    """
    try:
        spec = metric_get(metric)
    except UnknownMetricError as exc:
        raise ValidationError({"metric": str(exc)}) from exc
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError({"value": f"{metric} value {value!r} is not a number"}) from exc
    if not math.isfinite(number):
        raise ValidationError({"value": f"{metric} value is {number!r}; a result must be a finite number"})
    if not spec.low <= number <= spec.high:
        raise ValidationError({"value": f"{metric} value {number!r} is outside [{spec.low}, {spec.high}]"})
    if not evaluator_version:
        raise ValidationError({"evaluator_version": "evaluator_version must be given"})
    _validate_source(method=method, provenance=provenance, benchmark_run=benchmark_run, submission=submission)

    source = {"benchmark_run": benchmark_run} if benchmark_run is not None else {"submission": submission}
    result = (
        Result.objects.select_for_update()
        .filter(**source, category=category, metric=metric, variant=variant, evaluator_version=evaluator_version)
        .first()
    )
    if result is None:
        result = Result(
            **source,
            method=method,
            category=category,
            metric=metric,
            variant=variant,
            evaluator_version=evaluator_version,
            provenance=provenance,
        )
    result.value = number
    result.is_primary_variant = is_primary_variant
    result.extra = dict(extra or {})
    result.full_clean()
    result.save()
    if result.is_current:
        leaderboard_cache_invalidate()
    return result


@transaction.atomic
def results_publish(*, benchmark_run: BenchmarkRun | None = None, submission: Submission | None = None) -> int:
    """Make every result of one source current; supersede the previous current ones. Returns the count.

    Exactly one of ``benchmark_run`` and ``submission`` must be given. For each of the source's
    results, a current result of another source with the same method, category, metric,
    variant, provenance and evaluator version stops being current (it stays as history).
    Publishing the same source twice changes nothing. A published run is marked
    ``is_published``. Cached tables are invalidated. Returns the number of results that became
    current.
    """
    if (benchmark_run is None) == (submission is None):
        raise ValueError("results_publish needs exactly one of benchmark_run= or submission=")
    source = {"benchmark_run": benchmark_run} if benchmark_run is not None else {"submission": submission}
    own = list(
        Result.objects.select_for_update()
        .filter(**source)
        .values_list("pk", "method_id", "category_id", "metric", "variant", "provenance", "evaluator_version")
    )
    own_ids = {row[0] for row in own}
    keys = {row[1:] for row in own}
    method_ids = {row[1] for row in own}
    superseded = [
        pk
        for pk, *key in Result.objects.select_for_update()
        .filter(is_current=True, method_id__in=method_ids)
        .values_list("pk", "method_id", "category_id", "metric", "variant", "provenance", "evaluator_version")
        if pk not in own_ids and tuple(key) in keys
    ]
    now = timezone.now()  # touch updated_at: other processes' caches key on it (selectors.leaderboard)
    if superseded:
        Result.objects.filter(pk__in=superseded).update(is_current=False, updated_at=now)
    published = Result.objects.filter(pk__in=own_ids, is_current=False).update(is_current=True, updated_at=now)
    if benchmark_run is not None and not benchmark_run.is_published:
        benchmark_run.is_published = True
        benchmark_run.save(update_fields=["is_published", "updated_at"])
    leaderboard_cache_invalidate()
    return published
