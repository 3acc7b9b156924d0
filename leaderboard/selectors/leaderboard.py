"""The leaderboard reads: which results count, and the suite aggregation (VADI and the others).

All tables on the site and in the API come from ``result_cells``, which applies the one set of
rules for what counts: current results of the primary map variant, of one evaluator version,
from published sources (``table_results_q``: a published run, or a scored public submission not
held or rejected by a review; ``visibility``); tables look the same to every viewer. When a
method has both a reproduced and a
server-scored result for a category (and no provenance filter is set), the reproduced one wins.

``suite_leaderboard`` is the single place where a suite is aggregated: per metric, the mean over
the suite's categories with every category weighted equally, the *population* standard
deviation across categories (``ddof=0``, numpy's default) and the category count. A method is
ranked only when it has every metric on every category of the suite and every one of those
values comes from a training that completed its schedule (a run whose training hit the
wall-clock cap is "schedule incomplete": shown, never ranked); the others are listed as
incomplete. Values of runs with several seeds are means over the seeds; each row also carries the
spread across seeds (``seed_spread``), the random-initialisation flag and the cost
(``method_cost``), all read in the same one query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Max, Q

from ..cache import cached
from ..models import Category, Provenance, Result, Suite
from .metrics import MetricInfo, metric_get, metric_list
from .visibility import published_result_q


class InvalidFilterError(ValueError):
    """A filter value that no result can have (the caller answers 400, naming it)."""


def provenance_check(provenance: str | None) -> None:
    """Raise ``InvalidFilterError`` unless ``provenance`` is None or a ``Provenance`` value."""
    if provenance is not None and provenance not in Provenance.values:
        raise InvalidFilterError(f"unknown provenance {provenance!r}; expected one of: {', '.join(Provenance.values)}")


class SuiteNotFoundError(LookupError):
    """No suite with that key."""


@dataclass(frozen=True)
class Cell:
    """One counted value: a method's result for one category and metric, and where it came from."""

    method_id: int
    category_id: int
    category_key: str
    metric: str
    value: float
    provenance: str
    evaluator_version: str
    variant: str
    benchmark_run_id: int | None
    submission_id: int | None
    result_id: int
    schedule_complete: bool = True  # False: the training hit its wall-clock cap (shown, never ranked)
    pretrained: bool | None = None  # the backbone's flag (None: no backbone, or server-scored)
    seed_values: tuple[float, ...] | None = None  # every seed's value when the run had several
    cost: dict | None = None  # Result.extra["cost"]: times, memory, parameters, hardware (reproduced)


@dataclass(frozen=True)
class Aggregate:
    """Mean and population std (ddof=0) over categories, each weighted equally; ``n`` categories."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class Cost:
    """What a method's results cost to compute, over the suite's categories (reproduced results only).

    ``inference_ms_per_image``: mean over categories of the inference time per test image;
    ``train_seconds``: mean over categories of the training time (``fit`` + ``pre_eval``);
    ``peak_memory_mb``: the largest peak over categories (``memory_measure`` says how it was
    measured); parameter counts of the model; ``hardware``: the machines they were measured on.
    """

    inference_ms_per_image: float | None
    train_seconds: float | None
    peak_memory_mb: float | None
    memory_measure: str
    params_total: int | None
    params_trainable: int | None
    hardware: tuple[str, ...]


@dataclass(frozen=True)
class MethodRef:
    id: int
    key: str
    name: str
    is_baseline: bool


@dataclass(frozen=True)
class BoardRow:
    method: MethodRef
    rank: int | None
    complete: bool
    n_categories: int  # categories with every metric present
    metrics: dict[str, Aggregate]  # only for complete rows: every metric, over every category
    provenances: tuple[str, ...]  # the provenances of the counted cells
    benchmark_run_ids: tuple[int, ...]
    submission_ids: tuple[int, ...]
    preferred_reproduced: int  # categories where a server-scored result was set aside
    schedule_incomplete: tuple[str, ...] = ()  # categories whose training hit the time cap: not ranked
    random_init: bool = False  # some counted value comes from randomly initialised backbones
    n_seeds: int = 1  # seeds behind every value (1 when they differ between categories)
    seed_std: dict[str, float] = field(default_factory=dict)  # per metric: std across seeds of the mean
    cost: Cost | None = None


@dataclass(frozen=True)
class Board:
    """A suite's leaderboard: ranked complete rows, then incomplete rows (alphabetical)."""

    suite_key: str
    suite_name: str
    dataset_key: str | None
    category_keys: tuple[str, ...]
    metrics: tuple[MetricInfo, ...]
    sort_metric: str
    provenance: str | None
    evaluator_version: str | None
    evaluator_versions: tuple[str, ...]  # versions with current results in this suite, newest first
    rows: tuple[BoardRow, ...]
    incomplete: tuple[BoardRow, ...]
    preferred_reproduced: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_categories(self) -> int:
        return len(self.category_keys)


