"""Staff-only REST API: start re-benchmarks and follow their progress (token or session auth, admins only)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..selectors.jobs import benchmark_run_list
from ..selectors.visibility import viewer_of
from ..services.benchmark_runs import BenchmarkRequestError, benchmark_runs_create
from . import examples
from .params import KEY_PATTERN, TEXT_PATTERN, FullMatchValidator


def _matching(pattern: str, message: str, **kwargs) -> serializers.CharField:
    return serializers.CharField(trim_whitespace=False, validators=[FullMatchValidator(pattern, message)], **kwargs)


class BenchmarkRunCreateSerializer(serializers.Serializer):
    """The request's shape only; what it asks for is validated by the service, as for every other path.

    A run is the config's entry for each method (a ``RunSpec``) on the chosen suites and
    categories (default: the entry's own) and device. A method, suite, category or config that
    does not exist is a 400 in the API's error format, with the same message the CLI, the admin
    and ``manage.py rebenchmark`` give.
    """

    methods = serializers.ListField(
        child=_matching(KEY_PATTERN, "Enter a method key.", max_length=80),
        allow_empty=False,
        max_length=50,
        help_text="Keys of registered methods (see `/api/v1/methods/`, `reproducible`).",
    )
    suites = serializers.ListField(
        child=_matching(KEY_PATTERN, "Enter a suite key.", max_length=50),
        required=False,
        default=list,
        max_length=50,
        help_text="Suite keys; their categories are run (with `categories`, merged).",
    )
    categories = serializers.ListField(
        child=_matching(TEXT_PATTERN, "Enter a category key.", max_length=100),
        required=False,
        default=list,
        max_length=500,
        help_text="Category keys, `<dataset>/<category>`.",
    )
    config = _matching(
        r"^[a-z][a-z0-9_]*$",
        "Enter a config name: lower-case letters, digits and underscores.",
        max_length=80,
        required=False,
        default="paper",
        help_text="A run config by name: a file of VADI_RUN_CONFIG_DIR, e.g. `synthetic_cpu` or `paper`.",
    )
    device = _matching(
        r"^(auto|cpu|mps|cuda(:[0-9]+)?)$",
        "Enter auto, cpu, mps, cuda or cuda:N.",
        max_length=20,
        required=False,
        default="auto",
        help_text="`auto` (CUDA when the worker has it), `cpu`, `mps`, `cuda` or `cuda:N`.",
    )


class BenchmarkJobOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    category = serializers.CharField(source="category.key")
    status = serializers.CharField()
    progress = serializers.FloatField()
    progress_message = serializers.CharField()
    error_message = serializers.CharField()
    attempts = serializers.IntegerField()
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    timings = serializers.JSONField()


@extend_schema_serializer(examples=[examples.STAFF_BENCHMARK_RUN])
class BenchmarkRunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    method = serializers.CharField(source="method.key")
    suite = serializers.CharField(source="suite.key", allow_null=True, default=None)
    status = serializers.CharField()
    progress = serializers.FloatField()
    progress_message = serializers.CharField()
    error_message = serializers.CharField()
    is_published = serializers.BooleanField()
    config = serializers.JSONField()
    commit = serializers.CharField()
    environment = serializers.JSONField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    jobs = BenchmarkJobOutputSerializer(many=True)


class BenchmarkRunListCreateApi(APIView):
    """``GET``: the latest re-benchmark runs; ``POST``: start one run per method on the chosen categories."""

    permission_classes = [IsAdminUser]
    parser_classes = [JSONParser]
    invalid_example = examples.error(
        400,
        "invalid",
        "unknown config 'nope'; available: paper, synthetic_cpu, tiny",
        ["unknown config 'nope'; available: paper, synthetic_cpu, tiny"],
    )

    @extend_schema(
        summary="The latest 100 re-benchmark runs, newest first, with their jobs",
        responses=BenchmarkRunOutputSerializer(many=True),
    )
    def get(self, request):
        runs = benchmark_run_list(viewer=viewer_of(request.user), with_jobs=True)[:100]
        return Response(BenchmarkRunOutputSerializer(runs, many=True).data)

    @extend_schema(
        summary="Start a re-benchmark: one run per method, one job per category",
        request=BenchmarkRunCreateSerializer,
        responses={201: BenchmarkRunOutputSerializer(many=True)},
        examples=[examples.STAFF_BENCHMARK_RUNS_REQUEST, examples.STAFF_BENCHMARK_RUNS_CREATED],
    )
    def post(self, request):
        payload = BenchmarkRunCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            runs = benchmark_runs_create(
                **payload.validated_data, requested_by=request.user, allow_config_paths=False
            )
        except BenchmarkRequestError as exc:
            raise serializers.ValidationError([str(exc)]) from exc
        viewer = viewer_of(request.user)
        fresh = benchmark_run_list(viewer=viewer, pks=[r.pk for r in runs], with_jobs=True).order_by("pk")
        return Response(BenchmarkRunOutputSerializer(fresh, many=True).data, status=status.HTTP_201_CREATED)


class BenchmarkRunDetailApi(APIView):
    """One run with its per-category jobs: status, progress, heartbeat, errors."""

    permission_classes = [IsAdminUser]
    parameter_examples = {"run_id": 7}

    @extend_schema(responses=BenchmarkRunOutputSerializer)
    def get(self, request, run_id: int):
        run = get_object_or_404(benchmark_run_list(viewer=viewer_of(request.user), with_jobs=True), pk=run_id)
        return Response(BenchmarkRunOutputSerializer(run).data)
