"""Output shapes of the public tables: JSON-ready dicts and CSV text, and the download response.

One shape everywhere: the API answers with these dicts, and every table on the site can be
downloaded with ``?format=csv`` or ``?format=json`` through an :class:`Export` (a file name and
the two renderings, built only when asked for). Plain functions turn the selectors' frozen
dataclasses into dicts; ``ResultOutputSerializer`` describes a ``Result`` row for the API and
the method page's download alike.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpResponse, JsonResponse
from rest_framework import serializers

from .models import Result
from .selectors.leaderboard import Aggregate, Board, BoardRow, Breakdown, Evidence
from .selectors.metrics import MetricInfo

#: The download formats every table offers (``?format=``).
DOWNLOAD_FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Export:
    """A table offered as a download: its file name (no extension) and its two renderings."""

    name: str
    as_csv: Callable[[], str]
    as_json: Callable[[], Mapping[str, Any]]

    def response(self, fmt: str) -> HttpResponse:
        """The download in ``fmt`` (``csv`` as an attachment, ``json`` indented); ``ValueError`` otherwise."""
        if fmt == "csv":
            response = HttpResponse(self.as_csv(), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{self.name}.csv"'
            return response
        if fmt == "json":
            return JsonResponse(dict(self.as_json()), json_dumps_params={"indent": 1})
        raise ValueError(f"format={fmt!r} is not a download format; expected one of: {', '.join(DOWNLOAD_FORMATS)}")


def rows_csv(header: Sequence[str], rows: Iterable[Iterable]) -> str:
    """CSV text with a header line and one line per row (``\\n`` line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def dicts_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """CSV text of dict rows, with ``columns`` as the header and the order of the fields."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# Leaderboards --------------------------------------------------------------------------------


def _agg(agg: Aggregate | None) -> dict | None:
    if agg is None:
        return None
    return {"mean": agg.mean, "std": agg.std, "n_categories": agg.n}


def board_row_dict(row: BoardRow) -> dict:
    return {
        "rank": row.rank,
        "method": {"key": row.method.key, "name": row.method.name, "is_baseline": row.method.is_baseline},
        "complete": row.complete,
        "n_categories": row.n_categories,
        "metrics": {key: _agg(agg) for key, agg in row.metrics.items()},
        "provenances": list(row.provenances),
        "benchmark_runs": list(row.benchmark_run_ids),
        "submissions": list(row.submission_ids),
        "reproduced_preferred_in": row.preferred_reproduced,
        "schedule_incomplete": list(row.schedule_incomplete),
        "random_init": row.random_init,
        "n_seeds": row.n_seeds,
        "seed_std": dict(row.seed_std),
        "cost": _cost(row.cost),
    }


def _cost(cost) -> dict | None:
    if cost is None:
        return None
    return {
        "inference_ms_per_image": cost.inference_ms_per_image,
        "train_seconds_per_category": cost.train_seconds,
        "peak_memory_mb": cost.peak_memory_mb,
        "peak_memory_measure": cost.memory_measure,
        "params_total": cost.params_total,
        "params_trainable": cost.params_trainable,
        "hardware": list(cost.hardware),
    }


def board_dict(board: Board) -> dict:
    return {
        "suite": {"key": board.suite_key, "name": board.suite_name},
        "dataset": board.dataset_key,
        "n_categories": board.n_categories,
        "categories": list(board.category_keys),
        "metrics": [
            {
                "key": m.key,
                "short_name": m.short_name,
                "display_name": m.display_name,
                "higher_is_better": m.higher_is_better,
                "range": [m.low, m.high],
            }
            for m in board.metrics
        ],
        "sort_metric": board.sort_metric,
        "aggregation": (
            "mean over categories, each weighted equally (a category's value: the mean over seeds); "
            "std = population std (ddof=0) across categories; seed_std = sample std (ddof=1) of the suite mean "
            "across seeds; a row with schedule_incomplete categories (training hit the time cap) is not ranked"
        ),
        "provenance": board.provenance,
        "evaluator_version": board.evaluator_version,
        "evaluator_versions": list(board.evaluator_versions),
        "ranked": [board_row_dict(r) for r in board.rows],
        "incomplete": [board_row_dict(r) for r in board.incomplete],
        "notes": list(board.notes),
    }


def board_csv(board: Board) -> str:
    header = ["rank", "method_key", "method", "complete", "n_categories", "of_categories"]
    for m in board.metrics:
        header += [f"{m.key}_mean", f"{m.key}_std"]
        header += [f"{m.key}_seed_std"]
    header += ["n_seeds", "schedule_incomplete", "random_init", "provenances", "evaluator_version"]
    header += ["inference_ms_per_image", "train_seconds_per_category", "peak_memory_mb", "params_total",
               "params_trainable", "hardware"]  # fmt: skip
    lines = []
    for row in (*board.rows, *board.incomplete):
        line = [row.rank or "", row.method.key, row.method.name, row.complete, row.n_categories, board.n_categories]
        for m in board.metrics:
            agg = row.metrics.get(m.key)
            line += [repr(agg.mean), repr(agg.std)] if agg else ["", ""]
            line += [repr(row.seed_std[m.key]) if m.key in row.seed_std else ""]
        line += [row.n_seeds, ";".join(row.schedule_incomplete), row.random_init]
        line += [";".join(row.provenances), board.evaluator_version or ""]
        cost = _cost(row.cost) or {}
        line += [
            "" if cost.get(k) is None else cost[k]
            for k in ("inference_ms_per_image", "train_seconds_per_category", "peak_memory_mb", "params_total",
                      "params_trainable")
        ]  # fmt: skip
        line += [";".join(cost.get("hardware") or [])]
        lines.append(line)
    return rows_csv(header, lines)


def board_export(board: Board, *, name: str) -> Export:
    return Export(name, lambda: board_csv(board), lambda: board_dict(board))


def breakdown_dict(breakdown: Breakdown) -> dict:
    return {
        "suite": {"key": breakdown.suite_key, "name": breakdown.suite_name},
        "dataset": breakdown.dataset_key,
        "metric": breakdown.metric.key,
        "evaluator_version": breakdown.evaluator_version,
        "provenance": breakdown.provenance,
        "methods": [{"key": m.key, "name": m.name} for m in breakdown.methods],
        "rows": [
            {"category": c, "values": {m.key: breakdown.values[c].get(m.id) for m in breakdown.methods}}
            for c in breakdown.categories
        ],
        "mean": {m.key: _agg(breakdown.means[m.id]) for m in breakdown.methods},
        "schedule_incomplete": sorted(
            [category, m.key]
            for m in breakdown.methods
            for category in breakdown.categories
            if (category, m.id) in breakdown.capped
        ),
    }


def breakdown_csv(breakdown: Breakdown) -> str:
    lines: list[list] = [
        [c, *(repr(breakdown.values[c][m.id]) if m.id in breakdown.values[c] else "" for m in breakdown.methods)]
        for c in breakdown.categories
    ]
    lines.append(
        ["mean", *(repr(breakdown.means[m.id].mean) if breakdown.means[m.id] else "" for m in breakdown.methods)]
    )
    return rows_csv(["category", *(m.key for m in breakdown.methods)], lines)


def breakdown_export(breakdown: Breakdown, *, name: str) -> Export:
    return Export(name, lambda: breakdown_csv(breakdown), lambda: breakdown_dict(breakdown))


def evidence_dict(evidence: Evidence) -> dict:
    return {
        "suite": {"key": evidence.suite_key, "name": evidence.suite_name},
        "metric": evidence.metric.key,
        "method": evidence.method.key if evidence.method else None,
        "evaluator_version": evidence.evaluator_version,
        "aggregate": _agg(evidence.aggregate),
        "categories": [
            {
                "category": c.category_key,
                "value": c.value,
                "provenance": c.provenance,
                "variant": c.variant,
                "benchmark_run": c.benchmark_run_id,
                "submission": c.submission_id,
                "schedule_complete": c.schedule_complete,
                "pretrained": c.pretrained,
                "seed_values": list(c.seed_values) if c.seed_values else None,
            }
            for c in evidence.cells
        ],
        "missing": list(evidence.missing),
    }


def evidence_csv(evidence: Evidence) -> str:
    return rows_csv(
        ["category", "value", "provenance", "variant", "benchmark_run", "submission"],
        (
            [c.category_key, repr(c.value), c.provenance, c.variant, c.benchmark_run_id or "", c.submission_id or ""]
            for c in evidence.cells
        ),
    )


def evidence_export(evidence: Evidence, *, name: str) -> Export:
    return Export(name, lambda: evidence_csv(evidence), lambda: evidence_dict(evidence))


# Result rows -----------------------------------------------------------------------------------


class ResultOutputSerializer(serializers.ModelSerializer):
    """One ``Result`` row with its source (the API's results and the method page's download)."""

    method = serializers.SlugRelatedField(slug_field="key", read_only=True)
    category = serializers.SlugRelatedField(slug_field="key", read_only=True)
    dataset = serializers.CharField(source="category.dataset.key", read_only=True)
    schedule_complete = serializers.SerializerMethodField(
        help_text="false: the training hit its wall-clock cap before its planned schedule (shown, never ranked)"
    )
    pretrained = serializers.SerializerMethodField(help_text="the backbone's pretrained flag; null: none or unknown")
    seeds = serializers.SerializerMethodField(help_text="the seeds whose mean the value is")
    seed_values = serializers.SerializerMethodField(help_text="every seed's value, when there were several")
    cost = serializers.SerializerMethodField(help_text="times, peak memory, parameter counts, hardware")

    def get_schedule_complete(self, obj: Result) -> bool:
        return (obj.extra or {}).get("schedule_complete") is not False

    def get_pretrained(self, obj: Result) -> bool | None:
        value = (obj.extra or {}).get("pretrained")
        return value if isinstance(value, bool) else None

    def get_seeds(self, obj: Result) -> list | None:
        return (obj.extra or {}).get("seeds")

    def get_seed_values(self, obj: Result) -> list | None:
        return (obj.extra or {}).get("seed_values")

    def get_cost(self, obj: Result) -> dict | None:
        return (obj.extra or {}).get("cost")

    class Meta:
        model = Result
        fields = [
            "id",
            "method",
            "category",
            "dataset",
            "metric",
            "variant",
            "is_primary_variant",
            "value",
            "provenance",
            "evaluator_version",
            "benchmark_run",
            "submission",
            "is_current",
            "schedule_complete",
            "pretrained",
            "seeds",
            "seed_values",
            "cost",
            "created_at",
        ]


def method_results_csv(results: Iterable[Result]) -> str:
    return rows_csv(
        ["category", "metric", "variant", "value", "provenance", "evaluator_version", "is_current", "source"],
        (
            [
                r.category.key,
                r.metric,
                r.variant,
                repr(r.value),
                r.provenance,
                r.evaluator_version,
                r.is_current,
                f"run {r.benchmark_run_id}" if r.benchmark_run_id else f"submission {r.submission_id}",
            ]
            for r in results
        ),
    )


def method_results_export(method_key: str, results: Sequence[Result]) -> Export:
    """Every result of a method (current and history), one line per value."""
    return Export(
        f"method-{method_key}-results",
        lambda: method_results_csv(results),
        lambda: {"method": method_key, "results": ResultOutputSerializer(results, many=True).data},
    )


def category_table_export(
    category_key: str, rows: Sequence[Mapping[str, Any]], metrics: Sequence[MetricInfo]
) -> Export:
    """One category's table: a line per (method, provenance, evaluator version), a column per metric."""
    flat = [
        {
            "method_key": row["method_key"],
            "method": row["method"],
            "provenance": row["provenance"],
            "evaluator_version": row["evaluator_version"],
            **{m.key: (row["values"][m.key].value if m.key in row["values"] else None) for m in metrics},
        }
        for row in rows
    ]
    columns = ["method_key", "method", "provenance", "evaluator_version", *(m.key for m in metrics)]
    return Export(
        f"category-{category_key.replace('/', '-')}",
        lambda: dicts_csv(flat, columns),
        lambda: {"category": category_key, "rows": flat},
    )
