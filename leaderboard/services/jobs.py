"""Mechanics shared by every kind of background job (``Job`` rows: submissions, benchmark jobs).

Jobs belong to the leaderboard: every write of a job row and every enqueue happens in
``leaderboard.services``, the same way for each kind. This module holds what does not depend
on the kind:

* :func:`job_enqueue`, the one way to send a job's task, by its name (``leaderboard.tasknames``:
  the tasks live in ``evaluation.tasks`` and are never imported here);
* :class:`JobKind` (a kind's model, running states, task and how it closes) and
  :class:`JobLease`, a task's hold on one job: ``(kind, pk, task id)``. Every write after the
  claim is conditional on the lease, so a task whose job was swept and handed to another worker
  writes nothing;
* the life cycle over a lease: :func:`job_claim` (one conditional ``UPDATE``, so two tasks
  never both win), :func:`job_progress`, :class:`HeartbeatThread`, :func:`job_release` (back to
  the queue before a retry), :func:`job_fail` and :func:`job_give_up`;
* the knobs (:func:`heartbeat_timeout_s`, :func:`heartbeat_interval_s`, :func:`max_attempts`,
  :func:`heartbeat_thread_enabled`), :func:`stale_q` (the "worker presumed dead" condition) and
  :func:`is_transient` (which errors a task retries).

The kinds themselves are declared next to their own transitions:
``services.submissions.SUBMISSION_JOBS`` and ``services.benchmark_jobs.BENCHMARK_JOBS``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..failures import failure_from_text, public_message
from ..models import Job, JobStatus
from ..tasknames import HEALTH_CHECK_TASK, RUN_BENCHMARK_JOB_TASK, SCORE_SUBMISSION_TASK, SWEEP_STALE_JOBS_TASK

__all__ = [  # the task names are re-exported for the services that enqueue them
    "HEALTH_CHECK_TASK",
    "RUN_BENCHMARK_JOB_TASK",
    "SCORE_SUBMISSION_TASK",
    "SWEEP_STALE_JOBS_TASK",
    "HeartbeatThread",
    "JobKind",
    "JobLease",
    "JobLostError",
    "clip",
    "error_fields",
    "heartbeat_interval_s",
    "heartbeat_thread_enabled",
    "heartbeat_timeout_s",
    "is_transient",
    "job_claim",
    "job_enqueue",
    "job_fail",
    "job_give_up",
    "job_progress",
    "job_publish",
    "job_release",
    "max_attempts",
    "publish_timeout_s",
    "setting_or_env",
    "stale_q",
    "tasks_run_eagerly",
]

logger = logging.getLogger(__name__)

#: States in which a job is over; nothing moves it out of them.
FINISHED_STATUSES = Job.FINISHED_STATUSES
#: Longest progress message a job row holds (longer ones are clipped by :func:`clip`).
MESSAGE_LENGTH: int = Job._meta.get_field("progress_message").max_length
#: Longest error message kept on a job row.
ERROR_LENGTH = 10_000

#: Errors worth retrying: the database or the file system hiccuped, not the job itself.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, OSError)
#: ``OSError`` subclasses that say something about the job's input (a stored archive that is
#: gone or unreadable, a dataset path that is wrong), not the environment: never retried.
PERMANENT_OS_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


class JobLostError(RuntimeError):
    """The job no longer belongs to this task (the sweeper requeued or failed it, or it finished elsewhere)."""


def is_transient(exc: BaseException) -> bool:
    """True for errors that a retry with backoff may cure (database or I/O trouble, less the permanent ones)."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, PERMANENT_OS_ERRORS)


def clip(message: object, length: int = MESSAGE_LENGTH) -> str:
    """``message`` made public (``failures.public_message``), on one line, cut to ``length`` characters.

    Every progress message of a job row goes through here: whoever may see the job reads it.
    """
    text = public_message(message)
    return text if len(text) <= length else text[: length - 1] + "…"


