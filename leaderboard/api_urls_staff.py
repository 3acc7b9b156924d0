from django.urls import path

from .apis import staff

urlpatterns = [
    path("benchmark-runs/", staff.BenchmarkRunListCreateApi.as_view(), name="api-staff-benchmark-runs"),
    path("benchmark-runs/<int:run_id>/", staff.BenchmarkRunDetailApi.as_view(), name="api-staff-benchmark-run"),
]
