"""Reported versus reproduced: what papers report for a method, beside what our workers measured.

Reported figures are data kept in the repository (``leaderboard/data/reported_*.json``, schema
``vadi-reported/1``), each with its source and the table it comes from: the VisionAD paper's
per-class tables (extracted by ``scripts/reported_visionad.py``) and each method's own
publication (dataset means). They are never ``Result`` rows: never ranked, never counted in any
leaderboard number; pages show them apart, labelled "reported", with the difference to ours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..models import Provenance, Result
from .leaderboard import default_evaluator_version, table_results_q
from .metrics import MetricInfo, metric_list

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
REPORTED_FILES = ("reported_visionad.json", "reported_own_papers.json")
#: The datasets reported figures are about, with the number of categories a dataset mean needs.
DATASETS = {"mvtec": ("MVTec AD", 15), "visa": ("VisA", 12)}


@dataclass(frozen=True)
class ReportedFigure:
    method: str
    dataset: str
    category: str | None  # None: the dataset mean
    metric: str
    value: float
    source: str  # "visionad" or "own_paper"
    table: str  # where in the source: "Table 2", or a description for a method's own paper
    cited: str = ""
    note: str = ""


@cache
def _load() -> tuple[dict[str, dict[str, Any]], tuple[ReportedFigure, ...]]:
    sources: dict[str, dict[str, Any]] = {}
    figures: list[ReportedFigure] = []
    for name in REPORTED_FILES:
        document = json.loads((DATA_DIR / name).read_text())
        if document.get("schema") != "vadi-reported/1":
            raise ValueError(f"{name}: schema {document.get('schema')!r}, expected 'vadi-reported/1'")
        sources[document["source"]["key"]] = document["source"]
        figures.extend(ReportedFigure(**figure) for figure in document["figures"])
    return sources, tuple(figures)


def reported_sources() -> dict[str, dict[str, Any]]:
    return _load()[0]


def reported_figures(*, method_key: str) -> tuple[ReportedFigure, ...]:
    """Every reported figure about ``method_key`` (file order: VisionAD's tables, then its own paper)."""
    return tuple(f for f in _load()[1] if f.method == method_key)


@dataclass(frozen=True)
class ReportedCell:
    ours: float | None
    visionad: ReportedFigure | None
    own_paper: ReportedFigure | None

    @property
    def diff_visionad(self) -> float | None:
        return None if self.ours is None or self.visionad is None else self.ours - self.visionad.value

    @property
    def diff_own_paper(self) -> float | None:
        return None if self.ours is None or self.own_paper is None else self.ours - self.own_paper.value


@dataclass(frozen=True)
class ReportedRow:
    label: str  # a category key, or "mean"
    is_mean: bool
    cells: dict[str, ReportedCell]  # per metric key
    n_ours: int  # categories behind our mean (rows of a category: 1 or 0)


@dataclass(frozen=True)
class ReportedDataset:
    key: str
    name: str
    n_categories: int
    rows: tuple[ReportedRow, ...]
    tables: tuple[str, ...]  # the VisionAD tables the figures come from

    @property
    def mean(self) -> ReportedRow:
        return self.rows[-1]

    @property
    def category_rows(self) -> tuple[ReportedRow, ...]:
        return self.rows[:-1]


@dataclass(frozen=True)
class ReportedComparison:
    metrics: tuple[MetricInfo, ...]
    datasets: tuple[ReportedDataset, ...]
    sources: dict[str, dict[str, Any]]
    evaluator_version: str | None

    @property
    def has_figures(self) -> bool:
        return bool(self.datasets)


def _our_values(method_key: str) -> tuple[dict[tuple[str, str], float], str | None]:
    """Our current published primary values on MVTec AD and VisA: {(category, metric): value} (one query).

    One evaluator version (the registry's when it has values, else the latest); a reproduced
    value is preferred to a server-scored one, as the leaderboard does.
    """
    rows = list(
        Result.objects.filter(
            table_results_q(), method__key=method_key, is_primary_variant=True, category__dataset__key__in=DATASETS
        )
        .order_by("-created_at")
        .values_list("category__key", "metric", "value", "provenance", "evaluator_version")
    )
    versions = list(dict.fromkeys(row[4] for row in rows))
    version = default_evaluator_version(versions)
    values: dict[tuple[str, str], tuple[bool, float]] = {}
    for category, metric, value, provenance, evaluator in rows:
        if evaluator != version:
            continue
        reproduced = provenance == Provenance.REPRODUCED
        if (category, metric) not in values or (reproduced and not values[(category, metric)][0]):
            values[(category, metric)] = (reproduced, value)
    return {key: value for key, (_, value) in values.items()}, version


def method_reported_comparison(*, method_key: str) -> ReportedComparison:
    """Per dataset and category: our value, VisionAD's and the method's own paper's, with the differences.

    Our dataset mean is given only when we have the dataset's every category (``n_ours`` says
    how many we have); differences only where both numbers exist. Reads one query.
    """
    from algorithms.data import SUITES

    metrics = tuple(metric_list())
    figures = reported_figures(method_key=method_key)
    if not figures:
        return ReportedComparison(metrics, (), reported_sources(), None)
    ours, version = _our_values(method_key)
    by_key = {(f.source, f.category or f"{f.dataset}:mean", f.metric): f for f in figures}
    datasets = []
    for key, (name, n_categories) in DATASETS.items():
        if not any(f.dataset == key for f in figures):
            continue
        rows = []
        for category in SUITES[key]:
            cells = {
                m.key: ReportedCell(
                    ours=ours.get((category, m.key)),
                    visionad=by_key.get(("visionad", category, m.key)),
                    own_paper=None,
                )
                for m in metrics
            }
            rows.append(ReportedRow(category, False, cells, int(any(c.ours is not None for c in cells.values()))))
        mean_cells = {}
        n_ours = 0
        for m in metrics:
            mine = [ours[(c, m.key)] for c in SUITES[key] if (c, m.key) in ours]
            n_ours = max(n_ours, len(mine))
            mean_cells[m.key] = ReportedCell(
                ours=sum(mine) / len(mine) if len(mine) == n_categories else None,
                visionad=by_key.get(("visionad", f"{key}:mean", m.key)),
                own_paper=by_key.get(("own_paper", f"{key}:mean", m.key)),
            )
        rows.append(ReportedRow("mean", True, mean_cells, n_ours))
        tables = tuple(sorted({f.table for f in figures if f.dataset == key and f.source == "visionad"}))
        datasets.append(ReportedDataset(key, name, n_categories, tuple(rows), tables))
    return ReportedComparison(metrics, tuple(datasets), reported_sources(), version)
