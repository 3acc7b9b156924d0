"""A signed-in user's own pages: the account page (methods, submissions, API token), editing a
method they own, withdrawing a submission.

Sign-up, sign-in, e-mail confirmation and password reset are django-allauth's (``/accounts/``).
Every page here shows the user's own data: never cached (``never_cache``). A method or a
submission the user may not see answers 404 (no existence leak); one they may see but not
change answers 403.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from ..models import Method, Submission
from ..selectors import catalog, jobs
from ..selectors.accounts import api_token_get
from ..selectors.ownership import method_can_edit, submission_can_withdraw
from ..selectors.visibility import viewer_of
from ..services.accounts import api_token_rotate
from ..services.ownership import METHOD_EDITABLE_FIELDS, method_update, submission_withdraw


class MethodForm(forms.Form):
    name = forms.CharField(label="Display name", max_length=120)
    authors = forms.CharField(label="Authors or team", max_length=500, required=False)
    paper_title = forms.CharField(label="Paper title", max_length=300, required=False)
    paper_url = forms.URLField(label="Paper link", required=False, assume_scheme="https")
    code_url = forms.URLField(label="Code link", required=False, assume_scheme="https")
    description = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 5}))


@never_cache
@login_required
def account_home(request):
    """The signed-in user's methods, submissions and API token."""
    user = request.user
    return render(
        request,
        "accounts/home.html",
        {
            "methods": list(catalog.method_list(viewer=viewer_of(user), owner=user)),
            "submissions": [
                (s, submission_can_withdraw(submission=s, user=user)) for s in jobs.submissions_of(owner=user)[:50]
            ],
            "token": api_token_get(user=user),
        },
    )


@never_cache
@login_required
@require_POST
def account_token_rotate(request):
    """Create (or replace) the user's API token; the previous one stops working at once."""
    api_token_rotate(user=request.user)
    messages.success(request, "A new API token was created; the previous one no longer works.")
    return redirect("account:home")


def _method_or_404(request, key: str) -> Method:
    try:
        return catalog.method_get(key=key, viewer=viewer_of(request.user))
    except Method.DoesNotExist as exc:
        raise Http404("no such method") from exc


@never_cache
@require_http_methods(["GET", "POST"])
def method_edit(request, key: str):
    """Edit a method's display name, authors, links and description (its owner or staff).

    A method the visitor may not see answers 404 before anything else (as on its page); then
    anonymous visitors are sent to sign in.
    """
    method = _method_or_404(request, key)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not method_can_edit(method=method, user=request.user):
        raise PermissionDenied("only the method's owner may edit it")
    initial = {field: getattr(method, field) for field in METHOD_EDITABLE_FIELDS}
    form = MethodForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                method_update(method=method, actor=request.user, data=form.cleaned_data)
            except ValidationError as exc:
                for field, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]:
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(request, "Your changes were saved; the method's history records them.")
                return redirect("leaderboard:method-detail", key=method.key)
        status = 400
    return render(request, "accounts/method_edit.html", {"method": method, "form": form}, status=status)


@never_cache
@login_required
@require_POST
def submission_withdraw_view(request, pk: int):
    """Withdraw a scored submission (its owner or staff): its results leave the leaderboard."""
    try:
        submission = jobs.submission_get(pk=pk, viewer=viewer_of(request.user))
    except Submission.DoesNotExist as exc:
        raise Http404("no such submission (or it is private)") from exc
    if not request.user.is_staff and submission.owner_id != request.user.pk:
        raise PermissionDenied("only the submission's owner may withdraw it")
    try:
        submission_withdraw(submission=submission, actor=request.user, note=request.POST.get("note", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Submission {submission.pk} was withdrawn; its results left the leaderboard.")
    back = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return redirect(back if back and safe else reverse("account:home"))
