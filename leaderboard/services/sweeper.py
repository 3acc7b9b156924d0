"""Find jobs whose worker died and requeue them (while attempts remain) or fail them ("worker lost").

A running job proves it is alive by writing ``heartbeat_at`` (its lease's heartbeats and
progress; see ``services.jobs``). When the heartbeat is older than
``VADI_HEARTBEAT_TIMEOUT_S`` (default 120 s) the worker is presumed dead: the job goes back to
``queued`` and a fresh task is enqueued for it, once per allowed attempt
(``VADI_MAX_ATTEMPTS``, default 2, counting every start), after which the job fails with a
"worker lost" message. Every change is a conditional update on the state the sweeper saw, so a
job that comes back to life (or is claimed by a redelivered task) in between is left alone, and
two sweepers never both requeue one job.

The same mechanism covers benchmark jobs and uploaded submissions in ``validating`` or
``scoring`` state: the kinds are ``SUBMISSION_JOBS`` and ``BENCHMARK_JOBS``, whose task is
enqueued again by name and whose ``on_failed`` closes what depends on a failed job (the
benchmark run). A kind with a dispatcher (benchmark jobs: ``services.dispatch``) gets its
requeued jobs back as waiting jobs, and every sweep calls its dispatcher: that tops up the
benchmark queue after a missed call and sends again jobs whose message was lost. Run it from
``manage.py sweep_jobs`` (cron) or the Celery task ``evaluation.sweep_stale_jobs`` (Celery beat,
on the housekeeping queue), every minute or so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..models import JobStatus
from .benchmark_jobs import BENCHMARK_JOBS
from .jobs import JobKind, error_fields, heartbeat_timeout_s, job_enqueue, max_attempts, stale_q
from .submissions import SUBMISSION_JOBS

logger = logging.getLogger(__name__)

#: The kinds of job the sweeper watches.
KINDS: tuple[JobKind, ...] = (BENCHMARK_JOBS, SUBMISSION_JOBS)


@dataclass
class SweepReport:
    """What one sweep did: human-readable entries, e.g. ``"benchmark job 12 (attempt 1 of 2)"``.

    ``dispatched`` and ``resent`` name the jobs that the kinds' dispatchers sent to the broker
    (for the first time, and again after a lost message).
    """

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    dispatched: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "requeued": list(self.requeued),
            "failed": list(self.failed),
            "dispatched": list(self.dispatched),
            "resent": list(self.resent),
        }

    def __bool__(self) -> bool:
        return bool(self.requeued or self.failed or self.dispatched or self.resent)


def _sweep_kind(kind: JobKind, *, cutoff: datetime, timeout_s: float, limit: int, report: SweepReport) -> None:
    stale = list(
        kind.model.objects.filter(stale_q(cutoff, untouched=True), status__in=kind.running).values(
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
            handed_back = {"dispatched_at": None} if kind.dispatch is not None else {}
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
                    **handed_back,
                )
                if changed and kind.dispatch is None:
                    job_enqueue(kind.task_name, [row["pk"]])
            if changed:
                entry = f"{kind.label} {row['pk']} (after attempt {attempts} of {limit})"
                report.requeued.append(entry)
                logger.warning("requeued %s: no heartbeat for %.0f s", entry, timeout_s)
        else:
            changed = seen.update(
                status=JobStatus.FAILED,
                finished_at=now,
                heartbeat_at=now,
                **error_fields(
                    f"worker lost: no heartbeat for more than {timeout_s:.0f} s on attempt {attempts} of {limit}; "
                    "giving up"
                ),
            )
            if changed:
                entry = f"{kind.label} {row['pk']} (attempt {attempts} of {limit})"
                report.failed.append(entry)
                logger.error("failed %s: worker lost", entry)
                if kind.on_failed is not None:
                    kind.on_failed(row["pk"])


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
    for kind in KINDS:
        if kind.dispatch is not None:
            sent = kind.dispatch()
            report.dispatched.extend(f"{kind.label} {pk}" for pk in sent.dispatched)
            report.resent.extend(f"{kind.label} {pk}" for pk in sent.resent)
    return report
