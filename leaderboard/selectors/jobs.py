"""Submissions and benchmark runs, as the visibility rule lets each viewer see them.

``visibility`` says who sees what: published runs and submissions for everyone, their own
submissions for owners, everything for staff. A hidden row and a missing one look the same
(``DoesNotExist``): nobody learns that a private submission exists.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet

from ..failures import public_message
from ..models import BenchmarkJob, BenchmarkRun, Submission
from .visibility import Viewer, run_visible_q, submission_visible_q


def submission_list(*, viewer: Viewer, method_key: str | None = None) -> QuerySet[Submission]:
    """The submissions ``viewer`` may see, newest first; optionally of one method."""
    qs = Submission.objects.filter(submission_visible_q(viewer)).select_related("method", "suite", "owner")
    if method_key:
        qs = qs.filter(method__key=method_key)
    return qs.order_by("-created_at", "-pk")


def submission_get(*, pk: int, viewer: Viewer) -> Submission:
    """The submission if ``viewer`` may see it; ``Submission.DoesNotExist`` otherwise (no existence leak)."""
    return submission_list(viewer=viewer).get(pk=pk)


def submissions_of(*, owner) -> QuerySet[Submission]:
    """The submissions ``owner`` made (public and private), newest first (for their own pages only)."""
    return Submission.objects.filter(owner=owner).select_related("method", "suite").order_by("-created_at", "-pk")


def submission_active_count(*, owner) -> int:
    """How many of ``owner``'s submissions wait or are being scored (what the concurrent quota counts)."""
    return Submission.objects.filter(owner=owner, status__in=Submission.ACTIVE_STATUSES).count()


def benchmark_run_list(
    *, viewer: Viewer, method_key: str | None = None, pks: Iterable[int] | None = None, with_jobs: bool = False
) -> QuerySet[BenchmarkRun]:
    """The runs ``viewer`` may see (published ones; all for staff), newest first.

    Optionally of one method, or exactly ``pks``; ``with_jobs`` prefetches the jobs.
    """
    qs = BenchmarkRun.objects.filter(run_visible_q(viewer)).select_related("method", "suite")
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


def benchmark_run_get(*, pk: int, viewer: Viewer) -> BenchmarkRun:
    """The run if ``viewer`` may see it; ``BenchmarkRun.DoesNotExist`` otherwise."""
    return benchmark_run_list(viewer=viewer).get(pk=pk)


def benchmark_run_public_config(run: BenchmarkRun) -> dict:
    """The run's config as anyone may read it: a config given by file path is named without its path."""
    config = dict(run.config or {})
    if "config_name" in config:
        config["config_name"] = public_message(config["config_name"])
    return config


def job_status(job) -> dict:
    """The JSON status document that the live-progress script polls (messages are public text)."""
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