# Kinds and leases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobKind:
    """One kind of background job: its row model, its task, how it closes.

    ``give_up_message`` is what a job says when its task stops retrying (public: the reason,
    an internal error, goes to the staff-only detail);
    ``on_failed(pk)`` runs after a job of this kind failed (the benchmark kind finalises the
    job's run), in the failing transaction. ``dispatch()``, when a kind has one, is what sends
    its waiting jobs to the broker (the benchmark kind: ``services.dispatch``, a few at a time,
    fairly; submissions: ``services.submissions.submissions_dispatch``, all at once); such a
    kind's model has a ``dispatched_at`` field, and the sweeper hands a requeued job back to the
    dispatcher (``dispatched_at`` null) instead of enqueueing it itself. ``give_up_fields`` are
    written with the failure when a task gives up after its retries (submissions: the failure is
    ours, ``quota_exempt``).
    """

    label: str
    model: type[Job]
    task_name: str
    give_up_message: str = "Server error: gave up after repeated temporary errors"
    on_failed: Callable[[int], None] | None = None
    dispatch: Callable[[], Any] | None = None
    give_up_fields: tuple[tuple[str, Any], ...] = ()

    @property
    def running(self) -> tuple[str, ...]:
        """The states in which a worker holds a job of this kind (``model.RUNNING_STATUSES``)."""
        return self.model.RUNNING_STATUSES

    def lease(self, pk: int, task_id: str) -> JobLease:
        return JobLease(self, int(pk), str(task_id))


@dataclass(frozen=True)
class JobLease:
    """A task's hold on one job: the job's kind (so its model), its pk and the task's id."""

    kind: JobKind
    pk: int
    task_id: str

    @property
    def model(self) -> type[Job]:
        return self.kind.model

    def rows(self) -> models.QuerySet:
        """The job's row while it still belongs to this task and is running (empty otherwise)."""
        return self.model.objects.filter(pk=self.pk, celery_task_id=self.task_id, status__in=self.kind.running)

    def lost(self) -> JobLostError:
        return JobLostError(f"{self.kind.label} {self.pk} no longer belongs to task {self.task_id}")

    def __str__(self) -> str:
        return f"{self.kind.label} {self.pk} (task {self.task_id})"


# Settings -----------------------------------------------------------------------------------


def setting_or_env(name: str, default: Any) -> Any:
    """A Django setting, else the environment variable of the same name, else ``default``."""
    value = getattr(settings, name, None)
    if value is None:
        value = os.environ.get(name) or default
    return value


def heartbeat_timeout_s() -> float:
    """Seconds without a heartbeat after which a running job counts as lost (``VADI_HEARTBEAT_TIMEOUT_S``)."""
    return float(setting_or_env("VADI_HEARTBEAT_TIMEOUT_S", 120))


def heartbeat_interval_s(*, minimum: float = 0.0) -> float:
    """Seconds between two heartbeat writes (``VADI_HEARTBEAT_INTERVAL_S``; default a quarter of the timeout, <= 15 s).

    ``minimum`` is a floor applied to the result.
    """
    return max(minimum, float(setting_or_env("VADI_HEARTBEAT_INTERVAL_S", min(15.0, heartbeat_timeout_s() / 4))))


def max_attempts() -> int:
    """How many times a job may be started before a lost worker fails it (``VADI_MAX_ATTEMPTS``)."""
    return int(setting_or_env("VADI_MAX_ATTEMPTS", 2))


def heartbeat_thread_enabled() -> bool:
    """Whether a running job beats from a background thread (``VADI_HEARTBEAT_THREAD``; off when eager)."""
    default = not getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False)
    return bool(getattr(settings, "VADI_HEARTBEAT_THREAD", default))


# Enqueue ------------------------------------------------------------------------------------


def tasks_run_eagerly() -> bool:
    """Whether sent tasks run in this process at once (no broker: the demo, most tests)."""
    from celery import current_app

    return bool(current_app.conf.task_always_eager)


def job_enqueue(task_name: str, pks: Iterable[int], *, task_ids: Sequence[str] | None = None) -> None:
    """Send ``task_name`` once per pk when the current transaction commits (at once outside one).

    The task is named, not imported, so the web process never imports the worker code; the
    task modules are imported on first use (Celery's autodiscovery) so that eager mode, with
    no broker, runs them in-process. ``task_ids`` (one per pk) fixes the Celery task ids, for
    jobs whose row already names the task that will run them.
    """
    pks = [int(pk) for pk in pks]
    ids = list(task_ids) if task_ids is not None else [None] * len(pks)
    if len(ids) != len(pks):
        raise ValueError(f"job_enqueue got {len(pks)} pks but {len(ids)} task ids")
    if not pks:
        return

    def send() -> None:
        from celery import current_app, group, signature

        if task_name not in current_app.tasks:  # this process has not imported the task modules yet
            current_app.loader.import_default_modules()
        signatures = [
            signature(task_name, args=[pk], options={"task_id": task_id} if task_id else {})
            for pk, task_id in zip(pks, ids)
        ]
        if len(signatures) == 1:
            signatures[0].apply_async()
        else:
            group(signatures).apply_async()

    transaction.on_commit(send)


