"""Output serializers of the API's model-backed resources.

The shapes of the computed tables (leaderboards, breakdowns, evidence) and of result rows are
shared with the pages' downloads and live in ``leaderboard.exports``.
"""

from __future__ import annotations

from rest_framework import serializers

from ..exports import ResultOutputSerializer
from ..models import BenchmarkRun, Category, Dataset, Method, Submission, Suite
from ..selectors.jobs import benchmark_run_public_config

__all__ = [
    "BenchmarkRunPublicOutputSerializer",
    "CategoryDetailOutputSerializer",
    "CategoryOutputSerializer",
    "DatasetOutputSerializer",
    "MethodDetailOutputSerializer",
    "MethodOutputSerializer",
    "ResultOutputSerializer",
    "SubmissionOutputSerializer",
    "SuiteOutputSerializer",
]


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
        fields = [
            "key", "name", "family", "secondary_family", "description", "paper_title", "paper_url", "code_url",
            "code_licence", "deviations", "schedule", "map_variants", "is_baseline",
        ]  # fmt: skip


class MethodDetailOutputSerializer(MethodOutputSerializer):
    reproducible = serializers.SerializerMethodField()

    class Meta(MethodOutputSerializer.Meta):
        fields = [*MethodOutputSerializer.Meta.fields, "reproducible"]

    def get_reproducible(self, obj: Method) -> bool:
        return bool(obj.algorithm_key)


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
    config = serializers.SerializerMethodField(help_text="algorithm, params, budgets, seed, device")

    def get_config(self, obj: BenchmarkRun) -> dict:
        return benchmark_run_public_config(obj)

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
