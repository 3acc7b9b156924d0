"""Fair dispatch of benchmark jobs: a re-benchmark's jobs go to the broker a few at a time, fairly.

The problem: a full re-benchmark is hundreds of GPU jobs of minutes to hours each. Sent to the
broker all at once, they form one FIFO line, and a run requested later (another admin's, or a
one-method repeat) waits behind all of them, for days.

The design (works on Redis, which has no fair queueing of its own):

* A job is created ``queued`` with ``dispatched_at`` null: it waits in the *database*, not in
  the broker.
* :func:`benchmark_jobs_dispatch` sends held jobs until ``VADI_BENCHMARK_DISPATCH_AHEAD`` jobs
  (default 2) are dispatched but not yet claimed, i.e. waiting in the broker. Running jobs are
  not limited (every idle GPU worker gets work); only the line in the broker is kept short.
* The order is :func:`fair_order`: round-robin across users (``requested_by``), then across each
  user's runs, then the older run, then the category key. So a run created during a re-benchmark
  of 594 jobs starts after at most ``ahead`` queued jobs of others, and two admins share the GPUs
  half and half whatever the sizes of their requests.
* Who calls it: creating runs (``services.benchmark_runs``), every claim of a benchmark job (a
  claim is what shortens the line: each claim sends the next job, so N idle workers fill up in N
  round trips), every finished or failed job, and the sweeper every minute
  (``services.sweeper``, Celery beat), which also catches up after a missed call.
* Idempotent and safe under concurrency: each job is marked with one conditional ``UPDATE``
  (``dispatched_at`` from null to now), so no job is sent twice by two dispatchers; on
  PostgreSQL a transaction-level advisory lock serialises dispatchers, so the line never exceeds
  ``ahead``. Sending happens when the transaction commits (``jobs.job_enqueue``).
* Lost messages (a flushed or restarted broker, a publish that failed after the commit): a
  dispatched job still unclaimed is *presumed lost* when a job dispatched after it was claimed
  more than ``VADI_BENCHMARK_RESEND_GRACE_S`` ago (the broker queue is first in, first out, so
  it should have been taken first), or when it has waited ``VADI_BENCHMARK_RESEND_AFTER_S``.
  It is sent again under the same task id; if the first message was not lost after all, the
  second one finds the job claimed and is skipped (``benchmark_job_claim`` is one conditional
  ``UPDATE``), so a false alarm costs a worker a second.

With no broker (eager mode: the demo, unit tests) every held job is sent at once, as before:
there is no line to protect, and a bounded window would run each job inside the previous
one's claim.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from ..models import BenchmarkJob, JobStatus
from .jobs import FINISHED_STATUSES, RUN_BENCHMARK_JOB_TASK, job_enqueue, setting_or_env, tasks_run_eagerly

logger = logging.getLogger(__name__)

#: ``pg_advisory_xact_lock`` key of the dispatcher (any fixed 64-bit number; "VADIDISP" in ASCII).
ADVISORY_LOCK_KEY = 0x5641444944495350
#: The progress message of a job sent to the broker.
DISPATCHED_MESSAGE = "in the benchmark queue, waiting for a GPU worker"


@dataclass(frozen=True)
class HeldJob:
    """A job waiting in the database for its turn, with what the fair order looks at."""

    pk: int
    run_id: int
    user_id: int | None  # the run's requested_by (None: requested from the command line)
    run_created_at: datetime
    category_key: str


@dataclass
class DispatchReport:
    """What one call did: the pks of the jobs sent for the first time, and of those sent again."""

    dispatched: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.dispatched or self.resent)


# Knobs ---------------------------------------------------------------------------------------


def dispatch_ahead() -> int | None:
    """How many dispatched jobs may wait in the broker (``VADI_BENCHMARK_DISPATCH_AHEAD``); ``None`` when eager."""
    if tasks_run_eagerly():
        return None
    ahead = int(setting_or_env("VADI_BENCHMARK_DISPATCH_AHEAD", 2))
    if ahead < 1:
        raise ValueError(f"VADI_BENCHMARK_DISPATCH_AHEAD must be at least 1, got {ahead}")
    return ahead


def resend_grace_s() -> float:
    """Seconds after a later job's claim before an unclaimed job counts as lost (``VADI_BENCHMARK_RESEND_GRACE_S``)."""
    return float(setting_or_env("VADI_BENCHMARK_RESEND_GRACE_S", 600))


