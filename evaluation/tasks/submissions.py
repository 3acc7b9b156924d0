"""Celery task that scores one uploaded bundle (``jobs.SCORE_SUBMISSION_TASK``).

Thin by design: it takes the submission id and calls ``evaluation.services.submissions``.
The service claims the job (so duplicates and redeliveries do nothing), fails it with a message
on a bad bundle or a server error, and raises only transient errors (database, I/O), which are
retried with exponential backoff (``jobs.run_job_task``); after the last retry the submission
fails with a "server error" that does not count against the user's quota.
"""

from __future__ import annotations

from celery import shared_task

from leaderboard.services.submissions import SUBMISSION_JOBS
from leaderboard.tasknames import SCORE_SUBMISSION_TASK

from .jobs import run_job_task


@shared_task(name=SCORE_SUBMISSION_TASK, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def score_submission(self, submission_id: int) -> str:
    """Validate and score submission ``submission_id``; returns the outcome (done, flagged, failed, ...)."""
    from evaluation.services.submissions import submission_score

    def execute(task_id: str) -> str:
        return submission_score(submission_id=submission_id, task_id=task_id)

    return run_job_task(self, SUBMISSION_JOBS, submission_id, execute)
