"""Celery task that scores one uploaded bundle (``evaluation.score_submission``).

Thin by design: it takes the submission id and calls ``evaluation.services.submissions``.
The service claims the job (so duplicates and redeliveries do nothing), fails it with a message
on a bad bundle or a server error, and raises only transient errors (database, I/O), which are
retried here with exponential backoff; after the last retry the submission fails with a
"server error" that does not count against the user's quota.
"""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)

SCORE_SUBMISSION = "evaluation.score_submission"


@shared_task(name=SCORE_SUBMISSION, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def score_submission(self, submission_id: int) -> str:
    """Validate and score submission ``submission_id``; returns the outcome (done, flagged, failed, ...)."""
    from evaluation.services.submissions import is_transient, submission_score
    from leaderboard.services.submissions import submission_mark_failed, submission_release

    task_id = self.request.id or f"local-submission-{submission_id}"
    try:
        return submission_score(submission_id=submission_id, task_id=task_id)
    except Exception as exc:
        if not is_transient(exc):
            raise
        reason = f"{type(exc).__name__}: {exc}"
        if self.request.retries >= self.max_retries:
            logger.error("submission %s: giving up after %s retries: %s", submission_id, self.request.retries, reason)
            submission_mark_failed(
                submission_id=submission_id,
                task_id=task_id,
                message=f"Server error: gave up after repeated temporary errors ({reason}); "
                "it does not count against your quota",
            )
            return "failed"
        try:
            submission_release(submission_id=submission_id, task_id=task_id, reason=reason)
        except Exception:  # the database may be what is failing; the sweeper catches up later
            logger.warning("submission %s: could not release it before retrying", submission_id, exc_info=True)
        raise self.retry(exc=exc, countdown=min(300, 10 * 2**self.request.retries)) from exc