def resend_after_s() -> float:
    """Seconds after which an unclaimed dispatched job is sent again anyway (``VADI_BENCHMARK_RESEND_AFTER_S``)."""
    return float(setting_or_env("VADI_BENCHMARK_RESEND_AFTER_S", 3 * 60 * 60 + 600))


# The order -----------------------------------------------------------------------------------


def fair_order(
    held: Sequence[HeldJob],
    *,
    run_load: Mapping[int, int] | None = None,
    user_load: Mapping[int | None, int] | None = None,
    limit: int | None = None,
) -> list[HeldJob]:
    """The next ``limit`` jobs to send (all when ``None``), fairly; a pure function.

    Each pick goes to the user with the fewest jobs dispatched and unfinished (``user_load``,
    counting the picks made so far), among that user's runs to the run with the fewest
    (``run_load``), then the older run (creation time, then pk); within a run, jobs go in
    category-key order. Ties between users go to the user whose oldest waiting run is older.
    """
    runs: dict[int, deque[HeldJob]] = {}
    for job in sorted(held, key=lambda j: (j.run_id, j.category_key, j.pk)):
        runs.setdefault(job.run_id, deque()).append(job)
    users = Counter({k: v for k, v in (user_load or {}).items() if v})
    loads = Counter({k: v for k, v in (run_load or {}).items() if v})
    picks: list[HeldJob] = []
    while runs and (limit is None or len(picks) < limit):
        run_id = min(
            runs,
            key=lambda r: (users[runs[r][0].user_id], loads[r], runs[r][0].run_created_at, r),
        )
        job = runs[run_id].popleft()
        picks.append(job)
        users[job.user_id] += 1
        loads[run_id] += 1
        if not runs[run_id]:
            del runs[run_id]
    return picks


# Dispatch ------------------------------------------------------------------------------------


def _serialise_dispatchers() -> None:
    """Hold the dispatcher's advisory lock until the transaction ends (PostgreSQL; SQLite serialises writers)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])


def _dispatched_message() -> Case:
    """The new progress message: the job is in the broker's line, unless it says something else (worker lost)."""
    return Case(
        When(progress_message__in=("", "queued"), then=Value(DISPATCHED_MESSAGE)), default=F("progress_message")
    )


def _open_jobs():
    """Benchmark jobs of runs that are not finished."""
    return BenchmarkJob.objects.exclude(run__status__in=FINISHED_STATUSES)


def _waiting():
    """Dispatched, not yet claimed (or handed back for a retry): in the broker's line."""
    return _open_jobs().filter(status=JobStatus.QUEUED, dispatched_at__isnull=False)


def _presumed_lost(now: datetime):
    claimed_long_ago = BenchmarkJob.objects.filter(
        dispatched_at__gt=OuterRef("dispatched_at"),
        started_at__gte=F("dispatched_at"),
        started_at__lt=now - timedelta(seconds=resend_grace_s()),
    )
    waited_too_long = Q(dispatched_at__lt=now - timedelta(seconds=resend_after_s()))
    return _waiting().filter(waited_too_long | Q(Exists(claimed_long_ago)))


def _resend_lost(now: datetime) -> list[tuple[int, str]]:
    sent = []
    for pk, seen, task_id in _presumed_lost(now).values_list("pk", "dispatched_at", "celery_task_id"):
        task_id = task_id or str(uuid.uuid4())
        if BenchmarkJob.objects.filter(pk=pk, status=JobStatus.QUEUED, dispatched_at=seen).update(
            dispatched_at=now, celery_task_id=task_id
        ):
            sent.append((pk, task_id))
            logger.warning("benchmark job %s: its message looks lost (dispatched %s); sent again", pk, seen)
    return sent


