"""Public read-only REST API (``/api/v1/``): one ``<Entity><Action>Api`` per operation.

Each view validates its query string with a ``FilterSerializer``, calls one selector and
serializes. Lists are paginated (limit/offset). Errors use the format of ``apis.errors``.
Ground truth (labels, masks) is never served: categories expose their public test-image ids only.
Methods, results, submissions and runs are what the caller may see (``selectors.visibility``):
published ones for everyone, their own for owners, everything for staff.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import exports
from ..models import Category, Provenance
from ..selectors import catalog, jobs
from ..selectors.leaderboard import suite_leaderboard_cached
from ..selectors.metrics import metric_keys
from ..selectors.results import result_list
from ..selectors.visibility import viewer_of
from . import serializers as out


class Pagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 1000


def paginated_response(*, serializer_class, queryset, request, view, context=None) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context=context or {}).data
    return paginator.get_paginated_response(data)


class PublicApi(APIView):
    permission_classes = [AllowAny]


class HealthApi(PublicApi):
    @extend_schema(responses=inline_serializer("Health", {"status": serializers.CharField()}))
    def get(self, request):
        return Response({"status": "ok"})


def _validate_metric(value: str | None) -> str | None:
    if value and value not in metric_keys():
        raise serializers.ValidationError(f"unknown metric {value!r}; expected one of: {', '.join(metric_keys())}")
    return value


# ----------------------------------------------------------------------------------------------
# Leaderboard


class AggregateSerializer(serializers.Serializer):
    mean = serializers.FloatField()
    std = serializers.FloatField(help_text="population standard deviation (ddof=0) across categories")
    n_categories = serializers.IntegerField()


class LeaderboardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField(allow_null=True)
    method = inline_serializer(
        "LeaderboardMethod",
        {"key": serializers.CharField(), "name": serializers.CharField(), "is_baseline": serializers.BooleanField()},
    )
    complete = serializers.BooleanField()
    n_categories = serializers.IntegerField()
    metrics = serializers.DictField(child=AggregateSerializer())
    provenances = serializers.ListField(child=serializers.CharField())
    benchmark_runs = serializers.ListField(child=serializers.IntegerField())
    submissions = serializers.ListField(child=serializers.IntegerField())
    reproduced_preferred_in = serializers.IntegerField()
    schedule_incomplete = serializers.ListField(
        child=serializers.CharField(), help_text="categories whose training hit its time cap: the row is not ranked"
    )
    random_init = serializers.BooleanField(help_text="some value comes from randomly initialised backbones")
    n_seeds = serializers.IntegerField(help_text="seeds behind every value (each category: the mean over them)")
    seed_std = serializers.DictField(
        child=serializers.FloatField(), help_text="per metric: sample std (ddof=1) of the suite mean across seeds"
    )
    cost = inline_serializer(
        "LeaderboardCost",
        {
            "inference_ms_per_image": serializers.FloatField(allow_null=True),
            "train_seconds_per_category": serializers.FloatField(allow_null=True),
            "peak_memory_mb": serializers.FloatField(allow_null=True),
            "peak_memory_measure": serializers.CharField(),
            "params_total": serializers.IntegerField(allow_null=True),
            "params_trainable": serializers.IntegerField(allow_null=True),
            "hardware": serializers.ListField(child=serializers.CharField()),
        },
        allow_null=True,
    )


class LeaderboardDetailApi(PublicApi):
    """A suite's leaderboard: per metric, mean and std over the suite's categories (equal weights)."""

    class FilterSerializer(serializers.Serializer):
        metric = serializers.CharField(required=False, help_text="metric to rank by (default pl)")
        provenance = serializers.ChoiceField(choices=Provenance.choices, required=False)
        evaluator_version = serializers.CharField(required=False, max_length=40)
        dataset = serializers.SlugField(required=False, help_text="restrict to one dataset's categories")

        def validate_metric(self, value):
            return _validate_metric(value)

    class OutputSerializer(serializers.Serializer):
        suite = inline_serializer("LeaderboardSuite", {"key": serializers.CharField(), "name": serializers.CharField()})
        dataset = serializers.CharField(allow_null=True)
        n_categories = serializers.IntegerField()
        categories = serializers.ListField(child=serializers.CharField())
        metrics = serializers.ListField(child=serializers.DictField())
        sort_metric = serializers.CharField()
        aggregation = serializers.CharField()
        provenance = serializers.CharField(allow_null=True)
        evaluator_version = serializers.CharField(allow_null=True)
        evaluator_versions = serializers.ListField(child=serializers.CharField())
        ranked = LeaderboardRowSerializer(many=True)
        incomplete = LeaderboardRowSerializer(many=True)
        notes = serializers.ListField(child=serializers.CharField())

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer)
    def get(self, request, suite: str):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = filters.validated_data
        board = suite_leaderboard_cached(
            suite_key=suite,
            sort=params.get("metric"),
            provenance=params.get("provenance"),
            evaluator_version=params.get("evaluator_version"),
            dataset_key=params.get("dataset"),
        )
        return Response(self.OutputSerializer(exports.board_dict(board)).data)


# ----------------------------------------------------------------------------------------------
# Catalog


class DatasetListApi(PublicApi):
    @extend_schema(responses=out.DatasetOutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            serializer_class=out.DatasetOutputSerializer, queryset=catalog.dataset_list(), request=request, view=self
        )


class DatasetDetailApi(PublicApi):
    @extend_schema(responses=out.DatasetOutputSerializer)
    def get(self, request, key: str):
        dataset = get_object_or_404(catalog.dataset_list(), key=key)
        return Response(out.DatasetOutputSerializer(dataset).data)


class SuiteListApi(PublicApi):
    @extend_schema(responses=out.SuiteOutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            serializer_class=out.SuiteOutputSerializer, queryset=catalog.suite_list(), request=request, view=self
        )


class SuiteDetailApi(PublicApi):
    @extend_schema(responses=out.SuiteOutputSerializer)
    def get(self, request, key: str):
        suite = get_object_or_404(catalog.suite_list(), key=key)
        return Response(out.SuiteOutputSerializer(suite).data)


class CategoryListApi(PublicApi):
    class FilterSerializer(serializers.Serializer):
        dataset = serializers.SlugField(required=False)
        suite = serializers.SlugField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=out.CategoryOutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = catalog.category_list(
            dataset_key=filters.validated_data.get("dataset"), suite_key=filters.validated_data.get("suite")
        )
        return paginated_response(
            serializer_class=out.CategoryOutputSerializer, queryset=qs, request=request, view=self
        )


def _category_or_404(key: str) -> Category:
    try:
        return catalog.category_get(key=key)
    except Category.DoesNotExist:
        raise Http404(f"no category {key!r}") from None


class CategoryDetailApi(PublicApi):
    @extend_schema(responses=out.CategoryDetailOutputSerializer)
    def get(self, request, key: str):
        return Response(out.CategoryDetailOutputSerializer(_category_or_404(key)).data)


class CategoryTestIdsApi(PublicApi):
    """The public ids of a category's test images, in the order a bundle must follow (no labels)."""

    @extend_schema(
        responses=inline_serializer(
            "CategoryTestIds",
            {
                "category": serializers.CharField(),
                "count": serializers.IntegerField(),
                "test_ids": serializers.ListField(child=serializers.CharField()),
            },
        )
    )
    def get(self, request, key: str):
        category = _category_or_404(key)
        ids = list(category.test_ids or [])
        return Response({"category": category.key, "count": len(ids), "test_ids": ids})