def publish_timeout_s() -> float:
    """Longest wait, in seconds, for the broker when a request sends a task (``VADI_PUBLISH_TIMEOUT_S``)."""
    return float(setting_or_env("VADI_PUBLISH_TIMEOUT_S", 2.0))


def job_publish(task_name: str, pk: int, *, task_id: str) -> bool:
    """Send ``task_name`` for ``pk`` under ``task_id`` now, waiting at most :func:`publish_timeout_s`.

    For a caller that must answer quickly whatever the broker's state (an upload request): one
    connection attempt and one retry, each bounded by the timeout, and the task's result is
    not awaited (``ignore_result``: the result store is not contacted, so an unreachable Redis
    costs no reconnect loop there; every job reports through its row). Returns whether
    the message was handed to the broker; ``False`` (logged) when it was not, and the caller
    leaves the job for the sweeper to send. With no broker (eager mode) the task runs here.
    """
    from celery import current_app, signature

    if task_name not in current_app.tasks:  # this process has not imported the task modules yet
        current_app.loader.import_default_modules()
    timeout = publish_timeout_s()
    policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
    try:
        if tasks_run_eagerly():
            signature(task_name, args=[int(pk)]).apply_async(task_id=task_id)
        else:
            with current_app.connection_for_write(connect_timeout=timeout) as connection:
                signature(task_name, args=[int(pk)]).apply_async(
                    task_id=task_id, connection=connection, ignore_result=True, retry=True, retry_policy=policy
                )
    except Exception:
        if tasks_run_eagerly():  # an eager task's own error: the job's row says what happened
            raise
        logger.warning("could not send %s for %s; the sweeper will send it", task_name, pk, exc_info=True)
        return False
    return True


# Claim --------------------------------------------------------------------------------------


def stale_q(cutoff: datetime, *, untouched: bool = False) -> Q:
    """Jobs whose last sign of life is older than ``cutoff``: the heartbeat, else the start.

    With ``untouched``, a job that never beat nor started counts when its row was last updated
    before ``cutoff`` (what the sweeper uses to catch rows left in a running state by hand).
    """
    condition = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    if untouched:
        condition |= Q(heartbeat_at__isnull=True, started_at__isnull=True, updated_at__lt=cutoff)
    return condition


def job_claim(
    lease: JobLease,
    *,
    claimed_status: str,
    message: str,
    reclaim_own: bool = False,
    where: Q | None = None,
    now: datetime | None = None,
) -> bool:
    """Claim the job for ``lease.task_id`` with one conditional ``UPDATE``; ``True`` if won.

    Claimable: a queued job; a job in a running state of its kind whose heartbeat is older than
    :func:`heartbeat_timeout_s` and which has attempts left (its worker died and the broker
    redelivered the task); with ``reclaim_own``, also a running job already assigned to this
    task (a retry or redelivery of the same task). ``where`` adds a condition of the kind's own
    (e.g. the run is not finished). The winner's row moves to ``claimed_status`` with a fresh
    start, heartbeat and attempt count and ``message`` as its progress message, so two tasks
    never both win.
    """
    now = timezone.now() if now is None else now
    running = lease.kind.running
    cutoff = now - timedelta(seconds=heartbeat_timeout_s())
    claimable = Q(status=JobStatus.QUEUED) | Q(stale_q(cutoff), status__in=running, attempts__lt=max_attempts())
    if reclaim_own:
        claimable |= Q(status__in=running, celery_task_id=lease.task_id)
    rows = lease.model.objects.filter(claimable, pk=lease.pk)
    if where is not None:
        rows = rows.filter(where)
    return bool(
        rows.update(
            status=claimed_status,
            celery_task_id=lease.task_id,
            attempts=F("attempts") + 1,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            progress=0.0,
            progress_message=clip(message),
            error_message="",
        )
    )


# Progress, release, failure -----------------------------------------------------------------


def job_progress(lease: JobLease, *, progress: float, message: str, status: str | None = None) -> None:
    """Record progress in [0, 1] and a message (optionally a new running state), with a heartbeat.

    Raises
    ------
    JobLostError
        The job no longer belongs to the lease's task.
    ValueError
        ``status`` is not a running state of the job's kind.
    """
    fields: dict[str, Any] = {
        "progress": min(1.0, max(0.0, float(progress))),
        "progress_message": clip(message),
        "heartbeat_at": timezone.now(),
    }
    if status is not None:
        if status not in lease.kind.running:
            raise ValueError(
                f"progress can move a {lease.kind.label} only to {' or '.join(lease.kind.running)}, not {status!r}"
            )
        fields["status"] = status
    if not lease.rows().update(**fields):
        raise lease.lost()


