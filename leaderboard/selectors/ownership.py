"""Who may change a method or withdraw a submission, and a method's change history.

The rules: the owner of a method (the user whose upload created it) or staff may edit it; the
owner of a submission (or staff) may withdraw it. Registered algorithms (``algorithm_key``) are
described by the algorithm library (``manage.py sync_catalog --methods`` rewrites them) and are
edited there, not here.
"""

from __future__ import annotations

from django.db.models import QuerySet

from ..models import JobStatus, Method, MethodChange, Submission
from .visibility import Viewer


def method_can_edit(*, method: Method, user) -> bool:
    """Whether ``user`` may edit ``method``'s description: its owner or staff; never a registered algorithm."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return False
    if method.algorithm_key:
        return False
    return bool(user.is_staff) or (method.owner_id is not None and method.owner_id == user.pk)


def submission_can_withdraw(*, submission: Submission, user) -> bool:
    """Whether ``user`` may withdraw ``submission``: its owner or staff, once it is scored and not yet withdrawn."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return False
    if submission.status != JobStatus.DONE or submission.withdrawn_at is not None:
        return False
    return bool(user.is_staff) or submission.owner_id == user.pk


def method_change_list(*, method: Method, viewer: Viewer) -> QuerySet[MethodChange]:
    """``method``'s recorded changes, newest first; private withdrawals only for the owner and staff."""
    qs = MethodChange.objects.filter(method=method).select_related("actor", "submission").order_by("-created_at", "-pk")
    if viewer.sees_all or (viewer.user_id is not None and viewer.user_id == method.owner_id):
        return qs
    return qs.filter(is_public=True)
