"""Root URL configuration: the public site, the REST API under /api/v1/, docs, admin and accounts."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from leaderboard.apis.errors import ApiNotFoundApi

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/staff/", include("leaderboard.api_urls_staff")),
    path("api/v1/", include("leaderboard.api_urls_submit")),
    path("api/v1/", include("leaderboard.api_urls")),
    re_path(r"^api/", ApiNotFoundApi.as_view(), name="api-not-found"),
    path("submit/", include("leaderboard.urls_submit")),
    path("accounts/me/", include("leaderboard.urls_account")),
    path("accounts/", include("allauth.urls")),
    path("", include("leaderboard.urls")),
]
