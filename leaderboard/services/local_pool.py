"""Run held benchmark jobs in local worker processes: the demo's stand-in for a Celery worker pool.

With no broker (the demo: ``CELERY_TASK_ALWAYS_EAGER``) a sent task runs inside the sender, so
the demo's ~300 jobs trained one after another on one core while the machine's other cores
idled (``setup_demo`` took 1,131 s with 23 methods on a 2-core machine, ``benchmarks/RESULTS.md``).
:func:`benchmark_jobs_run_locally` hands them to ``processes`` fresh processes instead (each with
``threads`` torch threads), as a Celery worker started with ``--concurrency N`` would: every job
still goes through the task (``evaluation.run_benchmark_job``: claim, train, record, finalise),
so what is stored is exactly what a worker stores, and concurrency is handled where a real
deployment handles it (the claim is one conditional ``UPDATE``; the run's finalisation locks it).

The processes are *spawned*, not forked: the parent holds database connections and, in the
demo, a progress thread; a forked child would share both. On SQLite the settings use
``BEGIN IMMEDIATE`` transactions and a 30 s busy timeout (``config/settings.py``), so two writers
wait for each other instead of failing with "database is locked".
"""

from __future__ import annotations

import logging
import os
import pickle
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from ..local_worker import run_job, worker_init
from ..models import BenchmarkJob, JobStatus
from .benchmark_jobs import BENCHMARK_JOBS, benchmark_job_claim
from .jobs import job_fail

logger = logging.getLogger(__name__)

#: The progress message of a job handed to a local process.
LOCAL_MESSAGE = "waiting for a local worker process"


def local_processes_default(cpu_count: int | None = None) -> int:
    """How many local processes to use: one per CPU core, at most 8, at least 1."""
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, int(cpu_count or 1)))


def _held_jobs():
    """The jobs still held in the database: queued and never dispatched (to a broker or a local process)."""
    return BenchmarkJob.objects.filter(status=JobStatus.QUEUED, dispatched_at__isnull=True).order_by("pk")


def benchmark_jobs_held(*, run_ids: Iterable[int]) -> list[int]:
    """The pks of the runs' jobs still held in the database (queued, never dispatched), in pk order."""
    return list(_held_jobs().filter(run_id__in=list(run_ids)).values_list("pk", flat=True))


def settings_snapshot() -> dict[str, Any]:
    """This process's effective settings that can cross a spawn (picklable), the database's name included.

    A spawned child reads the settings module again; overrides made in this process (a test's
    ``settings`` fixture, the test database's name) would be lost without this.
    """
    snapshot: dict[str, Any] = {}
    for name in dir(settings):
        if not name.isupper():
            continue
        value = getattr(settings, name)
        try:
            pickle.dumps(value)
        except Exception:  # a callable or a class instance that does not pickle: the module's value stands
            continue
        snapshot[name] = value
    snapshot["DATABASES"] = {alias: dict(connections[alias].settings_dict) for alias in connections}
    return snapshot


def _fail_abandoned(job_id: int, task_id: str, reason: str) -> None:
    """A worker process died with the job: fail it (claimed first if it never started) so its run can end."""
    claimed = benchmark_job_claim(job_id=job_id, task_id=task_id) is not None
    lease = BENCHMARK_JOBS.lease(job_id, task_id)
    if claimed or BenchmarkJob.objects.filter(pk=job_id, celery_task_id=task_id).exists():
        job_fail(lease, message="the local worker process running this job stopped", detail=reason)


def benchmark_jobs_run_locally(
    job_ids: Iterable[int],
    *,
    processes: int,
    threads: int = 1,
    on_done: Callable[[int, str], None] | None = None,
) -> Counter:
    """Run the held jobs ``job_ids`` in ``processes`` spawned local processes; count their outcomes.

    Parameters
    ----------
    job_ids : iterable of int
        Benchmark jobs created with ``benchmark_runs_create(..., dispatch=False)``; only those
        still held (queued, never dispatched) are taken, so a second call, or a dispatcher, never
        runs one twice. They are marked dispatched (``dispatched_at``) first.
    processes : int
        Worker processes (>= 1), each running one job at a time. With 1, or when the database is
        SQLite in memory (no other process can see it), the jobs run here, one after another.
    threads : int
        Torch / OpenMP threads per process (>= 1); ``processes * threads`` should not exceed the
        cores.
    on_done : callable, optional
        Called in this process as ``on_done(job_id, outcome)`` when a job ends.

    Returns
    -------
    collections.Counter
        Outcome -> number of jobs (``"done"``, ``"failed"``, ``"skipped"``, ``"lost"``, or
        ``"error: <type>"`` when a worker process itself died).

    Raises
    ------
    ValueError
        ``processes`` or ``threads`` below 1.
    """
    if isinstance(processes, bool) or int(processes) < 1:
        raise ValueError(f"processes must be at least 1, got {processes!r}")
    if isinstance(threads, bool) or int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads!r}")
    wanted = [int(pk) for pk in job_ids]
    with transaction.atomic():  # taken under a row lock (PostgreSQL) or the write lock (SQLite IMMEDIATE)
        pks = list(_held_jobs().filter(pk__in=wanted).select_for_update().values_list("pk", flat=True))
        BenchmarkJob.objects.filter(pk__in=pks).update(dispatched_at=timezone.now(), progress_message=LOCAL_MESSAGE)
    outcomes: Counter = Counter()
    if not pks:
        return outcomes
    task_ids = {pk: f"local-{uuid.uuid4()}" for pk in pks}
    if int(processes) == 1 or (connection.vendor == "sqlite" and connection.is_in_memory_db()):
        # One process, or a database only this process can see (SQLite in memory: unit tests): here, in turn.
        for pk in pks:
            outcome = run_job(pk, task_ids[pk], child=False)
            outcomes[outcome] += 1
            if on_done is not None:
                on_done(pk, outcome)
        return outcomes
    snapshot = settings_snapshot()
    connection.close()  # the children open their own; nothing of ours is shared across the spawn
    context = get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(int(processes), len(pks)),
        mp_context=context,
        initializer=worker_init,
        initargs=(threads, snapshot),
    ) as pool:
        futures = {pool.submit(run_job, pk, task_ids[pk]): pk for pk in pks}
        for future in as_completed(futures):
            pk = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the process died (out of memory, killed) or the pool broke
                logger.error("local worker running job %s died: %r", pk, exc)
                outcome = f"error: {type(exc).__name__}"
                _fail_abandoned(pk, task_ids[pk], f"{type(exc).__name__}: {exc}")
            outcomes[outcome] += 1
            if on_done is not None:
                on_done(pk, outcome)
    return outcomes