def suite_get(*, key: str) -> Suite:
    try:
        return Suite.objects.get(key=key)
    except Suite.DoesNotExist:
        known = ", ".join(Suite.objects.values_list("key", flat=True)) or "none (run manage.py sync_catalog)"
        raise SuiteNotFoundError(f"unknown suite {key!r}; known suites: {known}") from None


def suite_categories(*, suite: Suite, dataset_key: str | None = None) -> list[Category]:
    qs = Category.objects.filter(suites=suite).select_related("dataset").order_by("dataset__order", "key")
    if dataset_key:
        qs = qs.filter(dataset__key=dataset_key)
    return list(qs)


def table_results_q() -> Q:
    """Results that tables count: current ones from a published source (the same for every viewer)."""
    return Q(is_current=True) & published_result_q()


def evaluator_versions(*, category_ids: list[int]) -> list[str]:
    """Evaluator versions of the current results on these categories, most recently used first."""
    rows = (
        Result.objects.filter(table_results_q(), category_id__in=category_ids)
        .values("evaluator_version")
        .annotate(latest=Max("created_at"))
        .order_by("-latest", "evaluator_version")
    )
    return [row["evaluator_version"] for row in rows]


def default_evaluator_version(versions: list[str]) -> str | None:
    """The registry's current evaluator when it has results here, else the most recently used one."""
    if not versions:
        return None
    from evaluation.metrics import EVALUATOR_VERSION

    return EVALUATOR_VERSION if EVALUATOR_VERSION in versions else versions[0]


def result_cells(
    *,
    category_ids: list[int],
    evaluator_version: str,
    provenance: str | None = None,
    method_ids: list[int] | None = None,
    metrics: tuple[str, ...] | None = None,
) -> tuple[list[Cell], dict[int, MethodRef], dict[int, int]]:
    """The counted values on these categories (one query).

    Returns the cells, the methods they belong to, and per method the number of categories
    where a server-scored result was set aside because a reproduced one exists.
    """
    provenance_check(provenance)
    qs = Result.objects.filter(
        table_results_q(),
        is_primary_variant=True,
        evaluator_version=evaluator_version,
        category_id__in=category_ids,
    )
    if provenance:
        qs = qs.filter(provenance=provenance)
    if method_ids is not None:
        qs = qs.filter(method_id__in=method_ids)
    if metrics is not None:
        qs = qs.filter(metric__in=metrics)
    rows = qs.order_by("method_id", "category_id", "metric", "variant").values_list(
        "id",
        "method_id",
        "method__key",
        "method__name",
        "method__is_baseline",
        "category_id",
        "category__key",
        "metric",
        "value",
        "provenance",
        "variant",
        "benchmark_run_id",
        "submission_id",
        "extra__schedule_complete",
        "extra__pretrained",
        "extra__seed_values",
        "extra__cost",
    )
    methods: dict[int, MethodRef] = {}
    by_cat: dict[tuple[int, int], list[Cell]] = defaultdict(list)
    for row in rows:
        rid, mid, mkey, mname, mbase, cid, ckey, metric, value, prov, variant, run_id, sub_id = row[:13]
        complete, pretrained, seed_values, cost = row[13:]
        if mid not in methods:
            methods[mid] = MethodRef(id=mid, key=mkey, name=mname, is_baseline=mbase)
        by_cat[(mid, cid)].append(
            Cell(
                method_id=mid,
                category_id=cid,
                category_key=ckey,
                metric=metric,
                value=value,
                provenance=prov,
                evaluator_version=evaluator_version,
                variant=variant,
                benchmark_run_id=run_id,
                submission_id=sub_id,
                result_id=rid,
                schedule_complete=complete is not False,
                pretrained=pretrained if isinstance(pretrained, bool) else None,
                seed_values=tuple(float(v) for v in seed_values) if isinstance(seed_values, list) else None,
                cost=cost if isinstance(cost, dict) else None,
            )
        )
    cells: list[Cell] = []
    preferred: dict[int, int] = defaultdict(int)
    for (mid, _cid), group in by_cat.items():
        provs = {c.provenance for c in group}
        if len(provs) > 1:  # both kinds for this method and category: the reproduced one counts
            group = [c for c in group if c.provenance == Provenance.REPRODUCED]
            preferred[mid] += 1
        seen: set[str] = set()
        for cell in group:  # at most one value per metric (two primary variants: the first by name)
            if cell.metric not in seen:
                seen.add(cell.metric)
                cells.append(cell)
    return cells, methods, dict(preferred)


