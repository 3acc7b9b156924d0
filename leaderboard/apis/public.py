"""Public read-only REST API (``/api/v1/``): one ``<Entity><Action>Api`` per operation.

Each view validates its query string with a ``FilterSerializer`` (``params.QuerySerializer``:
empty and repeated values are refused), calls one selector and serializes. Lists are paginated
(``params.Pagination``: limit/offset). Errors use the format of ``apis.errors``; ``apis.schema``
documents each operation's answers, and ``parameter_examples`` and the serializers' examples
fill the docs pages' example requests and responses.
Ground truth (labels, masks) is never served: categories expose their public test-image ids only.
Methods, results, submissions and runs are what the caller may see (``selectors.visibility``):
published ones for everyone, their own for owners, everything for staff.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers
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
from . import examples
from . import serializers as out
from .params import Pagination, QuerySerializer, StrictBooleanField, key_filter, text_filter


def paginated_response(*, serializer_class, queryset, request, view, context=None) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    data = serializer_class(page, many=True, context=context or {}).data
    return paginator.get_paginated_response(data)


class PublicApi(APIView):
    permission_classes = [AllowAny]
    # Example values of the operation's parameters, by name (``apis.schema.ApiSchema``).
    parameter_examples: dict = {}


class PublicListApi(PublicApi):
    """A paginated list: the schema wraps the answer in ``count``/``next``/``previous``/``results``."""

    pagination_class = Pagination


#: The API root's index: name -> (URL name, path arguments shown as ``{placeholder}``, what it serves).
API_INDEX = (
    ("health", "api-health", {}, "liveness"),
    ("leaderboard", "api-leaderboard", {"suite": "{suite}"}, "a suite's ranked table per metric"),
    ("datasets", "api-dataset-list", {}, "the datasets"),
    ("dataset", "api-dataset-detail", {"key": "{key}"}, "one dataset"),
    ("suites", "api-suite-list", {}, "the suites (VADI, per dataset)"),
    ("suite", "api-suite-detail", {"key": "{key}"}, "one suite"),
    ("categories", "api-category-list", {}, "the categories"),
    ("category", "api-category-detail", {"key": "{dataset}/{category}"}, "one category"),
    ("category_test_ids", "api-category-test-ids", {"key": "{dataset}/{category}"},
     "the test-image ids a bundle must cover (opaque)"),
    ("category_test_files", "api-category-test-files", {"key": "{dataset}/{category}"},
     "id -> file name, for suites whose ground truth is public (not the blind suite)"),
    ("methods", "api-method-list", {}, "the methods"),
    ("method", "api-method-detail", {"key": "{key}"}, "one method"),
    ("results", "api-result-list", {}, "per-category results"),
    ("submissions", "api-submission-list", {}, "submissions (GET) and uploads (POST, token)"),
    ("submission", "api-submission-detail", {"pk": "{id}"}, "one submission"),
    ("submission_validate", "api-submission-validate", {},
     "dry run of an upload (POST, token): every problem at once, no quota used"),
    ("benchmark_runs", "api-benchmark-run-list", {}, "re-benchmark runs"),
    ("benchmark_run", "api-benchmark-run-detail", {"pk": "{id}"}, "one re-benchmark run"),
)  # fmt: skip


class ApiRootApi(PublicApi):
    """``GET /api/v1/``: an index of the API, with the schema and the docs pages."""

    @extend_schema(
        responses=inline_serializer(
            "ApiRoot",
            {
                "name": serializers.CharField(),
                "version": serializers.CharField(),
                "schema": serializers.URLField(),
                "docs": serializers.URLField(),
                "redoc": serializers.URLField(),
                "endpoints": serializers.DictField(
                    child=inline_serializer(
                        "ApiRootEndpoint", {"url": serializers.CharField(), "description": serializers.CharField()}
                    )
                ),
            },
        ),
        examples=[
            OpenApiExample(
                "index",
                response_only=True,
                value={
                    "name": "VisionAD Leaderboard API",
                    "version": "v1",
                    "schema": "https://example.org/api/v1/schema/",
                    "docs": "https://example.org/api/v1/docs/",
                    "redoc": "https://example.org/api/v1/redoc/",
                    "endpoints": {
                        "leaderboard": {
                            "url": "https://example.org/api/v1/leaderboard/{suite}/",
                            "description": "a suite's ranked table per metric",
                        },
                        "methods": {"url": "https://example.org/api/v1/methods/", "description": "the methods"},
                    },
                },
            )
        ],
    )
    def get(self, request):
        origin = request.build_absolute_uri("/").rstrip("/")  # (build_absolute_uri would quote the braces)

        def url(name: str, placeholders: dict) -> str:
            # Reversed with slug-safe stand-ins (0 for an integer), then shown as ``{placeholder}``.
            stand_ins = {k: (0 if k == "pk" else f"__{k}__") for k in placeholders}
            path = reverse(name, kwargs=stand_ins or None)
            for key, shown in placeholders.items():
                path = path.replace("/0/" if key == "pk" else f"__{key}__", "/{id}/" if key == "pk" else shown)
            return origin + path

        return Response(
            {
                "name": "VisionAD Leaderboard API",
                "version": "v1",
                "schema": request.build_absolute_uri(reverse("api-schema")),
                "docs": request.build_absolute_uri(reverse("api-docs")),
                "redoc": request.build_absolute_uri(reverse("api-redoc")),
                "endpoints": {
                    key: {"url": url(name, kwargs), "description": text} for key, name, kwargs, text in API_INDEX
                },
            }
        )


class HealthApi(PublicApi):
    @extend_schema(
        responses=inline_serializer("Health", {"status": serializers.ChoiceField(choices=["ok"])}),
        examples=[OpenApiExample("ok", value={"status": "ok"}, response_only=True)],
    )
    def get(self, request):
        return Response({"status": "ok"})


def metric_filter(help_text: str) -> serializers.ChoiceField:
    """A metric key; an unknown one is a 400 naming the valid keys."""
    keys = metric_keys()
    return serializers.ChoiceField(
        choices=keys,
        required=False,
        help_text=help_text,
        error_messages={"invalid_choice": "unknown metric '{input}'; expected one of: " + ", ".join(keys)},
    )


# A category key, ``<dataset>/<category>``: the one path parameter that holds a slash.
CATEGORY_KEY = OpenApiParameter(
    "key",
    str,
    OpenApiParameter.PATH,
    pattern=r"^[^/]+/[^/]+$",
    description="Category key, `<dataset>/<category>` (the slash is part of the path).",
)


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

    parameter_examples = {"suite": "vadi", "metric": "pl", "dataset": "mvtec"}

    class FilterSerializer(QuerySerializer):
        metric = metric_filter("Metric to rank by (default `pl`).")
        provenance = serializers.ChoiceField(
            choices=Provenance.choices, required=False, help_text="Only results obtained this way."
        )
        evaluator_version = text_filter(max_length=40, help_text="Only results of this evaluator version.")
        dataset = key_filter(max_length=50, help_text="Restrict to one dataset's categories (a dataset key).")

    @extend_schema_serializer(component_name="Leaderboard", examples=[examples.LEADERBOARD])
    class OutputSerializer(serializers.Serializer):
        suite = inline_serializer("LeaderboardSuite", {"key": serializers.CharField(), "name": serializers.CharField()})
        dataset = serializers.CharField(allow_null=True)
        n_categories = serializers.IntegerField()
        categories = serializers.ListField(child=serializers.CharField())
        metrics = inline_serializer(
            "LeaderboardMetric",
            {
                "key": serializers.CharField(),
                "short_name": serializers.CharField(),
                "display_name": serializers.CharField(),
                "higher_is_better": serializers.BooleanField(),
                "range": serializers.ListField(
                    child=serializers.FloatField(), min_length=2, max_length=2, help_text="[lowest, highest] value"
                ),
            },
            many=True,
        )
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


class DatasetListApi(PublicListApi):
    @extend_schema(responses=out.DatasetOutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            serializer_class=out.DatasetOutputSerializer, queryset=catalog.dataset_list(), request=request, view=self
        )


class DatasetDetailApi(PublicApi):
    parameter_examples = {"key": "mvtec"}

    @extend_schema(responses=out.DatasetOutputSerializer)
    def get(self, request, key: str):
        dataset = get_object_or_404(catalog.dataset_list(), key=key)
        return Response(out.DatasetOutputSerializer(dataset).data)


class SuiteListApi(PublicListApi):
    @extend_schema(responses=out.SuiteOutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            serializer_class=out.SuiteOutputSerializer, queryset=catalog.suite_list(), request=request, view=self
        )


class SuiteDetailApi(PublicApi):
    parameter_examples = {"key": "vadi"}

    @extend_schema(responses=out.SuiteOutputSerializer)
    def get(self, request, key: str):
        suite = get_object_or_404(catalog.suite_list(), key=key)
        return Response(out.SuiteOutputSerializer(suite).data)


class CategoryListApi(PublicListApi):
    parameter_examples = {"dataset": "visa", "suite": "vadi"}

    class FilterSerializer(QuerySerializer):
        dataset = key_filter(max_length=50, help_text="Only this dataset's categories (a dataset key).")
        suite = key_filter(max_length=50, help_text="Only this suite's categories (a suite key).")

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
    if "\x00" in key:  # no key holds one, and PostgreSQL cannot compare with one
        raise Http404(f"no category {key!r}")
    try:
        return catalog.category_get(key=key)
    except Category.DoesNotExist:
        raise Http404(f"no category {key!r}") from None


class CategoryDetailApi(PublicApi):
    parameter_examples = {"key": "mvtec/bottle"}

    @extend_schema(parameters=[CATEGORY_KEY], responses=out.CategoryDetailOutputSerializer)
    def get(self, request, key: str):
        return Response(out.CategoryDetailOutputSerializer(_category_or_404(key)).data)


class CategoryTestIdsApi(PublicApi):
    """The public ids of a category's test images: opaque keyed hashes, sorted (no labels, no file names)."""

    parameter_examples = {"key": "mvtec/bottle"}

    @extend_schema(
        parameters=[CATEGORY_KEY],
        responses=inline_serializer(
            "CategoryTestIds",
            {
                "category": serializers.CharField(),
                "count": serializers.IntegerField(min_value=0),
                "test_ids": serializers.ListField(child=serializers.CharField()),
            },
        ),
        examples=[examples.CATEGORY_TEST_IDS],
    )
    def get(self, request, key: str):
        category = _category_or_404(key)
        ids = list(category.test_ids or [])
        return Response({"category": category.key, "count": len(ids), "test_ids": ids})


