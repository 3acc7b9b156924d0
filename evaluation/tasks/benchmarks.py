"""Celery tasks of re-benchmarks: one task per (run, category) job, and the stale-job sweeper.

Thin by design: each task takes ids and calls one service. ``acks_late`` with
``reject_on_worker_lost`` (also the project default) lets the broker redeliver a task whose
worker died; the service's claim makes the redelivered task safe. Only transient errors
(database, I/O) are retried, with exponential backoff; everything else fails the job with its
message inside the service.
"""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)

RUN_BENCHMARK_JOB = "evaluation.run_benchmark_job"
SWEEP_STALE_JOBS = "evaluation.sweep_stale_jobs"


@shared_task(
    name=RUN_BENCHMARK_JOB,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=3,
)
def run_benchmark_job(self, job_id: int) -> str:
    """Train and evaluate one category of a benchmark run; returns the job's outcome."""
    from evaluation.services.benchmarks import (
        benchmark_job_execute,
        benchmark_job_fail,
        benchmark_job_release,
        is_transient,
    )

    task_id = self.request.id or f"local-{job_id}"
    try:
        return benchmark_job_execute(job_id=job_id, task_id=task_id)
    except Exception as exc:
        if not is_transient(exc):
            raise
        reason = f"{type(exc).__name__}: {exc}"
        if self.request.retries >= self.max_retries:
            logger.error("job %s: giving up after %s retries: %s", job_id, self.request.retries, reason)
            benchmark_job_fail(job_id=job_id, task_id=task_id, message=f"gave up after repeated errors: {reason}")
            return "failed"
        try:
            benchmark_job_release(job_id=job_id, task_id=task_id, reason=reason)
        except Exception:  # the database may be what is failing; the sweeper catches up later
            logger.warning("job %s: could not release it before retrying", job_id, exc_info=True)
        if self.request.is_eager:
            # Eager mode (no broker) re-raises Celery's Retry under task_eager_propagates: retry inline.
            return self.apply(args=[job_id], task_id=task_id, retries=self.request.retries + 1, throw=True).get()
        raise self.retry(exc=exc, countdown=min(300, 10 * 2**self.request.retries)) from exc


@shared_task(name=SWEEP_STALE_JOBS)
def sweep_stale_jobs() -> dict:
    """Requeue or fail jobs whose worker stopped sending heartbeats (schedule it with Celery beat)."""
    from evaluation.services.sweeper import jobs_sweep

    return jobs_sweep().as_dict()