def aggregate(values: list[float]) -> Aggregate:
    """Equal-weight mean and population standard deviation (ddof=0) of per-category values."""
    if not values:
        raise ValueError("cannot aggregate an empty list of category values")
    arr = np.asarray(values, dtype=np.float64)
    return Aggregate(mean=float(arr.mean()), std=float(arr.std(ddof=0)), n=int(arr.size))


def seed_spread(values_per_category: list[tuple[float, ...] | None]) -> tuple[int, float | None]:
    """The spread across seeds of a suite mean: ``(n_seeds, sample std of the per-seed means)``.

    Each category contributes one value per seed (in the run's seed order); seed ``i``'s suite
    mean is the mean over categories of their ``i``-th values, and the spread is the standard
    deviation of those means with ``ddof=1`` (the sample standard deviation: seeds are a
    sample of the training's randomness). ``(1, None)`` when a category has a single seed or
    the categories have different numbers of seeds.
    """
    if not values_per_category or any(v is None or len(v) < 2 for v in values_per_category):
        return 1, None
    counts = {len(v) for v in values_per_category}  # type: ignore[arg-type]
    if len(counts) != 1:
        return 1, None
    arr = np.asarray(values_per_category, dtype=np.float64)  # (categories, seeds)
    return int(arr.shape[1]), float(arr.mean(axis=0).std(ddof=1))


def method_cost(cells: list[Cell]) -> Cost | None:
    """The cost of one method's counted cells (one per category is enough: ``Cell.cost`` is per job)."""
    by_category = {}
    for cell in cells:
        if cell.cost:
            by_category.setdefault(cell.category_id, cell.cost)
    if not by_category:
        return None
    costs = list(by_category.values())

    def numbers(key: str) -> list[float]:
        return [float(c[key]) for c in costs if isinstance(c.get(key), int | float)]

    inference, train = numbers("inference_seconds_per_image"), numbers("train_seconds")
    memory = numbers("peak_memory_mb")
    totals, trainable = numbers("params_total"), numbers("params_trainable")
    return Cost(
        inference_ms_per_image=1000.0 * float(np.mean(inference)) if inference else None,
        train_seconds=float(np.mean(train)) if train else None,
        peak_memory_mb=max(memory) if memory else None,
        memory_measure="; ".join(sorted({str(c.get("peak_memory_measure") or "") for c in costs} - {""})),
        params_total=int(max(totals)) if totals else None,
        params_trainable=int(max(trainable)) if trainable else None,
        hardware=tuple(sorted({str(c.get("hardware") or "") for c in costs} - {""})),
    )


