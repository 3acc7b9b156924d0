"""Celery tasks of re-benchmarks: one task per (run, category) job, and the stale-job sweeper.

Thin by design: each task takes ids and calls one service. ``acks_late`` with
``reject_on_worker_lost`` (also the project default) lets the broker redeliver a task whose
worker died; the service's claim makes the redelivered task safe. Only transient errors
(database, I/O) are retried, with exponential backoff (``jobs.run_job_task``); everything else
fails the job with its message inside the service.
"""

from __future__ import annotations

from celery import shared_task

from .jobs import run_job_task

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

    return run_job_task(
        self,
        job_id,
        label="job",
        execute=lambda task_id: benchmark_job_execute(job_id=job_id, task_id=task_id),
        is_transient=is_transient,
        release=lambda task_id, reason: benchmark_job_release(job_id=job_id, task_id=task_id, reason=reason),
        give_up=lambda task_id, reason: benchmark_job_fail(
            job_id=job_id, task_id=task_id, message=f"gave up after repeated errors: {reason}"
        ),
    )


@shared_task(name=SWEEP_STALE_JOBS)
def sweep_stale_jobs() -> dict:
    """Requeue or fail jobs whose worker stopped sending heartbeats (schedule it with Celery beat)."""
    from evaluation.services.sweeper import jobs_sweep

    return jobs_sweep().as_dict()
