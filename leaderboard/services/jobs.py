"""Mechanics shared by every kind of background job (``Job`` rows: submissions, benchmark jobs).

One place for what a worker-side job does regardless of its kind:

* the knobs: :func:`heartbeat_timeout_s`, :func:`heartbeat_interval_s`, :func:`max_attempts`,
  :func:`heartbeat_thread_enabled`;
* :func:`stale_q`, the "worker presumed dead" condition (no heartbeat for the timeout);
* :func:`job_claim`, the claim by one conditional ``UPDATE`` (so two tasks never both win);
* :class:`HeartbeatThread`, a context manager that keeps ``heartbeat_at`` fresh while a
  long silent step runs;
* :func:`is_transient`, which errors a task retries, and :class:`JobLostError`.

The kind-specific parts (which states count as running, what the claim writes, what follows
it) stay with the callers and come in as parameters.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, models
from django.db.models import F, Q
from django.utils import timezone

from ..models import JobStatus

logger = logging.getLogger(__name__)

#: Errors worth retrying: the database or the file system hiccuped, not the job itself.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, OSError)
#: ``OSError`` subclasses that say something about the job's input, not the environment.
PERMANENT_OS_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


class JobLostError(RuntimeError):
    """The job no longer belongs to this task (the sweeper requeued or failed it, or it finished elsewhere)."""


def is_transient(exc: BaseException, *, permanent: tuple[type[BaseException], ...] = PERMANENT_OS_ERRORS) -> bool:
    """True for errors that a retry with backoff may cure (database or I/O trouble, less ``permanent``)."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, permanent)


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
    rows: models.QuerySet,
    *,
    task_id: str,
    running: Iterable[str],
    claimed_status: str,
    message: str,
    reclaim_own: bool = False,
    now: datetime | None = None,
) -> bool:
    """Claim the job(s) in ``rows`` for ``task_id`` with one conditional ``UPDATE``; ``True`` if won.

    Claimable: a queued job; a job in a ``running`` state whose heartbeat is older than
    :func:`heartbeat_timeout_s` and which has attempts left (its worker died and the broker
    redelivered the task); with ``reclaim_own``, also a running job already assigned to
    ``task_id`` (a retry or redelivery of the same task). The winner's row moves to
    ``claimed_status`` with a fresh start, heartbeat and attempt count and ``message`` as its
    progress message. ``rows`` narrows the update (the job's pk, plus any condition of the
    caller's), so two tasks never both win.
    """
    now = timezone.now() if now is None else now
    running = tuple(running)
    cutoff = now - timedelta(seconds=heartbeat_timeout_s())
    claimable = Q(status=JobStatus.QUEUED) | Q(stale_q(cutoff), status__in=running, attempts__lt=max_attempts())
    if reclaim_own:
        claimable |= Q(status__in=running, celery_task_id=task_id)
    return bool(
        rows.filter(claimable).update(
            status=claimed_status,
            celery_task_id=task_id,
            attempts=F("attempts") + 1,
            started_at=now,
            heartbeat_at=now,
            finished_at=None,
            progress=0.0,
            progress_message=message,
            error_message="",
        )
    )


# Heartbeats ---------------------------------------------------------------------------------


class HeartbeatThread(threading.Thread):
    """Touches ``heartbeat_at`` of one job every ``interval_s`` while its task works, even when silent.

    Each beat is conditional on the job still being ``task_id``'s and in a ``running`` state;
    when it no longer is, the thread calls ``on_lost`` (if given) and stops. A failed beat is
    logged and the next one tried. The thread closes its own database connections on exit.
    Used as a context manager around the job's work, it beats only when
    :func:`heartbeat_thread_enabled`.
    """

    def __init__(
        self,
        model: type[models.Model],
        *,
        pk: int,
        task_id: str,
        running: Iterable[str],
        interval_s: float,
        on_lost: Callable[[], None] | None = None,
        label: str = "job",
    ) -> None:
        super().__init__(name=f"heartbeat-{label}-{pk}", daemon=True)
        self.model, self.pk, self.task_id = model, pk, task_id
        self.running = tuple(running)
        self.interval_s = interval_s
        self.on_lost = on_lost
        self.label = label
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval_s):
                try:
                    alive = self.model.objects.filter(
                        pk=self.pk, status__in=self.running, celery_task_id=self.task_id
                    ).update(heartbeat_at=timezone.now())
                except Exception:  # a missed beat is not fatal; the next one may succeed
                    logger.warning("heartbeat of %s %s failed", self.label, self.pk, exc_info=True)
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