class CategoryTestFilesApi(PublicApi):
    """The id -> file-name table of a category whose ground truth is public (MVTec AD, VisA, synthetic).

    With it a bundle can be made from a local copy of the dataset (``write_bundle(id_tables=...)``).
    A blind category answers 404: its file names would reveal the labels.
    """

    parameter_examples = {"key": "mvtec/bottle"}

    @extend_schema(
        parameters=[CATEGORY_KEY],
        responses=inline_serializer(
            "CategoryTestFiles",
            {
                "category": serializers.CharField(),
                "count": serializers.IntegerField(min_value=0),
                "files": serializers.DictField(child=serializers.CharField()),
            },
        ),
        examples=[examples.CATEGORY_TEST_FILES],
    )
    def get(self, request, key: str):
        if "\x00" in key:
            raise Http404(f"no category {key!r}")
        try:
            files = catalog.category_test_files(key=key)
        except Category.DoesNotExist:
            raise Http404(f"no category {key!r}") from None
        except catalog.GroundTruthNotPublic:
            raise Http404(
                f"category {key!r} belongs to a blind suite: its file names are not published (download its "
                "images, already named by their ids)"
            ) from None
        return Response({"category": key, "count": len(files), "files": files})


class MethodListApi(PublicListApi):
    """The methods with a published result (plus, for an owner, their own; for staff, all), by name."""

    @extend_schema(responses=out.MethodOutputSerializer(many=True))
    def get(self, request):
        return paginated_response(
            serializer_class=out.MethodOutputSerializer,
            queryset=catalog.method_list(viewer=viewer_of(request.user)),
            request=request,
            view=self,
        )


