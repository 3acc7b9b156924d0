"""Owners look after their methods: edit the description, withdraw a submission; history of both.

Permission rules live in ``selectors.ownership`` (``method_can_edit``,
``submission_can_withdraw``); these services check them again and raise ``PermissionDenied``,
so no interface can skip them. Every change is recorded as a ``MethodChange`` row with its time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from ..cache import leaderboard_cache_invalidate
from ..models import Method, MethodChange, MethodChangeKind, Result, Submission
from ..selectors.catalog import method_list
from ..selectors.ownership import method_can_edit, submission_can_withdraw
from ..selectors.visibility import published_result_q, published_submission_q, viewer_of

#: What an owner may change on a method, in display order.
METHOD_EDITABLE_FIELDS = ("name", "authors", "paper_title", "paper_url", "code_url", "description")


@transaction.atomic
def method_update(*, method: Method, actor, data: Mapping[str, Any]) -> Method:
    """Change ``method``'s editable fields (``METHOD_EDITABLE_FIELDS``) and record what changed.

    Fields not in ``data`` stay as they are; other keys are refused. The name is normalised and
    checked against every other method's (``Method.clean``: no look-alikes). Nothing changed:
    nothing is written. Tables show the name: the cache is invalidated.

    Raises
    ------
    PermissionDenied
        ``actor`` is neither the owner nor staff, or the method is a registered algorithm.
    django.core.exceptions.ValidationError
        An unknown field or a value the model refuses (a bad URL, a look-alike name).
    """
    unknown = sorted(set(data) - set(METHOD_EDITABLE_FIELDS))
    if unknown:
        raise ValidationError(f"these fields cannot be edited: {', '.join(unknown)}")
    method = Method.objects.select_for_update().get(pk=method.pk)
    if not method_can_edit(method=method, user=actor):
        raise PermissionDenied("only the method's owner (or staff) may edit it")
    before = {field: getattr(method, field) for field in METHOD_EDITABLE_FIELDS}
    for field, value in data.items():
        setattr(method, field, (value or "").strip() if isinstance(value, str) or value is None else value)
    if method.name != before["name"]:
        _name_check_unleaked(method=method, actor=actor)
    method.full_clean()
    changes = {
        field: [before[field], getattr(method, field)]
        for field in METHOD_EDITABLE_FIELDS
        if getattr(method, field) != before[field]
    }
    if not changes:
        return method
    method.save(update_fields=[*changes, "updated_at"])
    MethodChange.objects.create(method=method, actor=actor, kind=MethodChangeKind.EDITED, changes=changes)
    leaderboard_cache_invalidate()
    return method


def _name_check_unleaked(*, method: Method, actor) -> None:
    """Refuse a new name that looks like a method ``actor`` may not see, without naming that method.

    (``Method.clean`` names the method a name clashes with; that is right only when the actor may
    see it, as for uploads in ``services.submissions``.)
    """
    other = method.look_alike()
    if other is not None and not method_list(viewer=viewer_of(actor)).filter(pk=other.pk).exists():
        raise ValidationError(
            {
                "name": f"the name {method.name!r} is taken (or too close to the name of a method that is not "
                "public yet: names are compared ignoring case, spaces, dashes and letters that look alike); "
                "choose another name"
            },
            code="look_alike",
        )


def _results_restore_previous(*, submission: Submission, keys: set[tuple]) -> int:
    """For each key a withdrawn submission held, make the newest published earlier result current again."""
    restored: list[int] = []
    if not keys:
        return 0
    candidates = (
        Result.objects.select_for_update(of=("self",))
        .filter(published_result_q(), method_id=submission.method_id, is_current=False)
        .exclude(submission=submission)
        .order_by("-created_at", "-pk")
        .values_list("pk", "category_id", "metric", "variant", "provenance", "evaluator_version")
    )
    for pk, *key in candidates:
        key = tuple(key)
        if key in keys:
            restored.append(pk)
            keys.discard(key)
    if restored:
        Result.objects.filter(pk__in=restored).update(is_current=True, updated_at=timezone.now())
    return len(restored)


@transaction.atomic
def submission_withdraw(*, submission: Submission, actor, note: str = "") -> Submission:
    """Withdraw a scored submission: its results leave the leaderboard; the method's history says so.

    The submission and its results stay (the owner still sees them, marked withdrawn); none of
    them is current any more, and for each (category, metric, variant) the newest earlier
    published result of the same method, if any, becomes current again. Cached tables are
    invalidated. The history entry is public when the submission was published.

    Raises
    ------
    PermissionDenied
        ``actor`` is neither the owner nor staff.
    django.core.exceptions.ValidationError
        The submission is not scored yet (or failed), or was already withdrawn.
    """
    submission = Submission.objects.select_for_update().select_related("method").get(pk=submission.pk)
    if not (actor is not None and (getattr(actor, "is_staff", False) or submission.owner_id == actor.pk)):
        raise PermissionDenied("only the submission's owner (or staff) may withdraw it")
    if not submission_can_withdraw(submission=submission, user=actor):
        state = "already withdrawn" if submission.withdrawn_at else submission.get_status_display().lower()
        raise ValidationError(f"submission {submission.pk} is {state}; only scored submissions can be withdrawn")
    was_published = Submission.objects.filter(published_submission_q(), pk=submission.pk).exists()
    current = Result.objects.select_for_update().filter(submission=submission, is_current=True)
    keys = set(current.values_list("category_id", "metric", "variant", "provenance", "evaluator_version"))
    now = timezone.now()
    current.update(is_current=False, updated_at=now)
    submission.withdrawn_at = now
    submission.save(update_fields=["withdrawn_at", "updated_at"])
    _results_restore_previous(submission=submission, keys=keys)
    MethodChange.objects.create(
        method=submission.method,
        actor=actor,
        kind=MethodChangeKind.WITHDRAWN,
        submission=submission,
        note=note.strip()[:2000],
        is_public=was_published,
    )
    leaderboard_cache_invalidate()
    return submission
