"""Celery tasks of re-benchmarks: one task per (run, category) job, and the stale-job sweeper.

Thin by design: each task takes ids and calls one service. ``acks_late`` with
``reject_on_worker_lost`` (also the project default) lets the broker redeliver a task whose
worker died; the service's claim makes the redelivered task safe. Only transient errors
(database, I/O) are retried, with exponential backoff (``jobs.run_job_task``); everything else
fails the job with its message inside the service.
"""

from __future__ import annotations

from celery import shared_task

from leaderboard.services.benchmark_jobs import BENCHMARK_JOBS
from leaderboard.tasknames import RUN_BENCHMARK_JOB_TASK, SWEEP_STALE_JOBS_TASK

from .jobs import run_job_task


@shared_task(
    name=RUN_BENCHMARK_JOB_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=3,
)
def run_benchmark_job(self, job_id: int) -> str:
    """Train and evaluate one category of a benchmark run; returns the job's outcome."""
    from evaluation.services.benchmarks import benchmark_job_execute

    def execute(task_id: str) -> str:
        return benchmark_job_execute(job_id=job_id, task_id=task_id)

    return run_job_task(self, BENCHMARK_JOBS, job_id, execute)


@shared_task(name=SWEEP_STALE_JOBS_TASK)
def sweep_stale_jobs() -> dict:
    """Requeue or fail jobs whose worker stopped sending heartbeats (schedule it with Celery beat)."""
    from leaderboard.services.sweeper import jobs_sweep

    return jobs_sweep().as_dict()