def job_release(lease: JobLease, *, reason: str) -> bool:
    """Put a running job back in the queue before its task retries (a transient error); ``False`` if not ours.

    The reason (an internal error) is logged; the job's message says only that it will retry.
    """
    logger.warning("%s: retrying after a temporary error: %s", lease, reason)
    return bool(
        lease.rows().update(
            status=JobStatus.QUEUED,
            heartbeat_at=timezone.now(),
            progress=0.0,
            progress_message=clip("retrying after a temporary server error"),
        )
    )


def error_fields(message: object, *, detail: str = "", own_input: bool = False) -> dict[str, str]:
    """``error_message`` and ``error_detail`` of a failed job row: the public message, the staff detail.

    ``message`` goes through ``failures.public_message`` (``own_input``: a message about the
    reader's own upload, whose member names are kept); the original is kept in the detail when
    that changed it, after ``detail`` (e.g. a traceback). Used by every write of a job's error.
    """
    failure = failure_from_text(str(message).strip() or "failed", detail=detail, own_input=own_input)
    return {"error_message": (failure.message or "failed")[:ERROR_LENGTH], "error_detail": failure.detail}


def job_fail(
    lease: JobLease,
    *,
    message: str,
    detail: str = "",
    own_input: bool = False,
    progress_message: str = "failed",
    fields: dict[str, Any] | None = None,
) -> bool:
    """Fail the lease's unfinished job with ``message``; ``True`` if this call changed it.

    ``message`` is for whoever may see the job (made public by :func:`error_fields`, with
    ``own_input`` for a message about the reader's own upload); ``detail`` (what went wrong
    inside, a traceback) is kept for staff in ``error_detail``.
    Conditional on the job not being finished and still naming the lease's task (running, or
    queued again by :func:`job_release`). Its kind's ``on_failed`` runs in the same transaction.
    ``fields`` are more columns of the kind's model to write with the failure.
    """
    extra = dict(fields or {})
    fields = error_fields(message, detail=detail, own_input=own_input)
    now = timezone.now()
    rows = lease.model.objects.filter(pk=lease.pk, celery_task_id=lease.task_id).exclude(status__in=FINISHED_STATUSES)
    with transaction.atomic():
        changed = rows.update(
            status=JobStatus.FAILED,
            **fields,
            progress_message=clip(progress_message),
            finished_at=now,
            heartbeat_at=now,
            **extra,
        )
        if changed and lease.kind.on_failed is not None:
            lease.kind.on_failed(lease.pk)
    if changed:
        first = (fields["error_detail"] or fields["error_message"]).splitlines()
        logger.warning("%s failed: %s", lease, first[0] if first else "")
    return bool(changed)


def job_give_up(lease: JobLease, *, reason: str) -> bool:
    """Fail the job after its task's last retry, with the kind's ``give_up_message`` (``reason`` as detail)."""
    return job_fail(
        lease,
        message=lease.kind.give_up_message,
        detail=f"gave up after repeated errors: {reason}",
        fields=dict(lease.kind.give_up_fields),
    )


# Heartbeats ---------------------------------------------------------------------------------


class HeartbeatThread(threading.Thread):
    """Touches ``heartbeat_at`` of the lease's job every ``interval_s`` while its task works, even when silent.

    Each beat is conditional on the lease (the job still the task's and running); when it no
    longer is, the thread calls ``on_lost`` (if given) and stops. A failed beat is logged and
    the next one tried. The thread closes its own database connections on exit. Used as a
    context manager around the job's work, it beats only when :func:`heartbeat_thread_enabled`.
    """

    def __init__(self, lease: JobLease, *, interval_s: float, on_lost: Callable[[], None] | None = None) -> None:
        super().__init__(name=f"heartbeat-{lease.kind.label.replace(' ', '-')}-{lease.pk}", daemon=True)
        self.lease = lease
        self.interval_s = interval_s
        self.on_lost = on_lost
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval_s):
                try:
                    alive = self.lease.rows().update(heartbeat_at=timezone.now())
                except Exception:  # a missed beat is not fatal; the next one may succeed
                    logger.warning("heartbeat of %s failed", self.lease, exc_info=True)
                    continue
                if not alive:
                    if self.on_lost is not None:
                        self.on_lost()
                    return
        finally:
            connections.close_all()  # this thread's own connections

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)

    def __enter__(self) -> HeartbeatThread:
        """Start beating when :func:`heartbeat_thread_enabled` (eager tasks do not beat)."""
        if heartbeat_thread_enabled():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.is_alive():
            self.stop()