class MethodDetailApi(PublicApi):
    parameter_examples = {"key": "patchcore"}

    @extend_schema(responses=out.MethodDetailOutputSerializer)
    def get(self, request, key: str):
        method = get_object_or_404(catalog.method_list(viewer=viewer_of(request.user)), key=key)
        return Response(out.MethodDetailOutputSerializer(method).data)


# ----------------------------------------------------------------------------------------------
# Results, submissions, runs


class ResultListApi(PublicListApi):
    """Results with their provenance; current ones by default (``current=false`` adds history)."""

    parameter_examples = {"method": "patchcore", "category": "mvtec/bottle", "metric": "pl", "dataset": "mvtec",
                          "submission": 42}  # fmt: skip

    class FilterSerializer(QuerySerializer):
        method = key_filter(max_length=80, help_text="Only this method's results (a method key).")
        category = text_filter(max_length=100, help_text="Only this category's results (a category key).")
        metric = metric_filter("Only this metric's results.")
        provenance = serializers.ChoiceField(
            choices=Provenance.choices, required=False, help_text="Only results obtained this way."
        )
        evaluator_version = text_filter(max_length=40, help_text="Only results of this evaluator version.")
        dataset = key_filter(max_length=50, help_text="Only this dataset's results (a dataset key).")
        submission = serializers.IntegerField(
            required=False, min_value=1, max_value=2**31 - 1,
            help_text="Only the results scored from this submission (its id; `current=false` adds superseded ones).",
        )  # fmt: skip
        current = StrictBooleanField(
            required=False, default=True, help_text="`false` adds superseded results (the history)."
        )

    @extend_schema(
        parameters=[FilterSerializer], responses=out.ResultOutputSerializer(many=True), examples=[examples.RESULT]
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        params = dict(filters.validated_data)
        current = params.pop("current")
        qs = result_list(viewer=viewer_of(request.user), **params, current_only=current)
        return paginated_response(serializer_class=out.ResultOutputSerializer, queryset=qs, request=request, view=self)


class SubmissionListApi(PublicListApi):
    """Published submissions, plus the caller's own (private, failed, held); staff see all."""

    parameter_examples = {"method": "my-method"}

    class FilterSerializer(QuerySerializer):
        method = key_filter(max_length=80, help_text="Only this method's submissions (a method key).")

    @extend_schema(
        description="Published submissions, plus the caller's own (private, failed, held); staff see all.",
        parameters=[FilterSerializer],
        responses=out.SubmissionOutputSerializer(many=True),
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = jobs.submission_list(viewer=viewer_of(request.user), method_key=filters.validated_data.get("method"))
        return paginated_response(
            serializer_class=out.SubmissionOutputSerializer, queryset=qs, request=request, view=self
        )


class SubmissionDetailApi(PublicApi):
    """A submission's status; its owner sees it at once (queued, failed or private), others once published."""

    parameter_examples = {"id": 42}

    @extend_schema(responses=out.SubmissionDetailOutputSerializer)
    def get(self, request, pk: int):
        viewer = viewer_of(request.user)
        submission = get_object_or_404(jobs.submission_list(viewer=viewer), pk=pk)
        scored = result_list(viewer=viewer, submission=submission.pk, current_only=False)
        context = {"request": request, "results": scored}
        return Response(out.SubmissionDetailOutputSerializer(submission, context=context).data)


class BenchmarkRunListApi(PublicListApi):
    """Published re-benchmark runs (staff also see the others), newest first."""

    parameter_examples = {"method": "patchcore"}

    class FilterSerializer(QuerySerializer):
        method = key_filter(max_length=80, help_text="Only this method's runs (a method key).")

    @extend_schema(parameters=[FilterSerializer], responses=out.BenchmarkRunPublicOutputSerializer(many=True))
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = jobs.benchmark_run_list(viewer=viewer_of(request.user), method_key=filters.validated_data.get("method"))
        return paginated_response(
            serializer_class=out.BenchmarkRunPublicOutputSerializer, queryset=qs, request=request, view=self
        )


class BenchmarkRunDetailApi(PublicApi):
    parameter_examples = {"id": 7}

    @extend_schema(responses=out.BenchmarkRunPublicOutputSerializer)
    def get(self, request, pk: int):
        run = get_object_or_404(jobs.benchmark_run_list(viewer=viewer_of(request.user)), pk=pk)
        return Response(out.BenchmarkRunPublicOutputSerializer(run).data)


__all__ = [
    "BenchmarkRunDetailApi",
    "BenchmarkRunListApi",
    "CategoryDetailApi",
    "CategoryListApi",
    "CategoryTestFilesApi",
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
