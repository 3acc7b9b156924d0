"""Output shapes shared by the API, the JSON/CSV downloads and the pages.

Plain functions turn selector dataclasses into JSON-ready dicts (one shape everywhere); the DRF
serializers below describe the model-backed resources.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from rest_framework import serializers

from ..models import BenchmarkRun, Category, Dataset, Method, Result, Submission, Suite
from ..selectors.leaderboard import Aggregate, Board, BoardRow, Breakdown, Evidence


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
        "aggregation": "mean over categories, each weighted equally; std = population std (ddof=0) across categories",
        "provenance": board.provenance,
        "evaluator_version": board.evaluator_version,
        "evaluator_versions": list(board.evaluator_versions),
        "ranked": [board_row_dict(r) for r in board.rows],
        "incomplete": [board_row_dict(r) for r in board.incomplete],
        "notes": list(board.notes),
    }


def board_csv(board: Board) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["rank", "method_key", "method", "complete", "n_categories", "of_categories"]
    for m in board.metrics:
        header += [f"{m.key}_mean", f"{m.key}_std"]
    header += ["provenances", "evaluator_version"]
    writer.writerow(header)
    for row in (*board.rows, *board.incomplete):
        line = [row.rank or "", row.method.key, row.method.name, row.complete, row.n_categories, board.n_categories]
        for m in board.metrics:
            agg = row.metrics.get(m.key)
            line += [repr(agg.mean), repr(agg.std)] if agg else ["", ""]
        line += [";".join(row.provenances), board.evaluator_version or ""]
        writer.writerow(line)
    return out.getvalue()


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
    }


def breakdown_csv(breakdown: Breakdown) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["category", *(m.key for m in breakdown.methods)])
    for c in breakdown.categories:
        writer.writerow(
            [c, *(repr(breakdown.values[c][m.id]) if m.id in breakdown.values[c] else "" for m in breakdown.methods)]
        )
    writer.writerow(
        ["mean", *(repr(breakdown.means[m.id].mean) if breakdown.means[m.id] else "" for m in breakdown.methods)]
    )
    return out.getvalue()


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
            }
            for c in evidence.cells
        ],
        "missing": list(evidence.missing),
    }


def rows_csv(header: list[str], rows: Iterable[Iterable]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# ----------------------------------------------------------------------------------------------
# Model-backed output serializers


class DatasetOutputSerializer(serializers.ModelSerializer):
    n_categories = serializers.IntegerField(read_only=True)

    class Meta:
        model = Dataset
        fields = ["key", "name", "description", "url", "n_categories"]


class CategoryOutputSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = Category
        fields = ["key", "name", "dataset"]


class CategoryDetailOutputSerializer(CategoryOutputSerializer):
    n_test_ids = serializers.SerializerMethodField()

    class Meta(CategoryOutputSerializer.Meta):
        fields = [*CategoryOutputSerializer.Meta.fields, "n_test_ids"]

    def get_n_test_ids(self, obj: Category) -> int:
        return len(obj.test_ids or [])


class SuiteOutputSerializer(serializers.ModelSerializer):
    categories = serializers.SlugRelatedField(slug_field="key", many=True, read_only=True)
    n_categories = serializers.SerializerMethodField()

    class Meta:
        model = Suite
        fields = ["key", "name", "description", "n_categories", "categories"]

    def get_n_categories(self, obj: Suite) -> int:
        return len(obj.categories.all())


class MethodOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = Method
        fields = ["key", "name", "family", "description", "paper_title", "paper_url", "code_url", "is_baseline"]


class MethodDetailOutputSerializer(MethodOutputSerializer):
    reproducible = serializers.SerializerMethodField()

    class Meta(MethodOutputSerializer.Meta):
        fields = [*MethodOutputSerializer.Meta.fields, "reproducible"]

    def get_reproducible(self, obj: Method) -> bool:
        return bool(obj.algorithm_key)


class ResultOutputSerializer(serializers.ModelSerializer):
    method = serializers.SlugRelatedField(slug_field="key", read_only=True)
    category = serializers.SlugRelatedField(slug_field="key", read_only=True)
    dataset = serializers.CharField(source="category.dataset.key", read_only=True)

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
            "created_at",
        ]


class SubmissionOutputSerializer(serializers.ModelSerializer):
    method = serializers.SlugRelatedField(slug_field="key", read_only=True)
    suite = serializers.SlugRelatedField(slug_field="key", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Submission
        fields = [
            "id",
            "uuid",
            "method",
            "suite",
            "owner",
            "visibility",
            "status",
            "progress",
            "progress_message",
            "error_message",
            "review_status",
            "description",
            "created_at",
            "started_at",
            "finished_at",
        ]


class BenchmarkRunPublicOutputSerializer(serializers.ModelSerializer):
    method = serializers.SlugRelatedField(slug_field="key", read_only=True)
    suite = serializers.SlugRelatedField(slug_field="key", read_only=True, allow_null=True)

    class Meta:
        model = BenchmarkRun
        fields = [
            "id",
            "method",
            "suite",
            "status",
            "progress",
            "progress_message",
            "error_message",
            "is_published",
            "commit",
            "config",
            "environment",
            "created_at",
            "started_at",
            "finished_at",
        ]
