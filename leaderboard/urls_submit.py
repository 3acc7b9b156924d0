"""Upload pages under ``/submit/``: the form, sign in/out and the API token."""

from django.urls import path

from .views import submit

app_name = "submissions"

urlpatterns = [
    path("", submit.submission_new, name="new"),
    path("login/", submit.LoginView.as_view(), name="login"),
    path("logout/", submit.LogoutView.as_view(), name="logout"),
    path("token/", submit.api_token_rotate, name="token"),
]
