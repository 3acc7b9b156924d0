"""Staff-only REST API: start re-benchmarks and follow their progress (token or session auth, admins only)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..selectors.jobs import benchmark_run_list
from ..selectors.visibility import viewer_of
from ..services.benchmark_runs import BenchmarkRequestError, benchmark_runs_create


class BenchmarkRunCreateSerializer(serializers.Serializer):
    """The request's shape only; what it asks for is validated by the service, as for every other path.

    A run is the config's entry for each method (a ``RunSpec``) on the chosen suites and
    categories (default: the entry's own) and device; errors come back as ``{"detail": ...}``
    with the same message the CLI, the admin and ``manage.py rebenchmark`` give.
    """

    methods = serializers.ListField(child=serializers.CharField(max_length=80), allow_empty=False, max_length=50)
    suites = serializers.ListField(child=serializers.CharField(max_length=50), required=False, default=list)
    categories = serializers.ListField(child=serializers.CharField(max_length=100), required=False, default=list)
    config = serializers.CharField(
        max_length=80,
        required=False,
        default="paper",
        help_text="a run config by name: a file of VADI_RUN_CONFIG_DIR, e.g. synthetic_cpu or paper",
    )
    device = serializers.CharField(
        max_length=20, required=False, default="auto", help_text="auto (CUDA when the worker has it), cpu or cuda:N"
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

    @extend_schema(responses=BenchmarkRunOutputSerializer(many=True))
    def get(self, request):
        runs = benchmark_run_list(viewer=viewer_of(request.user), with_jobs=True)[:100]
        return Response(BenchmarkRunOutputSerializer(runs, many=True).data)

    @extend_schema(request=BenchmarkRunCreateSerializer, responses={201: BenchmarkRunOutputSerializer(many=True)})
    def post(self, request):
        payload = BenchmarkRunCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            runs = benchmark_runs_create(
                **payload.validated_data, requested_by=request.user, allow_config_paths=False
            )
        except BenchmarkRequestError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        viewer = viewer_of(request.user)
        fresh = benchmark_run_list(viewer=viewer, pks=[r.pk for r in runs], with_jobs=True).order_by("pk")
        return Response(BenchmarkRunOutputSerializer(fresh, many=True).data, status=status.HTTP_201_CREATED)


class BenchmarkRunDetailApi(APIView):
    """One run with its per-category jobs: status, progress, heartbeat, errors."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses=BenchmarkRunOutputSerializer)
    def get(self, request, run_id: int):
        run = get_object_or_404(benchmark_run_list(viewer=viewer_of(request.user), with_jobs=True), pk=run_id)
        return Response(BenchmarkRunOutputSerializer(run).data)
