"""What every job task does around its service: run it, retry transient errors, give up cleanly.

Used by the bound tasks of ``benchmarks`` and ``submissions`` (no task is defined here). The
service raises only transient errors (database, I/O; ``leaderboard.services.jobs.is_transient``);
they are retried with exponential backoff after the job is handed back to the queue
(``job_release``), and after the task's ``max_retries`` the job is failed with its kind's
give-up message (``job_give_up``). Both are leaderboard transitions on the task's lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task

from leaderboard.services.jobs import JobKind, is_transient, job_give_up, job_release

logger = logging.getLogger(__name__)

#: Longest wait before a retry, in seconds (the backoff is 10 s, 20 s, 40 s, ... up to this).
MAX_COUNTDOWN_S = 300


def run_job_task(
    task: Task,
    kind: JobKind,
    pk: int,
    execute: Callable[[str], str],
    *,
    retry_inline_when_eager: bool = True,
) -> str:
    """Run ``execute(task_id)`` for the bound ``task`` on the job ``pk`` of ``kind``; returns its outcome.

    Parameters
    ----------
    task
        The bound Celery task (``self``); its request gives the task id and retry count.
    kind
        The job's kind (``SUBMISSION_JOBS``, ``BENCHMARK_JOBS``): how its lease is released
        before a retry and failed after the last one.
    pk
        The job's primary key (the task's argument); names the job in logs and in the local
        task id used when the task runs without one.
    execute
        The service call, given the task id; raises only transient errors (any other error
        propagates unchanged).
    retry_inline_when_eager
        In eager mode (no broker) Celery re-raises its ``Retry`` under
        ``task_eager_propagates``; with this set the retry runs inline instead.
    """
    task_id = task.request.id or f"local-{kind.label.replace(' ', '-')}-{pk}"
    lease = kind.lease(pk, task_id)
    try:
        return execute(task_id)
    except Exception as exc:
        if not is_transient(exc):
            raise
        reason = f"{type(exc).__name__}: {exc}"
        retries = task.request.retries
        if retries >= task.max_retries:
            logger.error("%s: giving up after %s retries: %s", lease, retries, reason)
            job_give_up(lease, reason=reason)
            return "failed"
        try:
            job_release(lease, reason=reason)
        except Exception:  # the database may be what is failing; the sweeper catches up later
            logger.warning("%s: could not release it before retrying", lease, exc_info=True)
        if retry_inline_when_eager and task.request.is_eager:
            # The retry runs right here, in this process: waiting for it is not a synchronous
            # subtask, so Celery's guard against those (active under an eager apply_async) is off.
            retry = task.apply(args=[pk], task_id=task_id, retries=retries + 1, throw=True)
            return retry.get(disable_sync_subtasks=False)
        raise task.retry(exc=exc, countdown=min(MAX_COUNTDOWN_S, 10 * 2**retries)) from exc
