"""Celery task that scores one uploaded bundle (``evaluation.score_submission``).

Thin by design: it takes the submission id and calls ``evaluation.services.submissions``.
The service claims the job (so duplicates and redeliveries do nothing), fails it with a message
on a bad bundle or a server error, and raises only transient errors (database, I/O), which are
retried with exponential backoff (``jobs.run_job_task``); after the last retry the submission
fails with a "server error" that does not count against the user's quota.
"""

from __future__ import annotations

from celery import shared_task

from .jobs import run_job_task

SCORE_SUBMISSION = "evaluation.score_submission"


@shared_task(name=SCORE_SUBMISSION, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def score_submission(self, submission_id: int) -> str:
    """Validate and score submission ``submission_id``; returns the outcome (done, flagged, failed, ...)."""
    from evaluation.services.submissions import is_transient, submission_score
    from leaderboard.services.submissions import submission_mark_failed, submission_release

    return run_job_task(
        self,
        submission_id,
        label="submission",
        execute=lambda task_id: submission_score(submission_id=submission_id, task_id=task_id),
        is_transient=is_transient,
        release=lambda task_id, reason: submission_release(submission_id=submission_id, task_id=task_id, reason=reason),
        give_up=lambda task_id, reason: submission_mark_failed(
            submission_id=submission_id,
            task_id=task_id,
            message=f"Server error: gave up after repeated temporary errors ({reason}); "
            "it does not count against your quota",
        ),
    )
