"""Upload pages: the submission form (signed-in users), sign out, the user's API token.

The status page of a submission is the site's (``leaderboard:submission-detail``); the form
redirects there. Uploads stream to a temporary file (``TemporaryFileUploadHandler``) and are
copied to storage in chunks by ``submission_create``. Every page here shows the user's own
data (their token, their submissions) or a CSRF token: none may be stored by a cache
(``never_cache``: ``Cache-Control: no-store, private``).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods, require_POST
from django.views.generic import RedirectView

from ..models import Visibility
from ..selectors import catalog, jobs
from ..selectors.accounts import api_token_get
from ..selectors.visibility import viewer_of
from ..services.accounts import api_token_rotate as token_rotate
from ..services.submissions import (
    QuotaExceeded,
    blind_submissions_per_day,
    bundle_max_bytes,
    submission_create,
    submissions_concurrent,
    submissions_per_day,
)
from ..uploads import BundleSizeLimitHandler

#: Sign-in (with a link to sign up): django-allauth's page.
LOGIN_URL = reverse_lazy("account_login")


class SubmissionForm(forms.Form):
    method = forms.CharField(
        max_length=120,
        required=False,
        help_text="Your method's name; a new name creates the method, owned by you. Empty: the name in the "
        "bundle's manifest.",
        widget=forms.TextInput(attrs={"list": "my-methods", "autocomplete": "off"}),
    )
    suite = forms.ChoiceField(
        required=False,
        help_text="The categories your bundle covers. Empty: the suite named in the bundle's manifest.",
    )
    archive = forms.FileField(label="Bundle (.zip)", help_text="See the bundle format below.")
    visibility = forms.ChoiceField(
        choices=Visibility.choices,
        initial=Visibility.PUBLIC,
        help_text="Private scores are shown to you only and never enter the leaderboard.",
    )
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["suite"].choices = [("", "the suite in the bundle's manifest"), *catalog.suite_choices()]


@never_cache
@csrf_exempt  # CSRF is checked by _submission_new, after the size limit is installed
def submission_new(request):
    """The upload form. The size-limit handler must be in place before CSRF reads the body."""
    limiter = BundleSizeLimitHandler(request)
    request.upload_handlers.insert(0, limiter)
    return _submission_new(request, limiter)


@login_required(login_url=LOGIN_URL)
@require_http_methods(["GET", "POST"])
@csrf_protect
def _submission_new(request, limiter: BundleSizeLimitHandler):
    form = SubmissionForm(request.POST or None, request.FILES or None)
    status = 200
    if limiter.exceeded:
        form.is_valid()
        form.errors.pop("archive", None)
        form.add_error("archive", limiter.message)
        status = 413
    elif request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            submission = submission_create(
                owner=request.user,
                method_name=data["method"],
                suite_key=data["suite"],
                archive=data["archive"],
                visibility=data["visibility"],
                description=data["description"],
            )
        except QuotaExceeded as exc:
            form.add_error(None, " ".join(exc.messages))
            status = 429
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                form.add_error(None, exc.messages)
            status = 400
        else:
            messages.success(request, f"Submission {submission.pk} accepted, waiting for a worker.")
            return redirect(reverse("leaderboard:submission-detail", args=[submission.pk]))
    elif request.method == "POST":
        status = 400
    context = {
        "form": form,
        "recent": list(jobs.submissions_of(owner=request.user)[:20]),
        "my_methods": catalog.method_list(viewer=viewer_of(request.user), owner=request.user),
        "token": api_token_get(user=request.user),
        "per_day": submissions_per_day(),
        "blind_per_day": blind_submissions_per_day(),
        "concurrent": submissions_concurrent(),
        "active": jobs.submission_active_count(owner=request.user),
        "max_mib": bundle_max_bytes() // (1 << 20),
    }
    return render(request, "submissions/submit.html", context, status=status)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_POST
def api_token_rotate(request):
    """Create (or replace) the signed-in user's API token for ``Authorization: Token <key>``."""
    token_rotate(user=request.user)
    messages.success(request, "A new API token was created; the previous one no longer works.")
    return redirect("submissions:new")


@method_decorator(never_cache, name="dispatch")
class LoginView(RedirectView):
    """The old sign-in address: now the site's account sign-in (which offers sign-up too)."""

    pattern_name = "account_login"
    query_string = True


@method_decorator(never_cache, name="dispatch")
class LogoutView(auth_views.LogoutView):
    next_page = reverse_lazy("leaderboard:home")