class MethodListApi(PublicApi):
    @extend_schema(responses=out.MethodOutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            serializer_class=out.MethodOutputSerializer,
            queryset=catalog.method_list(viewer=viewer_of(request.user)),
            request=request,
            view=self,
        )


class MethodDetailApi(PublicApi):
    @extend_schema(responses=out.MethodDetailOutputSerializer)
    def get(self, request, key: str):
        method = get_object_or_404(catalog.method_list(viewer=viewer_of(request.user)), key=key)
        return Response(out.MethodDetailOutputSerializer(method).data)


# ----------------------------------------------------------------------------------------------
# Results, submissions, runs


class ResultListApi(PublicApi):
    """Results with their provenance; current ones by default (``current=false`` adds history)."""

    class FilterSerializer(serializers.Serializer):
        method = serializers.SlugField(required=False)
        category = serializers.CharField(required=False, max_length=100)
        metric = serializers.CharField(required=False)
        provenance = serializers.ChoiceField(choices=Provenance.choices, required=False)
        evaluator_version = serializers.CharField(required=False, max_length=40)
        dataset = serializers.SlugField(required=False)
        current = serializers.BooleanField(required=False, default=True)

        def validate_metric(self, value):
            return _validate_metric(value)

    @extend_schema(parameters=[FilterSerializer], responses=out.ResultOutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = dict(filters.validated_data)
        current = params.pop("current")
        qs = result_list(viewer=viewer_of(request.user), **params, current_only=current)
        return paginated_response(serializer_class=out.ResultOutputSerializer, queryset=qs, request=request, view=self)


class SubmissionListApi(PublicApi):
    """Published submissions, plus the caller's own (private, failed, held); staff see all."""

    class FilterSerializer(serializers.Serializer):
        method = serializers.SlugField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=out.SubmissionOutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = jobs.submission_list(viewer=viewer_of(request.user), method_key=filters.validated_data.get("method"))
        return paginated_response(
            serializer_class=out.SubmissionOutputSerializer, queryset=qs, request=request, view=self
        )


class SubmissionDetailApi(PublicApi):
    @extend_schema(responses=out.SubmissionOutputSerializer)
    def get(self, request, pk: int):
        submission = get_object_or_404(jobs.submission_list(viewer=viewer_of(request.user)), pk=pk)
        return Response(out.SubmissionOutputSerializer(submission).data)


class BenchmarkRunListApi(PublicApi):
    class FilterSerializer(serializers.Serializer):
        method = serializers.SlugField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=out.BenchmarkRunPublicOutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = jobs.benchmark_run_list(viewer=viewer_of(request.user), method_key=filters.validated_data.get("method"))
        return paginated_response(
            serializer_class=out.BenchmarkRunPublicOutputSerializer, queryset=qs, request=request, view=self
        )


class BenchmarkRunDetailApi(PublicApi):
    @extend_schema(responses=out.BenchmarkRunPublicOutputSerializer)
    def get(self, request, pk: int):
        run = get_object_or_404(jobs.benchmark_run_list(viewer=viewer_of(request.user)), pk=pk)
        return Response(out.BenchmarkRunPublicOutputSerializer(run).data)


__all__ = [
    "BenchmarkRunDetailApi",
    "BenchmarkRunListApi",
    "CategoryDetailApi",
    "CategoryListApi",
    "CategoryTestIdsApi",
    "DatasetDetailApi",
    "DatasetListApi",
    "HealthApi",
    "LeaderboardDetailApi",
    "MethodDetailApi",
    "MethodListApi",
    "ResultListApi",
    "SubmissionDetailApi",
    "SubmissionListApi",
    "SuiteDetailApi",
    "SuiteListApi",
]