def _held() -> list[HeldJob]:
    rows = (
        _open_jobs()
        .filter(status=JobStatus.QUEUED, dispatched_at__isnull=True)
        .values_list("pk", "run_id", "run__requested_by_id", "run__created_at", "category__key")
    )
    return [HeldJob(*row) for row in rows]


def _loads() -> tuple[Counter, Counter]:
    """Dispatched, unfinished jobs per run and per user."""
    runs: Counter = Counter()
    users: Counter = Counter()
    rows = _open_jobs().filter(dispatched_at__isnull=False).exclude(status__in=FINISHED_STATUSES)
    for run_id, user_id in rows.values_list("run_id", "run__requested_by_id"):
        runs[run_id] += 1
        users[user_id] += 1
    return runs, users


_DEFAULT = object()


def benchmark_jobs_dispatch(*, ahead: int | object | None = _DEFAULT, now: datetime | None = None) -> DispatchReport:
    """Send the next held benchmark jobs to the broker, fairly, and resend lost ones; report what was sent.

    Parameters
    ----------
    ahead
        How many dispatched jobs may wait unclaimed in the broker (default
        :func:`dispatch_ahead`: ``VADI_BENCHMARK_DISPATCH_AHEAD``, no bound when tasks run
        eagerly); ``None`` sends every held job.
    now
        The time to record (tests).

    Safe to call any number of times, from any process and inside a caller's transaction (the
    messages go out when it commits).
    """
    limit_ahead = dispatch_ahead() if ahead is _DEFAULT else ahead
    now = timezone.now() if now is None else now
    report = DispatchReport()
    with transaction.atomic():
        _serialise_dispatchers()
        resent = _resend_lost(now)
        slots = None if limit_ahead is None else max(0, int(limit_ahead) - _waiting().count())
        sent: list[tuple[int, str]] = []
        if slots != 0:
            held = _held()
            if held:
                run_load, user_load = _loads()
                for job in fair_order(held, run_load=run_load, user_load=user_load, limit=slots):
                    task_id = str(uuid.uuid4())
                    if BenchmarkJob.objects.filter(
                        pk=job.pk, status=JobStatus.QUEUED, dispatched_at__isnull=True
                    ).update(dispatched_at=now, celery_task_id=task_id, progress_message=_dispatched_message()):
                        sent.append((job.pk, task_id))
        everything = resent + sent
        job_enqueue(RUN_BENCHMARK_JOB_TASK, [pk for pk, _ in everything], task_ids=[t for _, t in everything])
    report.resent = [pk for pk, _ in resent]
    report.dispatched = [pk for pk, _ in sent]
    if sent:
        logger.info("dispatched benchmark jobs %s", ", ".join(str(pk) for pk in report.dispatched))
    return report


def benchmark_jobs_dispatch_quietly() -> None:
    """:func:`benchmark_jobs_dispatch` where a failure must not undo the caller's work (a claim, a result).

    The error is logged; the sweeper's next call (every minute) catches up.
    """
    try:
        benchmark_jobs_dispatch()
    except Exception:
        logger.warning("could not dispatch the next benchmark jobs; the sweeper will", exc_info=True)


def jobs_dispatch_in_background() -> threading.Thread:
    """Run :func:`benchmark_jobs_dispatch` in a daemon thread (its own database connection); return it.

    For the admin's re-benchmark form when tasks run eagerly (no broker: the demo): the jobs then
    train in that thread, after the form's answer, instead of inside the request. The thread
    closes its connection when done; a failure is logged (the sweeper catches up).
    """

    def work() -> None:
        try:
            benchmark_jobs_dispatch_quietly()
        finally:
            connection.close()

    thread = threading.Thread(target=work, name="benchmark-dispatch", daemon=True)
    thread.start()
    return thread
