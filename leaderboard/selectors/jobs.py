"""Submissions and benchmark runs, with the visibility rules.

Public submissions are visible to everyone; private ones only to their owner and to staff.
Benchmark runs are public (they are our own reproductions).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet

from ..models import BenchmarkJob, BenchmarkRun, Submission, Visibility


def _can_see_all(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)


def submission_list(*, user=None, method_key: str | None = None) -> QuerySet[Submission]:
    qs = Submission.objects.select_related("method", "suite", "owner")
    if not _can_see_all(user):
        visible = Q(visibility=Visibility.PUBLIC)
        if user is not None and user.is_authenticated:
            visible |= Q(owner=user)
        qs = qs.filter(visible)
    if method_key:
        qs = qs.filter(method__key=method_key)
    return qs.order_by("-created_at", "-pk")


def submission_get(*, pk: int, user=None) -> Submission:
    """The submission if ``user`` may see it; ``Submission.DoesNotExist`` otherwise (no existence leak)."""
    return submission_list(user=user).get(pk=pk)


def submissions_of(*, owner) -> QuerySet[Submission]:
    """The submissions ``owner`` made (public and private), newest first."""
    return Submission.objects.filter(owner=owner).select_related("method", "suite").order_by("-created_at", "-pk")


def submission_active_count(*, owner) -> int:
    """How many of ``owner``'s submissions wait or are being scored (what the concurrent quota counts)."""
    return Submission.objects.filter(owner=owner, status__in=Submission.ACTIVE_STATUSES).count()


def benchmark_run_list(
    *, method_key: str | None = None, pks: Iterable[int] | None = None, with_jobs: bool = False
) -> QuerySet[BenchmarkRun]:
    """Runs, newest first; optionally of one method, or exactly ``pks``; ``with_jobs`` prefetches jobs."""
    qs = BenchmarkRun.objects.select_related("method", "suite")
    if method_key:
        qs = qs.filter(method__key=method_key)
    if pks is not None:
        qs = qs.filter(pk__in=list(pks))
    if with_jobs:
        qs = qs.prefetch_related("jobs__category")
    return qs.order_by("-created_at", "-pk")


def benchmark_job_list(*, run: BenchmarkRun) -> QuerySet[BenchmarkJob]:
    """The run's per-category jobs, in category order."""
    return run.jobs.select_related("category")


def benchmark_run_get(*, pk: int) -> BenchmarkRun:
    return benchmark_run_list().get(pk=pk)


def job_status(job) -> dict:
    """The JSON status document that the live-progress script polls."""
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "progress": round(float(job.progress), 4),
        "progress_message": job.progress_message,
        "error_message": job.error_message if job.status == "failed" else "",
        "is_finished": job.is_finished,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "updated_at": job.updated_at.isoformat() if job.updated_at else None,
    }
