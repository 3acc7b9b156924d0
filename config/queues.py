"""Queues by kind of work: which queue each Celery task goes to, and its time limits.

Three kinds of work, each on its own queue, consumed by its own kind of worker
(``docker-compose.yml``, ``Makefile``, ``scripts/gpu_workers.py``):

``scoring``
    Light, CPU-only work that a person waits for: scoring an uploaded bundle (seconds to a
    minute or two for the whole VADI suite; ``docs/scaling.md``), the health check. CPU
    workers, several processes each. Needs no PyTorch (the web image runs it).
``benchmarks``
    Training + evaluating one (run, category) job of a re-benchmark: minutes to hours on one
    GPU. One worker process per GPU (``--concurrency 1``), each job in a fresh child process.
``housekeeping``
    The stale-job sweeper (Celery beat, every minute), which also tops up the benchmark queue
    (``leaderboard.services.dispatch``). Seconds; consumed by the CPU workers next to scoring.

The routing is configuration (``CELERY_TASK_ROUTES``, built here from ``WORK_OF_TASK``), never
decided at a call site: the leaderboard enqueues by task name only. The time limits are
``CELERY_TASK_ANNOTATIONS``, per task from its kind. Plain Python, importable before Django
(the settings use it); the tests route to their own queues with the same table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from leaderboard.tasknames import (
    HEALTH_CHECK_TASK,
    RUN_BENCHMARK_JOB_TASK,
    SCORE_SUBMISSION_TASK,
    SWEEP_STALE_JOBS_TASK,
)

SCORING = "scoring"
BENCHMARKS = "benchmarks"
HOUSEKEEPING = "housekeeping"
#: The kinds of work, in the order a worker of every kind (``make worker``) lists their queues.
KINDS: tuple[str, ...] = (SCORING, BENCHMARKS, HOUSEKEEPING)

#: The kind of work of every task (a test checks that each registered task has one).
WORK_OF_TASK: Mapping[str, str] = {
    SCORE_SUBMISSION_TASK: SCORING,
    HEALTH_CHECK_TASK: SCORING,
    RUN_BENCHMARK_JOB_TASK: BENCHMARKS,
    SWEEP_STALE_JOBS_TASK: HOUSEKEEPING,
}


@dataclass(frozen=True)
class Work:
    """One kind of work: its queue and time limits in seconds.

    ``soft_time_limit_s`` raises ``SoftTimeLimitExceeded`` inside the task (the job fails with a
    message saying so); ``time_limit_s`` kills the worker child (the sweeper then requeues or
    fails the job). Celery enforces both only in the prefork pool, which every deployed worker
    uses.
    """

    queue: str
    soft_time_limit_s: int
    time_limit_s: int

    def __post_init__(self) -> None:
        if not self.queue:
            raise ValueError("a queue name must not be empty")
        if not 0 < self.soft_time_limit_s < self.time_limit_s:
            raise ValueError(
                f"queue {self.queue!r}: need 0 < soft time limit ({self.soft_time_limit_s} s) "
                f"< hard time limit ({self.time_limit_s} s)"
            )


def queue_setting(kind: str) -> str:
    """The environment variable that names the queue of ``kind``: ``VADI_QUEUE_SCORING``, ..."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of work {kind!r}; known: {', '.join(KINDS)}")
    return f"VADI_QUEUE_{kind.upper()}"


def task_routes(queues: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``CELERY_TASK_ROUTES``: each task to the queue of its kind (``queues``: kind -> queue name)."""
    missing = [kind for kind in KINDS if not queues.get(kind)]
    if missing:
        raise ValueError(f"no queue named for: {', '.join(missing)}")
    return {task: {"queue": queues[kind]} for task, kind in WORK_OF_TASK.items()}


def task_annotations(work: Mapping[str, Work]) -> dict[str, dict[str, int]]:
    """``CELERY_TASK_ANNOTATIONS``: each task's soft and hard time limits, from its kind."""
    return {
        task: {"soft_time_limit": work[kind].soft_time_limit_s, "time_limit": work[kind].time_limit_s}
        for task, kind in WORK_OF_TASK.items()
    }


def visibility_timeout_s(work: Mapping[str, Work], *, longest_retry_countdown_s: int, margin_s: int = 600) -> int:
    """Redis's ``visibility_timeout``: longer than any task can legitimately stay unacknowledged.

    With ``acks_late`` a task is acknowledged when it ends; Redis redelivers an unacknowledged
    message after the visibility timeout, so it must exceed the longest hard time limit plus the
    longest retry countdown (a retried task waits on its worker before it runs), plus a margin.
    """
    return max(w.time_limit_s for w in work.values()) + int(longest_retry_countdown_s) + int(margin_s)
