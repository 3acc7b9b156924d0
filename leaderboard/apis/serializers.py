"""Output serializers of the API's model-backed resources.

The shapes of the computed tables (leaderboards, breakdowns, evidence) and of result rows are
shared with the pages' downloads and live in ``leaderboard.exports``. Every field is read-only,
so the schema marks each one required: every answer has them all. Each serializer carries the
example the docs pages show (``apis.examples``).
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from ..exports import ResultOutputSerializer
from ..models import BenchmarkRun, Category, Dataset, Method, Submission, Suite
from ..selectors.jobs import benchmark_run_public_config
from . import examples

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


@extend_schema_serializer(examples=[examples.DATASET])
class DatasetOutputSerializer(serializers.ModelSerializer):
    n_categories = serializers.IntegerField(read_only=True, min_value=0)
    url = serializers.CharField(read_only=True, help_text="The dataset's home page (an absolute URL), or empty.")

    class Meta:
        model = Dataset
        fields = ["key", "name", "description", "url", "n_categories"]
        read_only_fields = fields


@extend_schema_serializer(examples=[examples.CATEGORY])
class CategoryOutputSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="key", read_only=True)

    class Meta:
        model = Category
        fields = ["key", "name", "dataset"]
        read_only_fields = fields


@extend_schema_serializer(examples=[examples.CATEGORY_DETAIL])
class CategoryDetailOutputSerializer(CategoryOutputSerializer):
    n_test_ids = serializers.SerializerMethodField()

    class Meta(CategoryOutputSerializer.Meta):
        fields = [*CategoryOutputSerializer.Meta.fields, "n_test_ids"]
        read_only_fields = fields

    def get_n_test_ids(self, obj: Category) -> int:
        return len(obj.test_ids or [])


@extend_schema_serializer(examples=[examples.SUITE])
class SuiteOutputSerializer(serializers.ModelSerializer):
    categories = serializers.SlugRelatedField(slug_field="key", many=True, read_only=True)
    n_categories = serializers.SerializerMethodField()

    class Meta:
        model = Suite
        fields = ["key", "name", "description", "n_categories", "categories"]
        read_only_fields = fields

    def get_n_categories(self, obj: Suite) -> int:
        return len(obj.categories.all())


@extend_schema_serializer(examples=[examples.METHOD])
class MethodOutputSerializer(serializers.ModelSerializer):
    family = serializers.ChoiceField(
        choices=Method._meta.get_field("family").choices,
        allow_blank=True,
        read_only=True,
        help_text="The algorithm family; empty for uploaded methods.",
    )
    secondary_family = serializers.ChoiceField(
        choices=Method._meta.get_field("secondary_family").choices, allow_blank=True, read_only=True
    )
    paper_url = serializers.CharField(read_only=True, help_text="An absolute URL, or empty.")
    code_url = serializers.CharField(read_only=True, help_text="An absolute URL, or empty.")
    schedule = serializers.DictField(
        read_only=True, help_text="The training schedule of a registered algorithm ({} for uploads)."
    )
    map_variants = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Names of the anomaly maps the method produces."
    )

    class Meta:
        model = Method
        fields = [
            "key", "name", "family", "secondary_family", "description", "authors", "paper_title", "paper_url",
            "code_url", "code_licence", "deviations", "schedule", "map_variants", "is_baseline",
        ]  # fmt: skip
        read_only_fields = fields


@extend_schema_serializer(examples=[examples.METHOD_DETAIL])
class MethodDetailOutputSerializer(MethodOutputSerializer):
    reproducible = serializers.SerializerMethodField()

    class Meta(MethodOutputSerializer.Meta):
        fields = [*MethodOutputSerializer.Meta.fields, "reproducible"]
        read_only_fields = fields

    def get_reproducible(self, obj: Method) -> bool:
        return bool(obj.algorithm_key)


@extend_schema_serializer(examples=[examples.SUBMISSION])
class SubmissionOutputSerializer(serializers.ModelSerializer):
    method = serializers.SlugRelatedField(slug_field="key", read_only=True)
    suite = serializers.SlugRelatedField(slug_field="key", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True)
    results_url = serializers.SerializerMethodField(help_text="This submission's results in the results list.")
    withdrawn_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="When its owner withdrew it (its results left the leaderboard)."
    )

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
            "results_url",
            "withdrawn_at",
        ]
        read_only_fields = fields

    def get_results_url(self, obj: Submission) -> str:
        """This submission's results in ``/api/v1/results/`` (absolute when the request is known)."""
        path = f"{reverse('api-result-list')}?submission={obj.pk}&current=false"
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class SubmissionCategoryResultSerializer(serializers.Serializer):
    category = serializers.CharField(help_text="The category key.")
    metrics = serializers.DictField(
        child=serializers.FloatField(), help_text="Metric key -> value of the primary anomaly-map variant."
    )
    is_current = serializers.BooleanField(help_text="Whether these are the method's current values (not superseded).")


@extend_schema_serializer(examples=[examples.SUBMISSION_DETAIL])
class SubmissionDetailOutputSerializer(SubmissionOutputSerializer):
    """A submission with its per-category results (primary map variant) when it was scored."""

    results = serializers.SerializerMethodField(help_text="Per-category results; empty until it is scored.")

    class Meta(SubmissionOutputSerializer.Meta):
        fields = [*SubmissionOutputSerializer.Meta.fields, "results"]
        read_only_fields = fields

    @extend_schema_field(SubmissionCategoryResultSerializer(many=True))
    def get_results(self, obj: Submission) -> list[dict]:
        by_category: dict[str, dict] = {}
        for result in self.context.get("results", ()):
            if not result.is_primary_variant:
                continue
            row = by_category.setdefault(
                result.category.key, {"category": result.category.key, "metrics": {}, "is_current": result.is_current}
            )
            row["metrics"][result.metric] = result.value
        return list(by_category.values())


@extend_schema_serializer(examples=[examples.BENCHMARK_RUN])
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
        read_only_fields = fields
