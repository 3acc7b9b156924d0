"""A user's own pages under ``/account/``: methods, submissions, API token (allauth has ``/accounts/``)."""

from django.urls import path

from .views import account

app_name = "account"

urlpatterns = [
    path("", account.account_home, name="home"),
    path("token/", account.account_token_rotate, name="token"),
    path("methods/<slug:key>/edit/", account.method_edit, name="method-edit"),
    path("submissions/<int:pk>/withdraw/", account.submission_withdraw_view, name="submission-withdraw"),
]
