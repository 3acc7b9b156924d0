"""Find jobs whose worker died and requeue them (while attempts remain) or fail them ("worker lost").

A running job proves it is alive by writing ``heartbeat_at`` (see
``evaluation.services.benchmarks``). When the heartbeat is older than
``VADI_HEARTBEAT_TIMEOUT_S`` (default 120 s) the worker is presumed dead: the job goes back to
``queued`` and a fresh task is enqueued for it, once per allowed attempt
(``VADI_MAX_ATTEMPTS``, default 2, counting every start), after which the job fails with a
"worker lost" message. Every change is a conditional update on the state the sweeper saw, so a
job that comes back to life (or is claimed by a redelivered task) in between is left alone, and
two sweepers never both requeue one job.

The same mechanism covers benchmark jobs and uploaded submissions in ``validating`` or
``scoring`` state. Run it from ``manage.py sweep_jobs`` (cron) or the Celery task
``evaluation.sweep_stale_jobs`` (Celery beat), every minute or so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app, signature
from django.db import models, transaction
from django.utils import timezone

from leaderboard.models import BenchmarkJob, JobStatus, Submission
from leaderboard.services.jobs import heartbeat_timeout_s, max_attempts, stale_q
from leaderboard.services.submissions import RUNNING_STATUSES as SUBMISSION_RUNNING

from .benchmarks import RUNNING_STATUSES as BENCHMARK_JOB_RUNNING
from .benchmarks import benchmark_run_finalize

logger = logging.getLogger(__name__)

#: Celery task names that (re)start a job from its id.
BENCHMARK_TASK = "evaluation.run_benchmark_job"
SUBMISSION_TASK = "evaluation.score_submission"


@dataclass(frozen=True)
class _Kind:
    """One kind of sweepable job: its model, its active states and how to restart/close one."""

    label: str
    model: type[models.Model]
    active: tuple[str, ...]
    task_name: str
    on_failed: Callable[[models.Model], None] | None = None


def _finalize_benchmark_run(job: BenchmarkJob) -> None:
    benchmark_run_finalize(run_id=job.run_id)


KINDS: tuple[_Kind, ...] = (
    _Kind("benchmark job", BenchmarkJob, BENCHMARK_JOB_RUNNING, BENCHMARK_TASK, _finalize_benchmark_run),
    _Kind("submission", Submission, SUBMISSION_RUNNING, SUBMISSION_TASK),
)


@dataclass
class SweepReport:
    """What one sweep did: human-readable entries, e.g. ``"benchmark job 12 (attempt 1 of 2)"``."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"requeued": list(self.requeued), "failed": list(self.failed)}

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed)


def _enqueue(task_name: str, object_id: int) -> None:
    if task_name not in current_app.tasks:  # the task modules are imported lazily (autodiscovery)
        current_app.loader.import_default_modules()
    signature(task_name, args=[object_id]).apply_async()


def _sweep_kind(kind: _Kind, *, cutoff: datetime, timeout_s: float, limit: int, report: SweepReport) -> None:
    stale = list(
        kind.model.objects.filter(stale_q(cutoff, untouched=True), status__in=kind.active).values(
            "pk", "status", "attempts", "heartbeat_at", "celery_task_id"
        )
    )
    for row in stale:
        seen = kind.model.objects.filter(
            pk=row["pk"], status=row["status"], heartbeat_at=row["heartbeat_at"], celery_task_id=row["celery_task_id"]
        )
        attempts = row["attempts"]
        now = timezone.now()
        if attempts < limit:
            with transaction.atomic():
                changed = seen.update(
                    status=JobStatus.QUEUED,
                    celery_task_id="",
                    heartbeat_at=now,
                    progress=0.0,
                    progress_message=(
                        f"worker lost (no heartbeat for {timeout_s:.0f} s); requeued for attempt "
                        f"{attempts + 1} of {limit}"
                    ),
                )
                if changed:
                    transaction.on_commit(lambda name=kind.task_name, pk=row["pk"]: _enqueue(name, pk))
            if changed:
                entry = f"{kind.label} {row['pk']} (after attempt {attempts} of {limit})"
                report.requeued.append(entry)
                logger.warning("requeued %s: no heartbeat for %.0f s", entry, timeout_s)
        else:
            changed = seen.update(
                status=JobStatus.FAILED,
                finished_at=now,
                heartbeat_at=now,
                error_message=(
                    f"worker lost: no heartbeat for more than {timeout_s:.0f} s on attempt {attempts} of {limit}; "
                    "giving up"
                ),
            )
            if changed:
                entry = f"{kind.label} {row['pk']} (attempt {attempts} of {limit})"
                report.failed.append(entry)
                logger.error("failed %s: worker lost", entry)
                if kind.on_failed is not None:
                    kind.on_failed(kind.model.objects.get(pk=row["pk"]))


def jobs_sweep(*, timeout_s: float | None = None, attempts: int | None = None) -> SweepReport:
    """Requeue or fail every job whose heartbeat is older than ``timeout_s``; report what changed.

    Parameters
    ----------
    timeout_s
        Seconds without a heartbeat after which a worker counts as lost (default
        ``settings.VADI_HEARTBEAT_TIMEOUT_S``, 120).
    attempts
        Starts allowed per job (default ``settings.VADI_MAX_ATTEMPTS``, 2): a lost job that has
        been started fewer times is requeued, otherwise it fails with "worker lost".
    """
    timeout = heartbeat_timeout_s() if timeout_s is None else float(timeout_s)
    limit = max_attempts() if attempts is None else int(attempts)
    if timeout <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout}")
    if limit < 1:
        raise ValueError(f"attempts must be at least 1, got {limit}")
    cutoff = timezone.now() - timedelta(seconds=timeout)
    report = SweepReport()
    for kind in KINDS:
        _sweep_kind(kind, cutoff=cutoff, timeout_s=timeout, limit=limit, report=report)
    return report