def suite_leaderboard(
    *,
    suite_key: str,
    provenance: str | None = None,
    evaluator_version: str | None = None,
    dataset_key: str | None = None,
    sort: str | None = None,
) -> Board:
    """The leaderboard of a suite (optionally restricted to one dataset's categories).

    A constant number of queries whatever the number of methods. ``sort`` is a metric key (default
    ``pl``; the last metric when the registry has no PL); ranked rows are ordered by that metric's
    mean (best first, following the metric's direction), ties by name.
    """
    metrics = metric_list()
    keys = tuple(m.key for m in metrics)
    sort_metric = sort or ("pl" if "pl" in keys else keys[-1])
    metric_get(sort_metric)  # raises UnknownMetricError naming the valid keys
    provenance_check(provenance)
    suite = suite_get(key=suite_key)
    categories = suite_categories(suite=suite, dataset_key=dataset_key)
    category_ids = [c.id for c in categories]
    versions = evaluator_versions(category_ids=category_ids) if category_ids else []
    version = evaluator_version or default_evaluator_version(versions)
    cells, methods, preferred = (
        result_cells(category_ids=category_ids, evaluator_version=version, provenance=provenance, metrics=keys)
        if version
        else ([], {}, {})
    )
    per_method: dict[int, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    cells_of: dict[int, list[Cell]] = defaultdict(list)
    sources: dict[int, tuple[set, set, set]] = defaultdict(lambda: (set(), set(), set()))
    for cell in cells:
        per_method[cell.method_id][cell.metric][cell.category_id] = cell.value
        cells_of[cell.method_id].append(cell)
        provs, runs, subs = sources[cell.method_id]
        provs.add(cell.provenance)
        if cell.benchmark_run_id:
            runs.add(cell.benchmark_run_id)
        if cell.submission_id:
            subs.add(cell.submission_id)

    n_total = len(category_ids)
    complete_rows, incomplete_rows = [], []
    for mid, by_metric in per_method.items():
        full = [cid for cid in category_ids if all(cid in by_metric.get(k, {}) for k in keys)]
        complete = n_total > 0 and len(full) == n_total
        provs, runs, subs = sources[mid]
        mine = cells_of[mid]
        capped = tuple(sorted({c.category_key for c in mine if not c.schedule_complete}))
        seed_values: dict[str, dict[int, tuple[float, ...] | None]] = defaultdict(dict)
        for c in mine:
            seed_values[c.metric][c.category_id] = c.seed_values
        spreads = {k: seed_spread([seed_values[k].get(cid) for cid in category_ids]) for k in keys} if complete else {}
        row = dict(
            method=methods[mid],
            complete=complete,
            n_categories=len(full),
            metrics={k: aggregate([by_metric[k][cid] for cid in category_ids]) for k in keys} if complete else {},
            provenances=tuple(sorted(provs)),
            benchmark_run_ids=tuple(sorted(runs)),
            submission_ids=tuple(sorted(subs)),
            preferred_reproduced=preferred.get(mid, 0),
            schedule_incomplete=capped,
            random_init=any(c.pretrained is False for c in mine),
            n_seeds=min((n for n, _ in spreads.values()), default=1),
            seed_std={k: std for k, (_, std) in spreads.items() if std is not None},
            cost=method_cost(mine),
        )
        (complete_rows if complete and not capped else incomplete_rows).append(row)

    spec = metric_get(sort_metric)
    sign = -1.0 if spec.higher_is_better else 1.0
    complete_rows.sort(key=lambda r: (sign * r["metrics"][sort_metric].mean, r["method"].name.lower()))
    ranked = []
    previous, rank = None, 0
    for position, row in enumerate(complete_rows, start=1):
        mean = row["metrics"][sort_metric].mean
        if mean != previous:  # equal means share a rank ("1, 1, 3")
            rank, previous = position, mean
        ranked.append(BoardRow(rank=rank, **row))
    incomplete_rows.sort(key=lambda r: (-r["n_categories"], r["method"].name.lower()))
    notes = []
    n_pref = sum(preferred.values())
    if n_pref:
        notes.append(
            f"{n_pref} method-category pair(s) have both a reproduced and a server-scored result; "
            "the reproduced one is shown."
        )
    return Board(
        suite_key=suite.key,
        suite_name=suite.name,
        dataset_key=dataset_key,
        category_keys=tuple(c.key for c in categories),
        metrics=metrics,
        sort_metric=sort_metric,
        provenance=provenance,
        evaluator_version=version,
        evaluator_versions=tuple(versions),
        rows=tuple(ranked),
        incomplete=tuple(BoardRow(rank=None, **row) for row in incomplete_rows),
        preferred_reproduced=n_pref,
        notes=tuple(notes),
    )


def suite_leaderboard_cached(**kwargs) -> Board:
    """``suite_leaderboard`` through the cache; same keyword arguments."""
    return cached("board", suite_leaderboard, **kwargs)


# ----------------------------------------------------------------------------------------------
# Per-category tables (the paper's Appendix B) and the evidence behind one mean


@dataclass(frozen=True)
class Breakdown:
    """Rows = categories, columns = methods, for one metric; plus the mean per method."""

    suite_key: str
    suite_name: str
    dataset_key: str | None
    metric: MetricInfo
    evaluator_version: str | None
    provenance: str | None
    methods: tuple[MethodRef, ...]
    categories: tuple[str, ...]
    values: dict[str, dict[int, float]]  # category key -> method id -> value
    means: dict[int, Aggregate | None]  # method id -> mean over all categories (None when incomplete)
    capped: frozenset[tuple[str, int]] = frozenset()  # (category key, method id): schedule incomplete


def category_breakdown(
    *,
    suite_key: str,
    metric: str,
    dataset_key: str | None = None,
    provenance: str | None = None,
    evaluator_version: str | None = None,
) -> Breakdown:
    """Per-category values of every method for one metric; methods ordered by their mean, best first."""
    spec = metric_get(metric)
    suite = suite_get(key=suite_key)
    categories = suite_categories(suite=suite, dataset_key=dataset_key)
    ids = [c.id for c in categories]
    version = evaluator_version or (default_evaluator_version(evaluator_versions(category_ids=ids)) if ids else None)
    cells, methods, _ = (
        result_cells(category_ids=ids, evaluator_version=version, provenance=provenance, metrics=(metric,))
        if version
        else ([], {}, {})
    )
    values: dict[str, dict[int, float]] = {c.key: {} for c in categories}
    capped = set()
    for cell in cells:
        values[cell.category_key][cell.method_id] = cell.value
        if not cell.schedule_complete:
            capped.add((cell.category_key, cell.method_id))
    means: dict[int, Aggregate | None] = {}
    for mid in methods:
        got = [values[c.key][mid] for c in categories if mid in values[c.key]]
        means[mid] = aggregate(got) if len(got) == len(categories) else None
    sign = -1.0 if spec.higher_is_better else 1.0

    def order(m: MethodRef):
        agg = means[m.id]
        return (agg is None, sign * agg.mean if agg else 0.0, m.name.lower())

    return Breakdown(
        suite_key=suite.key,
        suite_name=suite.name,
        dataset_key=dataset_key,
        metric=spec,
        evaluator_version=version,
        provenance=provenance,
        methods=tuple(sorted(methods.values(), key=order)),
        categories=tuple(c.key for c in categories),
        values=values,
        means=means,
        capped=frozenset(capped),
    )


@dataclass(frozen=True)
class Evidence:
    """The per-category values behind one method's mean for one metric on a suite."""

    suite_key: str
    suite_name: str
    metric: MetricInfo
    method: MethodRef | None
    evaluator_version: str | None
    cells: tuple[Cell, ...]  # in category order
    missing: tuple[str, ...]  # categories of the suite without a counted value
    aggregate: Aggregate | None


def method_metric_evidence(
    *,
    suite_key: str,
    method_id: int,
    metric: str,
    provenance: str | None = None,
    evaluator_version: str | None = None,
) -> Evidence:
    spec = metric_get(metric)
    suite = suite_get(key=suite_key)
    categories = suite_categories(suite=suite)
    ids = [c.id for c in categories]
    version = evaluator_version or (default_evaluator_version(evaluator_versions(category_ids=ids)) if ids else None)
    cells, methods, _ = (
        result_cells(
            category_ids=ids,
            evaluator_version=version,
            provenance=provenance,
            method_ids=[method_id],
            metrics=(metric,),
        )
        if version
        else ([], {}, {})
    )
    order = {c.id: i for i, c in enumerate(categories)}
    cells.sort(key=lambda c: order[c.category_id])
    have = {c.category_id for c in cells}
    missing = tuple(c.key for c in categories if c.id not in have)
    return Evidence(
        suite_key=suite.key,
        suite_name=suite.name,
        metric=spec,
        method=methods.get(method_id),
        evaluator_version=version,
        cells=tuple(cells),
        missing=missing,
        aggregate=aggregate([c.value for c in cells]) if cells and not missing else None,
    )
