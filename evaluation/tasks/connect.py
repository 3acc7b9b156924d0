"""What a worker does each time it connects to the broker: send the uploads that are waiting for a send.

An upload accepted while the broker was unreachable is committed as ``queued`` with no message
(``Submission.dispatched_at`` null; ``leaderboard.services.submissions``). The sweeper sends it
within a minute; this consumer step sends it as soon as a worker (re)connects to the broker,
which is when the broker is back. Celery starts a consumer step again after every reconnection
(the consumer's blueprint restarts), so :class:`SendWaitingSubmissions` runs at the worker's
start and after each broker outage. The send happens on a thread of its own, so the consumer
never waits for the database; duplicates are impossible (one conditional ``UPDATE`` per send).
"""

from __future__ import annotations

import logging
import threading

from celery import bootsteps

logger = logging.getLogger(__name__)


def send_waiting_submissions() -> list[int]:
    """Send every queued submission that has no message yet; returns their pks (errors logged, never raised)."""
    from django.db import connections

    from leaderboard.services.submissions import submissions_dispatch

    try:
        sent = submissions_dispatch(held_only=True).dispatched
        if sent:
            logger.info("sent the waiting submissions %s", ", ".join(str(pk) for pk in sent))
        return sent
    except Exception:  # the sweeper catches up within a minute
        logger.warning("could not send the waiting submissions; the sweeper will", exc_info=True)
        return []
    finally:
        connections.close_all()  # this thread's own connections


class SendWaitingSubmissions(bootsteps.StartStopStep):
    """Consumer step: on every (re)connection to the broker, send the submissions waiting for a send."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def start(self, c) -> None:
        threading.Thread(target=send_waiting_submissions, name="send-waiting-submissions", daemon=True).start()


def install(app) -> None:
    """Add the step to ``app``'s consumer (idempotent)."""
    if SendWaitingSubmissions not in app.steps["consumer"]:
        app.steps["consumer"].add(SendWaitingSubmissions)
