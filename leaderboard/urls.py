"""Public pages. Keys of categories contain a slash, hence the ``path`` converters."""

from django.urls import path

from .views import blind, pages

app_name = "leaderboard"

urlpatterns = [
    path("", pages.home, name="home"),
    path("datasets/<slug:key>/", pages.dataset_detail, name="dataset-detail"),
    path("blind/", blind.blind_suite, name="blind"),
    path("blind/<slug:name>/<slug:split>.zip", blind.blind_download, name="blind-download"),
    path("suites/<slug:suite>/categories/", pages.breakdown, name="breakdown"),
    path("suites/<slug:suite>/evidence/<slug:method>/<slug:metric>/", pages.evidence, name="evidence"),
    path("categories/<path:key>/", pages.category_detail, name="category-detail"),
    path("methods/", pages.method_list, name="method-list"),
    path("compare/", pages.compare, name="compare"),
    path("results/<int:pk>/localisation/", pages.result_localisation, name="result-localisation"),
    path(
        "results/<int:pk>/localisation/<int:index>.png",
        pages.result_localisation_image,
        name="result-localisation-image",
    ),
    path("methods/<slug:key>/", pages.method_detail, name="method-detail"),
    path("submissions/<int:pk>/", pages.submission_detail, name="submission-detail"),
    path("submissions/<int:pk>/status.json", pages.submission_status, name="submission-status"),
    path("runs/<int:pk>/", pages.run_detail, name="run-detail"),
    path("runs/<int:pk>/status.json", pages.run_status, name="run-status"),
    path("runs/<int:pk>/spec.json", pages.run_spec, name="run-spec"),
]
