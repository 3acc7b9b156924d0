"""Who may see what: the one visibility rule, for pages and the API alike.

* Anonymous visitors and other users see only what is **published**: a benchmark run once its
  results are published; a submission once it is scored, public, not held or rejected by a
  review and not withdrawn by its owner; the results of those; and a method once it has at
  least one such result.
* An **owner** also sees their own submissions (queued, failed, private, held for review,
  rejected), their results, and the methods they own.
* **Staff** (and the system itself: management commands, workers) see everything.

Every selector that returns runs, submissions, results or methods to a page or an API takes a
:class:`Viewer` (``viewer_of(request.user)``) and applies the ``*_visible_q`` condition of this
module. Tables (leaderboards, breakdowns, evidence, category tables) are the published
leaderboard itself: they count current, published results only and look the same to everyone,
which is what lets the page cache serve one copy to all.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q

from ..models import JobStatus, Provenance, Result, ReviewStatus, Visibility

#: Review states in which a scored public submission counts as published.
PUBLISHED_REVIEW_STATES = (ReviewStatus.NONE, ReviewStatus.APPROVED)


@dataclass(frozen=True)
class Viewer:
    """Who is asking: a signed-in user (by id), staff, or nobody in particular."""

    user_id: int | None = None
    is_staff: bool = False

    @property
    def sees_all(self) -> bool:
        return self.is_staff

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None and not self.is_staff


#: A visitor who is not signed in: sees what is published.
ANONYMOUS = Viewer()
#: Management commands and workers: see everything (never used for a request).
SYSTEM = Viewer(is_staff=True)


def viewer_of(user) -> Viewer:
    """The viewer behind ``request.user`` (Django's or DRF's; ``None`` and anonymous users are anonymous)."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return ANONYMOUS
    return Viewer(user_id=user.pk, is_staff=bool(user.is_staff))


# Published -----------------------------------------------------------------------------------


def published_submission_q(prefix: str = "") -> Q:
    """Submissions that anyone may see: scored, public, not held, rejected or withdrawn (``prefix`` for a relation)."""
    return Q(
        **{
            f"{prefix}status": JobStatus.DONE,
            f"{prefix}visibility": Visibility.PUBLIC,
            f"{prefix}review_status__in": PUBLISHED_REVIEW_STATES,
            f"{prefix}withdrawn_at__isnull": True,
        }
    )


def published_run_q(prefix: str = "") -> Q:
    """Benchmark runs whose results are published."""
    return Q(**{f"{prefix}is_published": True})


def published_result_q(prefix: str = "") -> Q:
    """Results from a published source: a published run (reproduced) or a published submission (server-scored)."""
    return Q(**{f"{prefix}provenance": Provenance.REPRODUCED}, **{f"{prefix}benchmark_run__is_published": True}) | (
        Q(**{f"{prefix}provenance": Provenance.SERVER_SCORED}) & published_submission_q(f"{prefix}submission__")
    )


# Visible to a viewer ---------------------------------------------------------------------------


def submission_visible_q(viewer: Viewer) -> Q:
    if viewer.sees_all:
        return Q()
    q = published_submission_q()
    if viewer.user_id is not None:
        q |= Q(owner_id=viewer.user_id)
    return q


def run_visible_q(viewer: Viewer) -> Q:
    return Q() if viewer.sees_all else published_run_q()


def result_visible_q(viewer: Viewer) -> Q:
    if viewer.sees_all:
        return Q()
    q = published_result_q()
    if viewer.user_id is not None:
        q |= Q(provenance=Provenance.SERVER_SCORED, submission__owner_id=viewer.user_id)
    return q


def method_visible_q(viewer: Viewer) -> Q:
    """Methods with a published result, plus the viewer's own; all of them for staff."""
    if viewer.sees_all:
        return Q()
    q = Q(Exists(Result.objects.filter(published_result_q(), method=OuterRef("pk"))))
    if viewer.user_id is not None:
        q |= Q(owner_id=viewer.user_id)
    return q
