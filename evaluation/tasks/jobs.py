"""What every job task does around its service: run it, retry transient errors, give up cleanly.

Used by the bound tasks of ``benchmarks`` and ``submissions`` (no task is defined here). The
service raises only transient errors (database, I/O; see ``leaderboard.services.jobs``); they
are retried with exponential backoff after the job is handed back to the queue, and after the
task's ``max_retries`` the job is failed through ``give_up``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task

logger = logging.getLogger(__name__)

#: Longest wait before a retry, in seconds (the backoff is 10 s, 20 s, 40 s, ... up to this).
MAX_COUNTDOWN_S = 300


def run_job_task(
    task: Task,
    object_id: int,
    *,
    label: str,
    execute: Callable[[str], str],
    is_transient: Callable[[BaseException], bool],
    release: Callable[[str, str], object],
    give_up: Callable[[str, str], object],
    retry_inline_when_eager: bool = True,
) -> str:
    """Run ``execute(task_id)`` for the bound ``task`` on ``object_id``; returns its outcome.

    Parameters
    ----------
    task
        The bound Celery task (``self``); its request gives the task id and retry count.
    object_id
        The job's primary key (the task's argument); names the job in logs and in the local
        task id used when the task runs without one.
    label
        What the job is, for logs and the local task id (``"job"``, ``"submission"``).
    execute
        The service call, given the task id; raises only transient errors.
    is_transient
        Which errors are retried; any other error propagates unchanged.
    release
        ``release(task_id, reason)`` hands the job back to the queue before a retry (a failure
        to do so is logged: the sweeper catches up).
    give_up
        ``give_up(task_id, reason)`` fails the job after the last retry; the task then returns
        ``"failed"``.
    retry_inline_when_eager
        In eager mode (no broker) Celery re-raises its ``Retry`` under
        ``task_eager_propagates``; with this set the retry runs inline instead.
    """
    task_id = task.request.id or f"local-{label}-{object_id}"
    try:
        return execute(task_id)
    except Exception as exc:
        if not is_transient(exc):
            raise
        reason = f"{type(exc).__name__}: {exc}"
        retries = task.request.retries
        if retries >= task.max_retries:
            logger.error("%s %s: giving up after %s retries: %s", label, object_id, retries, reason)
            give_up(task_id, reason)
            return "failed"
        try:
            release(task_id, reason)
        except Exception:  # the database may be what is failing; the sweeper catches up later
            logger.warning("%s %s: could not release it before retrying", label, object_id, exc_info=True)
        if retry_inline_when_eager and task.request.is_eager:
            return task.apply(args=[object_id], task_id=task_id, retries=retries + 1, throw=True).get()
        raise task.retry(exc=exc, countdown=min(MAX_COUNTDOWN_S, 10 * 2**retries)) from exc
