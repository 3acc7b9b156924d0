"""Public REST API routes under ``/api/v1/``. Category keys contain a slash: ``<path:key>``."""

from django.urls import path

from .apis import public

urlpatterns = [
    path("", public.ApiRootApi.as_view(), name="api-root"),
    path("health/", public.HealthApi.as_view(), name="api-health"),
    path("leaderboard/<slug:suite>/", public.LeaderboardDetailApi.as_view(), name="api-leaderboard"),
    path("datasets/", public.DatasetListApi.as_view(), name="api-dataset-list"),
    path("datasets/<slug:key>/", public.DatasetDetailApi.as_view(), name="api-dataset-detail"),
    path("suites/", public.SuiteListApi.as_view(), name="api-suite-list"),
    path("suites/<slug:key>/", public.SuiteDetailApi.as_view(), name="api-suite-detail"),
    path("categories/", public.CategoryListApi.as_view(), name="api-category-list"),
    # Before the detail route: ``<path:key>/`` would otherwise swallow ``.../test-ids``.
    path("categories/<path:key>/test-ids", public.CategoryTestIdsApi.as_view(), name="api-category-test-ids"),
    path("categories/<path:key>/test-files", public.CategoryTestFilesApi.as_view(), name="api-category-test-files"),
    path("categories/<path:key>/", public.CategoryDetailApi.as_view(), name="api-category-detail"),
    path("methods/", public.MethodListApi.as_view(), name="api-method-list"),
    path("methods/<slug:key>/", public.MethodDetailApi.as_view(), name="api-method-detail"),
    path("results/", public.ResultListApi.as_view(), name="api-result-list"),
    path("submissions/", public.SubmissionListApi.as_view(), name="api-submission-list"),
    path("submissions/<int:pk>/", public.SubmissionDetailApi.as_view(), name="api-submission-detail"),
    path("benchmark-runs/", public.BenchmarkRunListApi.as_view(), name="api-benchmark-run-list"),
    path("benchmark-runs/<int:pk>/", public.BenchmarkRunDetailApi.as_view(), name="api-benchmark-run-detail"),
]
