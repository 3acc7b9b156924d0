from django.urls import path

from .apis import public

urlpatterns = [
    path("health/", public.HealthApi.as_view(), name="api-health"),
]
