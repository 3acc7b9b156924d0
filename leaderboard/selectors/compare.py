"""Two methods side by side on one suite: per category and per metric, with the differences.

Counts what the leaderboard counts (``leaderboard.result_cells``: current published values of the
primary map variant, one evaluator version, a reproduced value preferred to a server-scored one),
in a constant number of queries however many methods there are.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models import Method, Result
from .leaderboard import (
    MethodRef,
    default_evaluator_version,
    evaluator_versions,
    result_cells,
    suite_categories,
    suite_get,
    table_results_q,
)
from .metrics import MetricInfo, metric_list


@dataclass(frozen=True)
class Pair:
    """One metric on one category (or the mean): A's value, B's value and A minus B."""

    a: float | None
    b: float | None
    a_capped: bool = False  # the training hit its wall-clock cap (schedule incomplete)
    b_capped: bool = False

    @property
    def diff(self) -> float | None:
        return None if self.a is None or self.b is None else self.a - self.b


@dataclass(frozen=True)
class CompareRow:
    category: str
    pairs: dict[str, Pair]  # per metric key


@dataclass(frozen=True)
class Comparison:
    suite_key: str
    suite_name: str
    evaluator_version: str | None
    metrics: tuple[MetricInfo, ...]
    choices: tuple[MethodRef, ...]  # methods with results on this suite
    method_a: MethodRef | None
    method_b: MethodRef | None
    rows: tuple[CompareRow, ...]
    means: dict[str, Pair]  # per metric: means over the categories where both have a value
    n_common: dict[str, int]  # per metric: those categories


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def method_comparison(
    *, suite_key: str, method_a: str | None, method_b: str | None, evaluator_version: str | None = None
) -> Comparison:
    """``method_a`` and ``method_b`` (keys; unknown ones are left unchosen) side by side on ``suite_key``.

    Raises ``SuiteNotFoundError`` for an unknown suite. Five queries whatever the number of methods.
    """
    suite = suite_get(key=suite_key)
    categories = suite_categories(suite=suite)
    ids = [c.pk for c in categories]
    metrics = tuple(metric_list())
    version = evaluator_version or (default_evaluator_version(evaluator_versions(category_ids=ids)) if ids else None)
    choices = tuple(
        MethodRef(id=m["id"], key=m["key"], name=m["name"], is_baseline=m["is_baseline"])
        for m in Method.objects.filter(
            pk__in=Result.objects.filter(
                table_results_q(), category_id__in=ids, evaluator_version=version, is_primary_variant=True
            ).values("method_id")
        )
        .order_by("name")
        .values("id", "key", "name", "is_baseline")
    )
    by_key = {m.key: m for m in choices}
    a, b = by_key.get(method_a or ""), by_key.get(method_b or "")
    chosen = [m.id for m in (a, b) if m is not None]
    values: dict[tuple[int, str, str], tuple[float, bool]] = {}
    if chosen and version is not None:
        cells, _, _ = result_cells(category_ids=ids, evaluator_version=version, method_ids=chosen)
        for cell in cells:
            values[(cell.method_id, cell.category_key, cell.metric)] = (cell.value, not cell.schedule_complete)

    def pair(category: str, metric: str) -> Pair:
        va = values.get((a.id, category, metric)) if a else None
        vb = values.get((b.id, category, metric)) if b else None
        return Pair(
            a=va[0] if va else None, b=vb[0] if vb else None, a_capped=bool(va and va[1]), b_capped=bool(vb and vb[1])
        )

    rows = tuple(CompareRow(c.key, {m.key: pair(c.key, m.key) for m in metrics}) for c in categories)
    means, n_common = {}, {}
    for m in metrics:
        both = [row.pairs[m.key] for row in rows if row.pairs[m.key].diff is not None]
        n_common[m.key] = len(both)
        means[m.key] = Pair(a=_mean([p.a for p in both]), b=_mean([p.b for p in both]))
    return Comparison(
        suite_key=suite.key,
        suite_name=suite.name,
        evaluator_version=version,
        metrics=metrics,
        choices=choices,
        method_a=a,
        method_b=b,
        rows=rows,
        means=means,
        n_common=n_common,
    )
